"""Metrics of the training-data kind: one score per training example for a query (TracIn-CP, DataInf...).

Registered here, read everywhere through :mod:`attrib_mlops.analysis.registry`:

* ``sample`` (one result): ``top_score`` (the largest score, normalised by max |score|
  is 1 by construction, so the raw value), ``positive_share`` (share of examples with a
  positive score), ``top_concentration`` (share of the total |score| mass held by the
  top ``k`` supporting examples);
* ``drift`` (the same query at two steps): ``top_overlap`` of the top ``k`` supporting
  example ids;
* ``check`` (baseline vs candidate of one query): ``top_overlap`` (rule
  ``min_mean_top_overlap``, **off by default**: set it in the policy to opt in) and
  ``negative_overlap`` (the opposing examples; descriptive).

Overlaps are by example id (:meth:`TrainingDataAttribution.overlap`), so baseline and
candidate may come from different indexes over the same training set.

Example:
    >>> import numpy as np
    >>> from attrib_mlops.training_data.result import TrainingDataAttribution
    >>> a = TrainingDataAttribution(np.array([3., 2, 1, -1]), list("abcd"), list("abcd"), "tracin")
    >>> b = TrainingDataAttribution(np.array([1., 3, -2, 2]), list("abcd"), list("abcd"), "tracin")
    >>> compute("check", TrainingPairContext(a, b, k=2), kind=TRAINING_DATA)["top_overlap"]
    0.5
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from attrib_mlops.analysis.registry import compute, register_kind, register_metric
from attrib_mlops.training_data.result import TrainingDataAttribution

__all__ = ["TRAINING_DATA", "TrainingSampleContext", "TrainingPairContext", "compute", "summarize_training_data"]

#: The kind's name in every layer (storage directory, check module, job task kind).
TRAINING_DATA = "training_data"

register_kind(TRAINING_DATA, TrainingDataAttribution,
              "one score per training example for a query (TracIn-CP, gradient cosine, DataInf)")


class TrainingSampleContext:
    """One training-data result and ``k`` (scope ``sample``)."""

    def __init__(self, result: TrainingDataAttribution, k: int = 10):
        self.result, self.k = result, k
        self.scores = np.asarray(result.scores, dtype=np.float64)

    def top_concentration(self) -> float | None:
        finite = self.scores[np.isfinite(self.scores)]
        total = float(np.abs(finite).sum())
        if total <= 0:
            return None
        pos = np.sort(finite[finite > 0])[::-1][: self.k]
        return float(pos.sum() / total)


class TrainingPairContext:
    """Two results of the same query (scopes ``drift`` and ``check``): ``a`` earlier / baseline, ``b`` later."""

    def __init__(self, a: TrainingDataAttribution, b: TrainingDataAttribution, k: int = 10):
        self.a, self.b, self.k = a, b, k
        self.baseline, self.candidate = a, b

    def overlap(self, side: str) -> float | None:
        v = self.a.overlap(self.b, k=self.k, side=side)
        return None if math.isnan(v) else v


def _max(ctx: TrainingSampleContext) -> float | None:
    finite = ctx.scores[np.isfinite(ctx.scores)]
    return float(finite.max()) if finite.size else None


def _pos_share(ctx: TrainingSampleContext) -> float | None:
    finite = ctx.scores[np.isfinite(ctx.scores)]
    return float((finite > 0).mean()) if finite.size else None


_S: dict[str, Any] = {"scope": "sample", "kind": TRAINING_DATA}
# preferred: CLI table columns; after the token matrix's in the Evolution view's default curves
register_metric("top_score", _max, **_S, label="top score", preferred=10,
                description="the largest training-example score")
register_metric("positive_share", _pos_share, **_S, bounds=(0.0, 1.0), label="supporting", preferred=11,
                description="share of training examples with a positive (supporting) score")
register_metric("top_concentration", lambda c: c.top_concentration(), **_S, bounds=(0.0, 1.0), label="top-k mass",
                preferred=12,
                description="share of the total |score| held by the k most supporting examples")

register_metric("top_overlap", lambda c: c.overlap("positive"), scope="drift", kind=TRAINING_DATA,
                higher_is_better=True, bounds=(0.0, 1.0),
                description="share of the top-k supporting training examples in common")

_C: dict[str, Any] = {"scope": "check", "kind": TRAINING_DATA, "higher_is_better": True, "bounds": (0.0, 1.0)}
register_metric("top_overlap", lambda c: c.overlap("positive"), **_C, summary_name="mean_top_overlap",
                rules=(("value", None),), missing="no supporting examples on the baseline side",
                description="share of the baseline's top-k supporting training examples still in the candidate's "
                            "top-k (opt-in rule min_mean_top_overlap)")
register_metric("negative_overlap", lambda c: c.overlap("negative"), **_C, summary_name="mean_negative_overlap",
                description="share of the baseline's top-k opposing training examples still in the candidate's")


def summarize_training_data(results: Any, k: int = 10) -> dict[str, float | None]:
    """Each ``sample`` metric of the kind aggregated over ``results`` (job summaries; None if undefined)."""
    from attrib_mlops.analysis.registry import list_metrics

    per = [compute("sample", TrainingSampleContext(r, k=k), kind=TRAINING_DATA) for r in results]
    return {m.summary_name: m.reduce(p[m.name] for p in per if m.name in p)
            for m in list_metrics("sample", TRAINING_DATA)}
