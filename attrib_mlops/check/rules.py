"""Check rules, derived from the metric registry: one rule per ``rules`` entry of a check metric.

A metric registered with ``scope="check"`` or ``"check_side"`` and ``rules=(("value" |
"drop", default), ...)`` (:mod:`attrib_mlops.analysis.registry`) gives a rule here and a
key of :class:`~attrib_mlops.check.Policy`: ``min_<aggregate>`` when higher values are
better, else ``max_<aggregate>``; a ``drop`` rule bounds baseline minus candidate
(``max_<name>_drop``). Nothing else lists rule names.

Example:
    >>> [r.key for r in rules()][:3]
    ['min_mean_importance_corr', 'min_mean_spearman', 'max_topk_changed_share']
    >>> evaluate(get_rule("max_probability_drop"), 0.3, 0.1, k=3).passed
    False
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..analysis.registry import Metric, list_metrics

__all__ = ["Rule", "RuleResult", "rules", "get_rule", "evaluate", "fmt"]


def fmt(x: Any) -> str:
    """A value as reports print it (3 decimals, ``-`` for None)."""
    if x is None:
        return "-"
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.3f}"
    return str(x)


@dataclass(frozen=True)
class Rule:
    """One threshold rule of the check.

    Attributes:
        key: the policy key (``min_mean_importance_corr``, ...).
        metric: the metric it reads.
        which: ``value`` (the aggregate) or ``drop`` (baseline minus candidate).
        default: the default threshold (None: off by default).
        op: ``>=`` or ``<=``.
        bounds: allowed threshold range.
    """

    key: str
    metric: Metric
    which: str
    default: float | None
    op: str
    bounds: tuple[float, float] | None

    @property
    def value_key(self) -> str:
        """Where the value is in :attr:`MethodReport.metrics`."""
        return self.metric.summary_name + ("_drop" if self.which == "drop" else "")

    def name(self, k: int) -> str:
        """The rule's name in reports (``hit_at_3_drop`` for k = 3)."""
        if self.which == "drop":
            return self.metric.label.format(k=k) + "_drop"
        return self.metric.summary_name

    def context(self, metrics: Mapping[str, Any]) -> str:
        if self.which != "drop":
            return ""
        s = self.metric.summary_name
        return f"baseline {fmt(metrics.get(s + '_baseline'))}, candidate {fmt(metrics.get(s))}"


def _rule(m: Metric, which: str, default: float | None) -> Rule:
    higher = bool(m.higher_is_better) if which == "value" else not m.higher_is_better
    stem = m.summary_name + ("_drop" if which == "drop" else "")
    bounds = m.bounds
    if which == "drop" and bounds is not None:
        span = bounds[1] - bounds[0]
        bounds = (-span, span)
    return Rule(("min_" if higher else "max_") + stem, m, which, default, ">=" if higher else "<=", bounds)


def rules(kind: str | None = None) -> list[Rule]:
    """Every rule (of one kind), in the registration order of the metrics."""
    return [_rule(m, which, default) for scope in ("check", "check_side") for m in list_metrics(scope, kind)
            for which, default in m.rules]


def get_rule(key: str) -> Rule:
    """The rule with policy key ``key``."""
    for r in rules():
        if r.key == key:
            return r
    raise KeyError(f"no check rule {key!r}; rules: {', '.join(r.key for r in rules())}")


@dataclass
class RuleResult:
    """One threshold rule: ``value <op> threshold``; ``passed`` is None when not evaluated."""

    name: str
    value: float | None
    op: str
    threshold: float | None
    passed: bool | None
    note: str = ""

    def describe(self) -> str:
        if self.passed is None:
            return f"{self.name}: not evaluated ({self.note})" if self.note else f"{self.name}: not evaluated"
        extra = f"; {self.note}" if self.note else ""
        return f"{self.name} = {fmt(self.value)} (required {self.op} {fmt(self.threshold)}{extra})"


def threshold_rule(name: str, value: float | None, op: str, threshold: float | None, missing: str = "",
                   context: str = "") -> RuleResult | None:
    """``value <op> threshold`` as a :class:`RuleResult`; None when the threshold is off."""
    if threshold is None:
        return None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return RuleResult(name, None, op, threshold, None, missing or "no defined values")
    passed = value >= threshold if op == ">=" else value <= threshold
    return RuleResult(name, float(value), op, float(threshold), bool(passed), context)


def evaluate(rule: Rule, value: float | None, threshold: float | None, *, k: int,
             metrics: Mapping[str, Any] | None = None) -> RuleResult | None:
    """Evaluate ``rule`` on ``value`` against ``threshold`` (None: the rule is off)."""
    return threshold_rule(rule.name(k), value, rule.op, threshold, rule.metric.missing,
                          rule.context(metrics or {}))
