"""The check itself: :func:`compare` two sides under a policy, per method by the results' kind.

Each kind of attribution has its own check module, ``attrib_mlops/check/<kind>.py``
(``token_matrix.py`` today), with a ``compare_method(method, baseline, candidate,
ground_truth, policy)`` function; :func:`compare_method` picks it by the kind of the
results, so a new kind's check is one new module.

Example:
    >>> result = compare("runs:/<baseline run>", "runs:/<candidate run>@200")   # doctest: +SKIP
    >>> result.verdict, result.exit_code                                        # doctest: +SKIP
    ('pass', 0)
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

from .._util import now_iso
from ..analysis.registry import kind_of
from .loaders import Attributions, as_attributions
from .policy import Policy, as_policy
from .refs import CannotCompare, Ref
from .report import CheckResult, MethodReport
from .rules import threshold_rule

__all__ = ["compare", "compare_method", "assert_no_regression"]


def compare_method(method: str, base: Sequence[Any], cand: Sequence[Any], gt: Mapping[str, list[int]],
                   policy: Any) -> MethodReport:
    """One method's report, from the check module of its results' kind (``attrib_mlops.check.<kind>``)."""
    sample = next(iter(base), None) or next(iter(cand), None)
    kind = kind_of(sample) if sample is not None else "token_matrix"
    module = importlib.import_module(f"{__package__}.{kind}")
    return module.compare_method(method, base, cand, gt, policy)


def compare(
    baseline: Any,
    candidate: Any,
    policy: Policy | Mapping[str, Any] | str | os.PathLike | None = None,
    methods: Sequence[str] | None = None,
    *,
    tracking_uri: str | None = None,
    ground_truth: Mapping[str, Sequence[int]] | None = None,
    baseline_accuracy: float | None = None,
    candidate_accuracy: float | None = None,
) -> CheckResult:
    """Compare the candidate's attribution to the baseline's under ``policy``.

    Args:
        baseline, candidate: a REF string (``runs:/<run_id>@<step>``, a results folder,
            see the module docstring), a :class:`Ref`, :class:`Attributions`,
            ``{method: [AttributionResult]}``, or a flat list of results (grouped by method).
        policy: :class:`Policy`, a dict of policy keys, or the path of a YAML policy file
            (default: ``Policy()``).
        methods: compare only these (default: every method of either side; a method present
            on one side only makes the check ``cannot_compare``).
        tracking_uri: MLflow tracking URI for ``runs:/`` references.
        ground_truth: ``{sample_id: source positions}``, added to what the sides carry.
        baseline_accuracy, candidate_accuracy: accuracies for the ``accuracy_drop`` rule.

    Returns:
        :class:`CheckResult`. Problems with the sides (unknown run, missing step or method,
        nothing shared or comparable) give ``verdict == "cannot_compare"`` with the reasons;
        this function does not raise :class:`CannotCompare`.

    Raises:
        SpecError: an invalid policy.
    """
    pol = as_policy(policy)
    if isinstance(methods, str):
        methods = [methods]
    methods = list(dict.fromkeys(methods)) if methods else None
    result = CheckResult("pass", policy=pol.model_dump(mode="json"), created=now_iso())
    sides: dict[str, Attributions] = {}
    for side, x in (("baseline", baseline), ("candidate", candidate)):
        label = str(x) if isinstance(x, (str, os.PathLike, Ref)) else "in-memory"
        try:
            sides[side] = as_attributions(x, side, tracking_uri, methods, pol.accuracy_metric)
        except CannotCompare as e:
            result.reasons.append(str(e))
            setattr(result, side, {"ref": label})
        else:
            setattr(result, side, sides[side].describe())
    if result.reasons:
        result.verdict = "cannot_compare"
        return result
    b, c = sides["baseline"], sides["candidate"]
    wanted = methods or list(dict.fromkeys(list(b.results) + list(c.results)))
    if not wanted:
        result.reasons.append("neither side holds any attribution results")
    for meth in wanted:
        missing = [s for s, a in (("baseline", b), ("candidate", c)) if meth not in a.results]
        for s in missing:
            other = sorted((b if s == "baseline" else c).results)
            hint = "" if methods else "; pass the methods both sides have with --method / methods=[...]"
            result.reasons.append(f"method '{meth}' is missing on the {s} side ({s} has {other}){hint}")
    if result.reasons:
        result.verdict = "cannot_compare"
        return result

    gt: dict[str, list[int]] = dict(c.ground_truth)
    gt.update(b.ground_truth)
    for sid, pos in (ground_truth or {}).items():
        gt[str(sid)] = [int(p) for p in pos]
    for meth in wanted:
        rep = compare_method(meth, b.results[meth], c.results[meth], gt, pol)
        result.methods.append(rep)
        result.reasons.extend(rep.reasons)

    acc_b = baseline_accuracy if baseline_accuracy is not None else b.accuracy
    acc_c = candidate_accuracy if candidate_accuracy is not None else c.accuracy
    result.baseline["accuracy"], result.candidate["accuracy"] = acc_b, acc_c
    if pol.accuracy_tolerance is not None and acc_b is not None and acc_c is not None:
        result.rules.append(threshold_rule("accuracy_drop", float(acc_b) - float(acc_c), "<=", pol.accuracy_tolerance))

    if result.reasons:
        result.verdict = "cannot_compare"
    elif result.failed_rules:
        result.verdict = "regression"
    return result


def assert_no_regression(baseline: Any, candidate: Any, policy: Any = None, methods: Sequence[str] | None = None,
                         **kwargs: Any) -> CheckResult:
    """:func:`compare`, then fail loudly: ``AssertionError`` with the readable summary on a
    regression, :class:`CannotCompare` (with the reasons) when the sides cannot be compared.

    Returns the :class:`CheckResult` when the check passes.
    """
    result = compare(baseline, candidate, policy, methods, **kwargs)
    if result.verdict == "cannot_compare":
        raise CannotCompare("; ".join(result.reasons))
    if result.verdict == "regression":
        raise AssertionError(result.message() + "\n\n" + result.summary_text())
    return result
