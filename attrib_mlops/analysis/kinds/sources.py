"""Metrics of the context-sources kind (:class:`~attrib_mlops.sources.result.SourceAttribution`), registered once.

A sources result scores each source (sentence, document, turn) of a prompt by how much
removing it lowers the target. Its metrics, each one ``register_metric`` call below:

* ``sample`` (per step, logged as ``attrib/sources/<method>/<name>``): ``lds`` (held-out
  Spearman between predicted and actual ablation outcomes), ``top1_drop`` (log-probability
  drop when the top source is removed) and ``top1_gain`` (that drop minus the drop of a
  random source), ``top_share`` (share of the positive score mass on the top source),
  ``hit_at_1`` / ``hit_at_3`` (a true source is ranked first / in the top 3, when the
  result names its true sources in ``info["true_sources"]``);
* ``drift`` (vs the previous and first step): ``top_source_same``, ``spearman`` of the scores;
* ``check`` (baseline vs candidate): ``top_source_changed`` (rule ``max_top_source_changed_share``)
  and ``source_spearman``;
* ``check_side``: ``source_hit_at_1`` (rule ``max_source_hit_at_1_drop``).

Ground truth: a result's true sources are ``info["true_sources"]`` (source indices), set by
whoever knows them (the job runner from a probe's ``true_sources``, the callback from its
probes), so token-level ground truth of the same probe set never mixes in.

Example:
    >>> import numpy as np
    >>> from attrib_mlops.analysis.registry import compute
    >>> r = SourceAttribution(["a.", "b."], [(0, 2), (3, 5)], np.array([0.1, 2.0]), " b", "ablation",
    ...                       info={"true_sources": [1], "quality": {"lds": 0.8}})
    >>> out = compute("sample", SourceSampleContext(r), kind=SOURCES)
    >>> out["hit_at_1"], out["lds"]
    (1.0, 0.8)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

import attrib_mlops.analysis.kinds.token_matrix  # noqa: F401 - the default kind registers first (listing order)
from attrib_mlops.analysis.registry import register_kind, register_metric
from attrib_mlops.sources.result import SourceAttribution

__all__ = ["SOURCES", "SourceSampleContext", "SourcePairContext", "SourceSideContext", "true_sources",
           "same_sources", "summarize_sources", "top_source"]

#: The kind's name in every layer (storage directory, MLflow key component, check module).
SOURCES = "sources"



# ------------------------------------------------------------------ primitives
def true_sources(r: SourceAttribution) -> list[int] | None:
    """The result's true source indices (``info["true_sources"]``: an int or a list), or None.

    >>> true_sources(SourceAttribution(["a"], [(0, 1)], np.array([1.0]), "", "ablation", info={"true_sources": 0}))
    [0]
    """
    t = (r.info or {}).get("true_sources")
    if t is None:
        return None
    out = [int(t)] if isinstance(t, (int, np.integer)) else [int(x) for x in t]
    return [i for i in out if 0 <= i < r.n_sources] or None


def same_sources(a: SourceAttribution, b: SourceAttribution) -> bool:
    """Whether two results score the same sources (same texts, in order): only then are scores comparable."""
    return a.sources == b.sources


def _quality(r: SourceAttribution, key: str, k: int = 1) -> float | None:
    q = r.quality.get(key)
    if isinstance(q, dict):
        q = q.get(str(k))
    return float(q) if q is not None and math.isfinite(float(q)) else None


def _finite_scores(r: SourceAttribution) -> np.ndarray:
    return np.where(np.isfinite(r.scores), r.scores, -np.inf)


def top_source(r: SourceAttribution) -> int | None:
    """Index of the highest-scoring source (None when no score is finite)."""
    s = _finite_scores(r)
    return int(np.argmax(s)) if s.size and np.isfinite(s).any() else None


def _rank_corr(a: np.ndarray, b: np.ndarray) -> float | None:
    keep = np.isfinite(a) & np.isfinite(b)
    x, y = a[keep], b[keep]
    if x.size < 2:
        return None
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 1.0 if np.ptp(x) == np.ptp(y) == 0 else 0.0
    from scipy import stats  # imported on use: scipy.stats takes about a second to import

    return float(stats.spearmanr(x, y).statistic)


# ------------------------------------------------------------------ contexts
class SourceSampleContext:
    """One result (scope ``sample``); ``truth`` defaults to the result's ``info["true_sources"]``."""

    def __init__(self, result: SourceAttribution, k: int = 3, truth: Sequence[int] | None = None):
        self.result, self.k = result, k
        self.truth = list(truth) if truth is not None else true_sources(result)

    def hit(self, k: int) -> float | None:
        if not self.truth:
            return None
        return float(bool(set(self.truth) & set(self.result.ranking()[:k])))

    def top_share(self) -> float | None:
        pos = np.clip(np.nan_to_num(self.result.scores, nan=0.0), 0.0, None)
        total = float(pos.sum())
        return float(pos.max() / total) if total > 0 else None

    def top1_gain(self) -> float | None:
        top, rnd = _quality(self.result, "topk_drop"), _quality(self.result, "random_drop")
        return None if top is None or rnd is None else top - rnd


class SourcePairContext:
    """Two results of one sample over the same sources (scopes ``drift`` and ``check``); ``comparable``
    is False when their sources differ (then every pair metric is undefined)."""

    def __init__(self, a: SourceAttribution, b: SourceAttribution, k: int = 3):
        self.a, self.b, self.k = a, b, k
        self.comparable = same_sources(a, b)
        self.top_a, self.top_b = top_source(a), top_source(b)

    def top_changed(self) -> bool | None:
        if not self.comparable or self.top_a is None or self.top_b is None:
            return None
        return self.top_a != self.top_b

    def spearman(self) -> float | None:
        return _rank_corr(self.a.scores, self.b.scores) if self.comparable else None


class SourceSideContext:
    """One side of a check (scope ``check_side``): the result and its true sources."""

    def __init__(self, result: SourceAttribution, truth: Sequence[int] | None = None, k: int = 3):
        self.sample = SourceSampleContext(result, k, truth)


def summarize_sources(results: Sequence[SourceAttribution], ground_truth: Any = None, k: int = 3
                      ) -> dict[str, float | None]:
    """Each registered ``sample`` metric of the kind aggregated over ``results`` (job summaries).

    ``ground_truth`` (token positions) is not used: results name their true sources in ``info``.

    >>> r = SourceAttribution(["a", "b"], [(0, 1), (2, 3)], np.array([0.0, 1.0]), "", "ablation",
    ...                       info={"true_sources": [1]})
    >>> summarize_sources([r, r])["hit_at_1"]
    1.0
    """
    from attrib_mlops.analysis.registry import compute, list_metrics

    per = [compute("sample", SourceSampleContext(r, k=k), kind=SOURCES) for r in results]
    out: dict[str, float | None] = {}
    for m in list_metrics("sample", SOURCES):
        vals = [p[m.name] for p in per if m.name in p]
        if vals:
            out[m.summary_name] = m.reduce(vals)
    return out


register_kind(SOURCES, SourceAttribution, "scores[s]: how much removing source s lowers the target",
              summarize=summarize_sources)


def _not(x: bool | None) -> float | None:
    return None if x is None else float(not x)


# ------------------------------------------------------------------ sample scope (per step, jobs, callback)
_S: dict[str, Any] = {"scope": "sample", "kind": SOURCES}
register_metric("lds", lambda c: _quality(c.result, "lds"), **_S, higher_is_better=True, label="LDS", preferred=1,
                bounds=(-1.0, 1.0), description="held-out Spearman of predicted vs actual ablation outcomes")
register_metric("top1_drop", lambda c: _quality(c.result, "topk_drop", 1), **_S, higher_is_better=True,
                label="top-1 drop", preferred=2,
                description="target log-probability drop when the top source is removed")
register_metric("top1_gain", lambda c: c.top1_gain(), **_S, higher_is_better=True, label="top-1 gain",
                description="top-1 drop minus the mean drop of removing one random source")
register_metric("hit_at_1", lambda c: c.hit(1), **_S, higher_is_better=True, label="hit@1", preferred=0,
                bounds=(0.0, 1.0), description="a true source is the top-scored source")
register_metric("hit_at_3", lambda c: c.hit(3), **_S, higher_is_better=True, label="hit@3", bounds=(0.0, 1.0),
                description="a true source is among the 3 top-scored sources")
register_metric("top_share", lambda c: c.top_share(), **_S, label="top share", bounds=(0.0, 1.0),
                description="share of the positive score mass on the top source")

# ------------------------------------------------------------------ drift scope (between steps or models)
_D: dict[str, Any] = {"scope": "drift", "kind": SOURCES}
register_metric("top_source_same", lambda c: _not(c.top_changed()), **_D, higher_is_better=True, aggregate="share",
                bounds=(0.0, 1.0), description="the top source is the same as at the reference step")
register_metric("spearman", lambda c: c.spearman(), **_D, higher_is_better=True, bounds=(-1.0, 1.0),
                description="Spearman rank correlation of the source scores")

# ------------------------------------------------------------------ check scope (baseline vs candidate)
_C: dict[str, Any] = {"scope": "check", "kind": SOURCES}
register_metric("top_source_changed", lambda c: c.top_changed(), **_C, higher_is_better=False, aggregate="share",
                summary_name="top_source_changed_share", bounds=(0.0, 1.0), rules=(("value", 0.3),),
                missing="no compared sample has the same sources on both sides",
                description="the top-scored source differs between baseline and candidate")
register_metric("source_spearman", lambda c: c.spearman(), **_C, higher_is_better=True,
                summary_name="mean_source_spearman", bounds=(-1.0, 1.0), rules=(("value", None),),
                description="Spearman rank correlation of the source scores")

# ------------------------------------------------------------------ check_side scope (each side, and the drop)
register_metric("source_hit_at_1", lambda c: c.sample.hit(1), scope="check_side", kind=SOURCES,
                higher_is_better=True, bounds=(0.0, 1.0), key="source_hit", label="source_hit_at_1",
                missing="no true sources for the compared samples", rules=(("drop", 0.25),),
                description="ground-truth source hit@1")
