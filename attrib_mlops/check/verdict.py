"""The steps every kind's ``compare_method`` shares: the "cannot compare" outcomes, the per-method
aggregate of the registered check metrics, and the verdict from the kind's rules.

Each kind (``check/token_matrix.py``, ``check/sources.py``, ``check/training_data.py``) only
pairs its results and builds its rows; these helpers turn rows into a :class:`MethodReport`.

Example:
    >>> from attrib_mlops.check.report import MethodReport
    >>> rep = MethodReport("saliency", "pass", n_baseline=1, n_candidate=1, n_shared=0)
    >>> no_shared(rep, ["a"], ["b"]).verdict
    'cannot_compare'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..analysis.registry import list_metrics
from .loaders import short_list
from .report import MethodReport
from .rules import evaluate, rules

__all__ = ["no_shared", "too_few", "aggregate", "judge"]


def no_shared(rep: MethodReport, ids_baseline: Sequence[Any], ids_candidate: Sequence[Any],
              what: str = "samples") -> MethodReport:
    """Mark ``rep`` as not comparable: the two sides share no sample (naming a few ids of each)."""
    rep.verdict = "cannot_compare"
    rep.reasons.append(f"method '{rep.method}': no shared {what} (baseline ids {short_list(list(ids_baseline), 5)}, "
                       f"candidate ids {short_list(list(ids_candidate), 5)})")
    return rep


def too_few(rep: MethodReport, n_rows: int, policy: Any, what: str = "samples") -> bool:
    """True (and ``rep`` marked not comparable) when fewer rows than ``policy.min_samples`` were compared."""
    if n_rows >= policy.min_samples:
        return False
    rep.verdict = "cannot_compare"
    rep.reasons.append(f"method '{rep.method}': only {n_rows} comparable {what}, the policy needs "
                       f"min_samples={policy.min_samples}")
    return True


def aggregate(kind: str, rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Each registered check metric of ``kind`` reduced over ``rows``; each side metric per side and its drop.

    A side metric ``m`` is read from ``row[f"{m.key}_baseline"]`` / ``row[f"{m.key}_candidate"]``
    in the rows that have it (those with ground truth).
    """
    out: dict[str, float | None] = {}
    for m in list_metrics("check", kind):
        out[m.summary_name] = m.reduce(r[m.name] for r in rows)
    for m in list_metrics("check_side", kind):
        have = [r for r in rows if f"{m.key}_baseline" in r]
        b = m.reduce(r[f"{m.key}_baseline"] for r in have)
        c = m.reduce(r[f"{m.key}_candidate"] for r in have)
        out[f"{m.summary_name}_baseline"], out[m.summary_name] = b, c
        out[f"{m.summary_name}_drop"] = b - c if b is not None and c is not None else None
    return out


def judge(rep: MethodReport, kind: str, rows: list[dict[str, Any]], metrics: dict[str, float | None], policy: Any,
          sort_key: Callable[[dict[str, Any]], Any], applies: Iterable[Any] | None = None,
          keep: Sequence[str] | None = None) -> MethodReport:
    """Set ``rep``'s metrics, rule results, verdict and worst rows.

    Args:
        kind: the kind whose rules apply (all of them unless ``applies`` names a subset).
        sort_key: orders rows most changed first; the first ``policy.n_worst`` are reported.
        keep: the row fields reported for the worst rows (default: all).
    """
    rep.metrics = metrics
    th = policy.for_method(rep.method)
    chosen = rules(kind) if applies is None else applies
    results = [evaluate(r, metrics.get(r.value_key), th[r.key], k=policy.k, metrics=metrics) for r in chosen]
    rep.rules = [r for r in results if r is not None]
    rep.verdict = "regression" if rep.failed_rules else "pass"
    worst = sorted(rows, key=sort_key)[: policy.n_worst]
    rep.worst = worst if keep is None else [{k: r.get(k) for k in keep} for r in worst]
    return rep
