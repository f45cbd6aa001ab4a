"""The check of one method's training-data results: pair the queries by sample id, compare their top examples.

Found by the kind's name (see :func:`attrib_mlops.check.compare.compare_method`). The
metrics and rules come from :mod:`attrib_mlops.analysis.kinds.training_data`: the
overlap of the top ``policy.k`` supporting training examples between baseline and
candidate, by example id. Its rule ``min_mean_top_overlap`` is off by default (opt in
with ``Policy(min_mean_top_overlap=0.5)`` or the YAML key).

Example:
    >>> from attrib_mlops.check import compare
    >>> res = compare("attrib-results/base", "attrib-results/cand",              # doctest: +SKIP
    ...               {"min_mean_top_overlap": 0.5})
    >>> res.methods[0].metrics["mean_top_overlap"]                                # doctest: +SKIP
    0.8
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..analysis.kinds.training_data import TRAINING_DATA, TrainingPairContext
from ..analysis.registry import list_metrics
from .report import MethodReport
from .rules import fmt
from .verdict import aggregate, judge, no_shared, too_few

__all__ = ["compare_method"]


def _by_id(results: Sequence[Any]) -> dict[str, Any]:
    return {str(r.sample_id): r for r in results if r.sample_id is not None}


def _describe(row: Mapping[str, Any], rb: Any) -> str:
    """One line for the report: the top supporting example ids on each side and the query's target."""
    show = lambda ids: " ".join(repr(str(i))[:40] for i in ids) or "-"  # noqa: E731
    return (f"top examples {show(row['top_baseline'])} -> {show(row['top_candidate'])}; top overlap "
            f"{fmt(row.get('top_overlap'))}; target {str(rb.target or '').strip()[:40]!r}")


def compare_method(method: str, base: Sequence[Any], cand: Sequence[Any], gt: Mapping[str, list[int]],
                   policy: Any) -> MethodReport:
    """Compare one method's baseline and candidate training-data results (queries paired by sample id)."""
    b, c = _by_id(base), _by_id(cand)
    shared = [sid for sid in b if sid in c]
    rep = MethodReport(method, "pass", n_baseline=len(b), n_candidate=len(c), n_shared=len(shared))
    if not shared:
        return no_shared(rep, list(b), list(c), what="queries")
    k = policy.k
    rows = []
    for sid in shared:
        ctx = TrainingPairContext(b[sid], c[sid], k=k)
        row: dict[str, Any] = {"id": sid}
        for m in list_metrics("check", TRAINING_DATA):
            row[m.name] = m.fn(ctx)
        row["top_baseline"] = [it["id"] for it in b[sid].top(k)["positive"]]
        row["top_candidate"] = [it["id"] for it in c[sid].top(k)["positive"]]
        row["text"] = _describe(row, b[sid])
        rows.append(row)
    rep.n_compared = len(rows)
    if too_few(rep, len(rows), policy, what="queries"):
        return rep
    judge(rep, TRAINING_DATA, rows, aggregate(TRAINING_DATA, rows), policy,
          lambda r: r["top_overlap"] if r["top_overlap"] is not None else 2.0)
    return rep
