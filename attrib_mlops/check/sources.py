"""The check of one method's context-source results: pair samples, compute the metrics, apply the rules.

Found by the kind's name (``sources``) from :func:`attrib_mlops.check.compare.compare_method`.
Samples are paired by id; a pair is compared only when both sides score the same sources
(same texts, in order), otherwise it is skipped (``different_sources``). Metrics and rules come
from the registry (:mod:`attrib_mlops.analysis.kinds.sources`):

* ``top_source_changed_share`` (rule ``max_top_source_changed_share``, default 0.3): share of
  samples whose top-scored source changed;
* ``mean_source_spearman`` (rule ``min_mean_source_spearman``, off by default);
* ``source_hit_at_1`` per side and its drop (rule ``max_source_hit_at_1_drop``, default 0.25),
  over the samples that name their true sources (``info["true_sources"]``).

Example:
    >>> rep = compare_method("ablation", baseline_results, candidate_results, {}, Policy())   # doctest: +SKIP
    >>> rep.verdict, rep.metrics["top_source_changed_share"]                                 # doctest: +SKIP
    ('pass', 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..analysis.compare import by_sample_id, shared_ids
from ..analysis.kinds.sources import SOURCES, SourcePairContext, SourceSideContext, same_sources, top_source
from ..analysis.registry import list_metrics
from ..sources.result import SourceAttribution
from .report import MethodReport
from .rules import fmt
from .verdict import aggregate, judge, no_shared, too_few

__all__ = ["compare_method"]

_SIDES = ("baseline", "candidate")


def _top(r: SourceAttribution) -> dict[str, Any] | None:
    t = top_source(r)
    return None if t is None else {"index": t, "source": r.sources[t], "score": float(r.scores[t])}


def _row(sid: str, rb: SourceAttribution, rc: SourceAttribution, k: int) -> dict[str, Any]:
    ctx = SourcePairContext(rb, rc, k=k)
    row: dict[str, Any] = {"id": sid}
    for m in list_metrics("check", SOURCES):
        row[m.name] = m.fn(ctx)
    row["top_baseline"], row["top_candidate"] = _top(rb), _top(rc)
    for m in list_metrics("check_side", SOURCES):
        # the truth each side names (the baseline's when both do): the same samples on both sides
        truth = rb.info.get("true_sources") or rc.info.get("true_sources")
        values = {name: m.fn(SourceSideContext(r, truth, k)) for name, r in zip(_SIDES, (rb, rc))}
        if all(v is not None for v in values.values()):
            row.update({f"{m.key}_{name}": v for name, v in values.items()})
    row["sources"] = list(rb.sources)
    tb, tc = row["top_baseline"], row["top_candidate"]
    show = lambda t: "-" if t is None else f"{t['source'][:40]!r}@{t['index']}"  # noqa: E731
    truth = rb.info.get("true_sources") or rc.info.get("true_sources")
    row["text"] = (f"top source {show(tb)} -> {show(tc)}; spearman {fmt(row.get('source_spearman'))}"
                   + (f"; true sources {truth}" if truth else "") + f"; target {rb.target.strip()[:40]!r}")
    return row


def _aggregate(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    out = aggregate(SOURCES, rows)
    side_keys = [f"{m.key}_baseline" for m in list_metrics("check_side", SOURCES)]
    out["n_ground_truth"] = float(sum(1 for r in rows if any(k in r for k in side_keys)))
    return out


def _sort_key(r: dict[str, Any]) -> tuple[int, float]:  # changed top source first, then lowest rank correlation
    s = r.get("source_spearman")
    return (0 if r.get("top_source_changed") else 1, math.inf if s is None or math.isnan(s) else s)


def compare_method(method: str, base: Sequence[SourceAttribution], cand: Sequence[SourceAttribution],
                   gt: Mapping[str, list[int]], policy: Any) -> MethodReport:
    """Compare one method's baseline and candidate source results (see the module docstring).

    ``gt`` (token positions) is not used: sources results name their true sources themselves.
    """
    da, db = by_sample_id(base), by_sample_id(cand)
    shared = shared_ids(da, db)
    rep = MethodReport(method, "pass", n_baseline=len(da), n_candidate=len(db), n_shared=len(shared))
    if not shared:
        return no_shared(rep, list(da), list(db))
    rows = []
    for sid in shared:
        if not same_sources(da[sid], db[sid]):
            rep.skipped.append({"id": sid, "reason": "different_sources",
                                "detail": f"{da[sid].n_sources} vs {db[sid].n_sources} sources"})
            continue
        rows.append(_row(sid, da[sid], db[sid], policy.k))
    rep.n_compared = len(rows)
    if not rows:
        rep.verdict = "cannot_compare"
        rep.reasons.append(f"method '{method}': none of the {len(shared)} shared samples scores the same sources "
                           "on both sides")
        return rep
    if too_few(rep, len(rows), policy):
        return rep
    judge(rep, SOURCES, rows, _aggregate(rows), policy, _sort_key)
    return rep
