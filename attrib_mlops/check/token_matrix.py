"""The check of one method's token matrices: pair the samples, compute the metrics, apply the rules.

The check of a kind of attribution is one module like this one, found by the kind's
name (:data:`attrib_mlops.check.compare.KIND_CHECKS`); it reads the kind's ``check`` and
``check_side`` metrics and rules from the registries and returns a
:class:`~attrib_mlops.check.report.MethodReport`.

Example:
    >>> rep = compare_method("saliency", baseline_results, candidate_results, {}, Policy())  # doctest: +SKIP
    >>> rep.verdict, rep.metrics["mean_importance_corr"]                                  # doctest: +SKIP
    ('pass', 0.97)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..analysis.compare import pair_samples
from ..analysis.kinds.token_matrix import CheckContext, SideContext
from ..analysis.registry import TOKEN_MATRIX, list_metrics
from ..errors import AttribError
from ..result import AttributionResult
from .report import MethodReport
from .rules import rules
from .verdict import aggregate, judge, no_shared, too_few

__all__ = ["compare_method"]

_SIDES = ("baseline", "candidate")


def _row(pair: Any, truth: Sequence[int] | None, k: int) -> dict[str, Any]:
    """One compared sample: its check metrics, top tokens, per-side values and tokens."""
    rb, rc = pair.a, pair.b
    ctx = CheckContext(rb, rc, k=k)
    row: dict[str, Any] = {"id": pair.sample_id}
    for m in list_metrics("check", TOKEN_MATRIX):
        row[m.name] = m.fn(ctx)
    row["truncated"] = pair.truncated
    row["top_baseline"], row["top_candidate"] = ctx.top_baseline, ctx.top_candidate
    sides = {name: SideContext(r, truth, k) for name, r in zip(_SIDES, (rb, rc))}
    truth_ok = bool(truth)
    for m in list_metrics("check_side", TOKEN_MATRIX):
        try:
            values = {name: m.fn(c) for name, c in sides.items()}
        except AttribError:  # ground-truth positions out of range (e.g. another tokenisation of the prompt)
            truth_ok = False
            continue
        if all(v is not None for v in values.values()):
            row.update({f"{m.key}_{name}": v for name, v in values.items()})
    row["truth_tokens"] = [f"{rb.source_tokens[q]}@{q}" for q in truth] if truth_ok else []
    row["prompt_tokens"] = rb.prompt_tokens
    row["target_tokens"] = rb.target_tokens
    return row


def _aggregate(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """The per-method values: each check metric aggregated; each side metric per side and its drop."""
    out = aggregate(TOKEN_MATRIX, rows)
    out["n_ground_truth"] = float(sum(1 for r in rows if r["truth_tokens"]))
    return out


def _sort_key(r: dict[str, Any]) -> tuple[float, float]:  # most changed first: lowest importance correlation
    a, o = r["importance_corr"], r["topk_overlap"]
    return (math.inf if a is None or math.isnan(a) else a, math.inf if o is None or math.isnan(o) else o)


def compare_method(method: str, base: Sequence[AttributionResult], cand: Sequence[AttributionResult],
                   gt: Mapping[str, list[int]], policy: Any) -> MethodReport:
    """Compare one method's baseline and candidate results (see :mod:`attrib_mlops.check`)."""
    pairing = pair_samples(base, cand, match="target_prefix")
    rep = MethodReport(method, "pass", n_baseline=pairing.n_a, n_candidate=pairing.n_b, n_shared=pairing.n_shared)
    rep.skipped = list(pairing.skipped)
    if not pairing.n_shared:
        return no_shared(rep, [*(p.sample_id for p in pairing.pairs), *pairing.only_a], pairing.only_b)
    k = policy.k
    rows = [_row(p, gt.get(p.sample_id), k) for p in pairing.pairs]
    rep.n_truncated = sum(1 for p in pairing.pairs if p.truncated)
    rep.n_compared = len(rows)
    if not rows:
        rep.verdict = "cannot_compare"
        counts = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in rep.skipped_counts.items())
        rep.reasons.append(f"method '{method}': none of the {pairing.n_shared} shared samples is comparable "
                           f"({counts}); different tokenisation or continuations are never compared cell by cell")
        return rep
    if too_few(rep, len(rows), policy):
        return rep
    applies = [r for r in rules(TOKEN_MATRIX)  # e.g. classifier metrics on a causal LM's results: no rule
               if not (r.metric.only_some and not any(f"{r.metric.key}_baseline" in row for row in rows))]
    keep = ["id", *(x.name for x in list_metrics("check", TOKEN_MATRIX)), "truncated", "top_baseline",
            "top_candidate", *(f"{x.key}_{s}" for x in list_metrics("check_side", TOKEN_MATRIX) for s in _SIDES),
            "truth_tokens", "prompt_tokens", "target_tokens"]
    judge(rep, TOKEN_MATRIX, rows, _aggregate(rows), policy, _sort_key, applies=applies, keep=keep)
    return rep
