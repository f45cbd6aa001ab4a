"""Classifier metrics of the token-matrix kind: probe accuracy and rationale alignment, registered once.

Sequence-classifier results (``info["task"] == "sequence_classification"``) are token
matrices with one column per attributed class; these metrics apply to them only (on
other results their functions return None, so they are left out). The rationale is the
set of prompt rows a human would point to: the sample's ground-truth positions, else
``info["rationale_positions"]`` (jobs derive them from a sample's ``rationale_spans``,
see :func:`~attrib_mlops.analysis.rationale.rationale_positions`). Special tokens
([CLS], [SEP]) are left out of the ranking.

* ``probe_accuracy``: the predicted label equals the sample's label (mean = accuracy);
* ``rationale_hit_at_1`` / ``rationale_hit_at_3``: a rationale token is among the top 1 / 3;
* ``rationale_tau``: Kendall's tau-b of ``|A|`` against the binary rationale, divided by its
  ceiling (1 = every rationale token above every other token; see :mod:`..rationale`).

For the regression check, ``probe_accuracy`` and ``rationale_tau`` are also ``check_side``
metrics with ``drop`` rules (policy keys ``max_probe_accuracy_drop``, ``max_rationale_tau_drop``); a check
of results they do not apply to (causal LMs) leaves those rules out.

Example:
    >>> import numpy as np
    >>> from attrib_mlops.analysis.kinds.token_matrix import SampleContext
    >>> from attrib_mlops.analysis.registry import compute
    >>> r = AttributionResult(np.array([[5.0], [0.1], [2.0], [9.0]]), ["[CLS]", "so", "dull", "[SEP]"],
    ...                       ["negative"], "saliency", "native", n_prompt=4,
    ...                       info={"task": "sequence_classification", "special_tokens_mask": [1, 0, 0, 1],
    ...                             "predicted_label": "negative", "gold_label": "negative"})
    >>> m = compute("sample", SampleContext(r, k=1, true_positions=[2]))
    >>> m["probe_accuracy"], m["rationale_hit_at_1"], m["rationale_tau"]
    (1.0, 1.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from attrib_mlops.analysis.rationale import gold_label, is_classifier_result, rationale_rank
from attrib_mlops.analysis.registry import register_metric
from attrib_mlops.result import AttributionResult  # noqa: F401 - the kind's result type (used in the example)

__all__ = ["probe_correct", "rationale_value"]


def probe_correct(result: Any) -> float | None:
    """1.0 when a classifier result's predicted label is its gold label, 0.0 when not; None if unknown."""
    if not is_classifier_result(result):
        return None
    gold, pred = gold_label(result), result.info.get("predicted_label")
    return None if gold is None or pred is None else float(str(pred) == gold)


def rationale_value(result: Any, truth: Sequence[int] | None, key: str, k: int = 1) -> float | None:
    """One value of :func:`~attrib_mlops.analysis.rationale.rationale_rank` (``hit@k``, ``kendall_tau_norm``...)."""
    if not is_classifier_result(result):
        return None
    positions = truth if truth else result.info.get("rationale_positions")
    if not positions:
        return None
    got = rationale_rank(result, positions, k=k)
    v = None if got is None else got[key]
    return None if v is None or math.isnan(v) else float(v)


_S = {"scope": "sample", "higher_is_better": True}
register_metric("probe_accuracy", lambda c: probe_correct(c.result), **_S, label="acc", preferred=6,
                bounds=(0.0, 1.0), description="classifiers: the predicted label is the sample's label (mean = "
                "accuracy on the probe set)")
register_metric("rationale_hit_at_1", lambda c: rationale_value(c.result, c.true_positions, "hit@1", 1), **_S,
                label="rat hit@1", preferred=7, bounds=(0.0, 1.0),
                description="classifiers: a rationale token is the most important non-special token")
register_metric("rationale_hit_at_3", lambda c: rationale_value(c.result, c.true_positions, "hit@3", 3), **_S,
                label="rat hit@3", bounds=(0.0, 1.0),
                description="classifiers: a rationale token is among the 3 most important non-special tokens")
register_metric("rationale_tau", lambda c: rationale_value(c.result, c.true_positions, "kendall_tau_norm"), **_S,
                label="rat tau", preferred=8, bounds=(-1.0, 1.0),
                description="classifiers: Kendall's tau-b of |A| against the rationale, over its ceiling")

_CS = {"scope": "check_side", "higher_is_better": True, "only_some": True}
register_metric("probe_accuracy", lambda c: probe_correct(c.result), **_CS, key="acc", label="probe_accuracy",
                bounds=(0.0, 1.0), rules=(("drop", 0.1),), missing="not classifier results with known labels",
                description="classifiers: probe accuracy")
register_metric("rationale_tau", lambda c: rationale_value(c.result, c.truth, "kendall_tau_norm"), **_CS,
                key="rat_tau", label="rationale_tau", bounds=(-1.0, 1.0), rules=(("drop", 0.2),),
                missing="no rationale for the compared classifier samples",
                description="classifiers: rationale Kendall's tau (normalised)")
