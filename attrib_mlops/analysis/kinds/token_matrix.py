"""Metrics of the token-matrix kind (:class:`~attrib_mlops.result.AttributionResult`), registered once.

Each metric is one :func:`~attrib_mlops.analysis.registry.register_metric` call below;
the contexts hold what several metrics share (the importance vector, the
concentration, the top-k tokens), computed once per sample.

Example:
    >>> import numpy as np
    >>> from attrib_mlops.analysis.registry import compute
    >>> r = AttributionResult(np.array([[0.9], [0.1]]), ["k", "v"], ["x"], "saliency", "native", n_prompt=2)
    >>> sorted(compute("sample", SampleContext(r, k=1)))
    ['concentration_entropy', 'topk_mass']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from attrib_mlops.analysis.aggregate import source_importance
from attrib_mlops.analysis.metrics import (
    _importances_of_same_sources,
    _nanmean,
    _robust_rank_corr,
    concentration,
    ground_truth_alignment,
    jensen_shannon,
    mean_target_probability,
    spearman_fast,
    topk_overlap,
)
from attrib_mlops.analysis.registry import TOKEN_MATRIX, register_kind, register_metric
from attrib_mlops.result import AttributionResult

__all__ = ["SampleContext", "PairContext", "CheckContext", "SideContext", "importance_corr", "top_tokens"]

register_kind(TOKEN_MATRIX, AttributionResult, "A[i, j]: attribution of source token i to target token j")


# ------------------------------------------------------------------ primitives
def importance_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two importance vectors over the rows defined in both.

    Dominated by the tokens that carry the mass, unlike a rank correlation. A constant
    vector has no correlation: 1.0 if both are constant, 0.0 if one is; NaN if nothing is defined.

    Example:
        >>> importance_corr(np.array([1.0, 2.0, np.nan]), np.array([2.0, 4.0, 1.0]))
        1.0
    """
    keep = ~(np.isnan(a) | np.isnan(b))
    x, y = a[keep], b[keep]
    if x.size == 0:
        return math.nan
    cx, cy = x.size < 2 or np.ptp(x) == 0, y.size < 2 or np.ptp(y) == 0
    if cx or cy:
        return 1.0 if cx and cy else 0.0
    return float(np.clip(np.corrcoef(x, y)[0, 1], -1.0, 1.0))


def top_tokens(r: AttributionResult, imp: np.ndarray, k: int) -> list[dict[str, Any]]:
    """The ``k`` most important source tokens (position, token, share of the total importance).

    Example:
        >>> r = AttributionResult(np.array([[1.0], [3.0]]), ["a", "b"], ["c"], "saliency", "native", n_prompt=2)
        >>> top_tokens(r, np.array([1.0, 3.0]), 1)
        [{'pos': 1, 'token': 'b', 'share': 0.75}]
    """
    defined = ~np.isnan(imp)
    total = float(imp[defined].sum()) if defined.any() else 0.0
    order = np.argsort(-np.where(defined, imp, -np.inf), kind="stable")
    return [{"pos": int(i), "token": r.source_tokens[i], "share": float(imp[i] / total) if total else None}
            for i in order[: min(k, int(defined.sum()))]]


# ------------------------------------------------------------------ contexts
class SampleContext:
    """One result (scope ``sample``): ``k`` for top-k, ground-truth positions and column when known."""

    def __init__(self, result: AttributionResult, k: int = 3, true_positions: Sequence[int] | None = None,
                 target_index: int | None = None):
        self.result, self.k, self.true_positions, self.target_index = result, k, true_positions, target_index
        self._concentration: dict[str, float] | None = None

    @property
    def concentration(self) -> dict[str, float]:
        if self._concentration is None:
            self._concentration = concentration(self.result, k=self.k)
        return self._concentration

    def alignment(self, k: int) -> dict[str, float] | None:
        if self.true_positions is None:
            return None
        return ground_truth_alignment(self.result, self.true_positions, k=k, target_index=self.target_index)

    def step_mean(self, name: str) -> float | None:
        scores = self.result.step_scores
        return _nanmean(scores[name]) if name in scores else None


class PairContext:
    """Two results of the same sample on the same source tokens (scope ``drift``)."""

    def __init__(self, a: Any, b: Any, k: int = 3):
        self.a, self.b, self.k = a, b, k
        self.ia, self.ib = _importances_of_same_sources([a, b], ["a", "b"])


class CheckContext:
    """Baseline and candidate results of one sample, on the same tokens (scope ``check``)."""

    def __init__(self, baseline: AttributionResult, candidate: AttributionResult, k: int = 3):
        self.baseline, self.candidate, self.k = baseline, candidate, k
        self.ib = np.abs(source_importance(baseline)).astype(np.float64)
        self.ic = np.abs(source_importance(candidate)).astype(np.float64)
        self.drift = PairContext(baseline, candidate, k)
        self.top_baseline = top_tokens(baseline, self.ib, k)
        self.top_candidate = top_tokens(candidate, self.ic, k)


class SideContext:
    """One side of a check (scope ``check_side``): the result, its ground truth and ``k``."""

    def __init__(self, result: AttributionResult, truth: Sequence[int] | None, k: int = 3):
        self.result, self.truth, self.k = result, truth, k

    def hit(self, k: int) -> float | None:
        return ground_truth_alignment(self.result, self.truth, k=k)[f"hit@{k}"] if self.truth else None


# ------------------------------------------------------------------ sample scope (summaries, per-step metrics)
def _mean_rank(ctx: SampleContext) -> float | None:
    gta = ctx.alignment(3)
    return None if gta is None else gta["mean_rank"]


def _hit(k: int):
    def fn(ctx: SampleContext) -> float | None:
        gta = ctx.alignment(k)
        return None if gta is None else gta[f"hit@{k}"]

    return fn


_S = {"scope": "sample"}
register_metric("concentration_entropy", lambda c: c.concentration["entropy"], **_S, label="entropy", preferred=4,
                bounds=(0.0, 1.0), description="normalised entropy of |I(x)| (1 = uniform, 0 = one token)")
register_metric("topk_mass", lambda c: c.concentration["topk_mass"], **_S, label="top-k", preferred=3,
                bounds=(0.0, 1.0), description="share of |I(x)| held by the k most important source tokens")
register_metric("mean_probability", lambda c: c.step_mean("probability"), **_S, higher_is_better=True,
                label="p(tgt)", preferred=5, bounds=(0.0, 1.0),
                description="mean probability of the target tokens")
register_metric("mean_entropy", lambda c: c.step_mean("entropy"), **_S, label="H(out)",
                description="mean entropy of the output distribution at the target tokens")
register_metric("hit_at_1", _hit(1), **_S, higher_is_better=True, label="hit@1", preferred=1, bounds=(0.0, 1.0),
                description="a ground-truth position is the most important prompt token")
register_metric("hit_at_3", _hit(3), **_S, higher_is_better=True, label="hit@3", bounds=(0.0, 1.0),
                description="a ground-truth position is among the 3 most important prompt tokens")
register_metric("mean_rank", _mean_rank, **_S, higher_is_better=False, label="rank", preferred=2,
                description="1-based rank of the best-ranked ground-truth position")

# faithfulness (opt-in: a caller that ran :func:`attrib_mlops.sources.faithfulness.faithfulness` on the
# result, e.g. the callback's ``sources={"faithfulness_every": N}``, put it in ``info["faithfulness"]``)
def _faith(name: str):
    def fn(ctx: SampleContext) -> float | None:
        v = (ctx.result.info or {}).get("faithfulness", {}).get(name)
        return None if v is None else float(v)

    return fn


register_metric("comprehensiveness", _faith("comprehensiveness"), **_S, higher_is_better=True, label="comp",
                bounds=(-1.0, 1.0), description="ERASER: target probability drop when the top-k% tokens are removed")
register_metric("sufficiency", _faith("sufficiency"), **_S, higher_is_better=False, label="suff", bounds=(-1.0, 1.0),
                description="ERASER: target probability drop when only the top-k% tokens are kept")
register_metric("deletion_auc", _faith("deletion_auc"), **_S, higher_is_better=False, label="del-AUC",
                bounds=(0.0, 1.0), description="area under the target probability as the top tokens are removed")

# ------------------------------------------------------------------ drift scope (between steps or models)
_D = {"scope": "drift"}
register_metric("spearman", lambda c: _robust_rank_corr(c.ia, c.ib, spearman_fast, "drift"), **_D,
                higher_is_better=True, bounds=(-1.0, 1.0), description="Spearman rank correlation of |I(x)|")


def _kendall(x: np.ndarray, y: np.ndarray) -> Any:
    from scipy import stats  # imported on use: scipy.stats takes about a second to import

    return stats.kendalltau(x, y)


register_metric("kendall", lambda c: _robust_rank_corr(c.ia, c.ib, _kendall, "drift"), **_D,
                higher_is_better=True, bounds=(-1.0, 1.0), logged=False,
                description="Kendall's tau of |I(x)| (the slowest; kept in the summaries only)")
register_metric("js", lambda c: jensen_shannon(c.ia, c.ib), **_D, higher_is_better=False, bounds=(0.0, 1.0),
                description="Jensen-Shannon divergence of |I(x)| as distributions")
register_metric("topk_overlap", lambda c: topk_overlap(c.ia, c.ib, c.k), **_D, higher_is_better=True,
                bounds=(0.0, 1.0), description="share of the top-k source tokens in common")

# ------------------------------------------------------------------ check scope (baseline vs candidate, per sample)
_C = {"scope": "check"}
register_metric("importance_corr", lambda c: importance_corr(c.ib, c.ic), **_C, higher_is_better=True,
                summary_name="mean_importance_corr", bounds=(-1.0, 1.0), rules=(("value", 0.5),),
                description="importance correlation (Pearson, |I(x)|)")
register_metric("spearman", lambda c: _robust_rank_corr(c.drift.ia, c.drift.ib, spearman_fast, "drift"), **_C,
                higher_is_better=True, summary_name="mean_spearman", bounds=(-1.0, 1.0), rules=(("value", None),),
                description="Spearman rank correlation of the importances")
register_metric("topk_overlap", lambda c: topk_overlap(c.drift.ia, c.drift.ib, c.k), **_C, higher_is_better=True,
                summary_name="mean_topk_overlap", bounds=(0.0, 1.0), description="top-k overlap of the importances")
register_metric("js", lambda c: jensen_shannon(c.drift.ia, c.drift.ib), **_C, higher_is_better=False,
                summary_name="mean_js", bounds=(0.0, 1.0), description="Jensen-Shannon divergence of the importances")
register_metric("topk_changed", lambda c: bool(c.top_baseline) and c.top_baseline[0]["pos"] not in
                {t["pos"] for t in c.top_candidate}, **_C, higher_is_better=False, aggregate="share",
                summary_name="topk_changed_share", bounds=(0.0, 1.0), rules=(("value", 0.3),),
                description="the baseline's most important token left the candidate's top-k")
register_metric("topk_set_changed", lambda c: {t["pos"] for t in c.top_baseline} != {t["pos"] for t in
                c.top_candidate}, **_C, higher_is_better=False, aggregate="share",
                summary_name="topk_set_changed_share", bounds=(0.0, 1.0), description="the top-k set changed")

# ------------------------------------------------------------------ check_side scope (each side, and the drop)
_NO_GT = "no ground truth for the compared samples"
_CS = {"scope": "check_side", "higher_is_better": True, "bounds": (0.0, 1.0)}
register_metric("hit_at_1", lambda c: c.hit(1), **_CS, key="hit", label="hit_at_1", missing=_NO_GT,
                rules=(("value", None), ("drop", None)), description="ground-truth hit@1")
register_metric("hit_at_k", lambda c: c.hit(c.k), **_CS, key="hit_k", label="hit_at_{k}", missing=_NO_GT,
                rules=(("drop", 0.25),), description="ground-truth hit@k")
register_metric("probability", lambda c: mean_target_probability(c.result) if "probability" in
                c.result.step_scores else None, **_CS, missing="no 'probability' step scores on both sides",
                rules=(("drop", 0.1),), description="mean target probability")
