"""Faithfulness of token attributions: ERASER comprehensiveness and sufficiency, and deletion AUC.

For a token-level :class:`~attrib_mlops.result.AttributionResult` of a
decoder-only model, and for each target token ``j``, the prompt tokens are
ranked by their attribution to ``j`` (column ``j`` of the matrix; special
tokens are never removed by default). With ``p_j`` the teacher-forced
probability of target token ``j`` and ``k = ceil(f * n)`` of the ``n``
candidate prompt tokens, for each fraction ``f`` (ERASER's bins 1, 5, 10, 20, 50%):

* comprehensiveness ``p_j(full) - p_j(without the top-k)``: higher = more faithful;
* sufficiency ``p_j(full) - p_j(only the top-k)``: lower = more faithful (ERASER's
  definition; the probability with only the top-k kept is ``p_j(full) - sufficiency``);
* deletion AUC: area under ``p_j`` as the top tokens are removed in order,
  from 0 to 100% of them (x in [0, 1]): lower = more faithful.

Each is averaged over the fractions (ERASER's AOPC) and over the target tokens.
The tokens are removed with the batched engine of
:mod:`~attrib_mlops.sources.forward`: ``mask`` zeroes them in the attention mask
with positions unchanged (the default, right for slotted layouts), ``remove``
cuts their ids out. Every number is a plain float, ready to be logged as a metric.

Example:
    >>> from attrib_mlops import attribute
    >>> from attrib_mlops.demo.tiny import build_tiny_model
    >>> model, tok = build_tiny_model(["a", "b", "c"], n_layer=1, n_embd=16, n_head=2)
    >>> [r] = attribute(model, tok, "a b c", " a", methods="saliency")
    >>> sorted(faithfulness(model, tok, r))[:3]
    ['comprehensiveness', 'comprehensiveness_k1', 'comprehensiveness_k10']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import InputError, UnsupportedMethodError
from ..result import AttributionResult

__all__ = ["FRACTIONS", "faithfulness", "faithfulness_many", "random_baseline"]

#: ERASER's bins of the top-k% tokens.
FRACTIONS = (0.01, 0.05, 0.1, 0.2, 0.5)


def _ids(tokenizer: Any, r: AttributionResult) -> list[int]:
    ids = list(tokenizer.convert_tokens_to_ids(r.source_tokens))
    unk = getattr(tokenizer, "unk_token_id", None)
    unk_tok = getattr(tokenizer, "unk_token", None)
    for t, i in zip(r.source_tokens, ids):
        if i is None or (unk is not None and i == unk and t != unk_tok):
            raise InputError(f"token {t!r} of the result is not in this tokenizer's vocabulary; pass the model's tokenizer")
    return [int(i) for i in ids]


def _ceil(x: float) -> int:
    """Ceiling that ignores float noise (0.6 * 5 is 3, not 4)."""
    return math.ceil(round(float(x), 9))


def _keep_top(order: np.ndarray, k: int, n_prompt: int, fixed: np.ndarray) -> np.ndarray:
    """Keep mask with the first ``k`` of ``order`` removed (``fixed`` tokens always kept)."""
    keep = np.ones(n_prompt, dtype=bool)
    keep[order[:k]] = False
    return keep | fixed


def faithfulness(
    model: Any,
    tokenizer: Any,
    result: AttributionResult,
    *,
    fractions: Sequence[float] = FRACTIONS,
    deletion_steps: int = 10,
    ablation: str = "mask",
    rank_by: str = "value",
    keep_special: bool = True,
    max_tokens_per_forward: int = 8192,
) -> dict[str, float]:
    """ERASER comprehensiveness/sufficiency and deletion AUC of one token attribution (see module doc).

    Args:
        model / tokenizer: the model the result explains and its tokenizer.
        result: a decoder-only token attribution.
        fractions: top-k% bins.
        deletion_steps: points of the deletion curve after 0% (10 = every 10%).
        ablation: ``mask`` (attention mask, positions kept) or ``remove`` (ids cut out).
        rank_by: ``value`` (signed attributions: positive = supports the target) or ``abs``.
        keep_special: never remove the tokenizer's special tokens (BOS...).

    Returns:
        ``comprehensiveness``, ``sufficiency``, ``deletion_auc``, ``probability`` (mean
        ``p_j`` with the full prompt), per-bin ``comprehensiveness_k<pct>`` and
        ``sufficiency_k<pct>``, and ``n_forwards``.
    """
    import torch

    from ..engines.prep import model_device, model_guard
    from .forward import Forwarder, Prepared

    if ablation not in ("mask", "remove"):
        raise InputError(f"unknown ablation {ablation!r}; valid: mask, remove")
    if rank_by not in ("value", "abs"):
        raise InputError(f"rank_by must be 'value' or 'abs', got {rank_by!r}")
    fr = [float(f) for f in fractions]
    if not fr or any(not 0 < f <= 1 for f in fr):
        raise InputError(f"fractions must be in (0, 1], got {list(fractions)}")
    if deletion_steps < 1:
        raise InputError("deletion_steps must be >= 1")
    n = int(result.n_prompt)
    if not result.is_decoder_only:
        raise UnsupportedMethodError("faithfulness needs a decoder-only result (prompt rows followed by target rows)")
    ids = _ids(tokenizer, result)
    T = len(result.target_tokens)
    special = set(getattr(tokenizer, "all_special_ids", []) or []) if keep_special else set()
    fixed = np.array([i in special for i in ids[:n]], dtype=bool)
    cand = np.flatnonzero(~fixed)
    if cand.size == 0:
        raise InputError("the prompt has no token that may be removed (all are special tokens)")
    C = cand.size
    ks = [max(1, _ceil(f * C)) for f in fr]
    dels = [_ceil(d * C) for d in np.linspace(0.0, 1.0, deletion_steps + 1)]

    masks, index = [np.ones(n, dtype=bool)], []  # row 0: full prompt
    for j in range(T):
        col = np.asarray(result.matrix[:n, j], dtype=np.float64)[cand]
        col = np.abs(col) if rank_by == "abs" else col
        order = cand[np.argsort(-np.where(np.isfinite(col), col, -np.inf), kind="stable")]
        start = len(masks)
        for k in ks:
            masks.append(_keep_top(order, k, n, fixed))
            only = np.zeros(n, dtype=bool)
            only[order[:k]] = True
            masks.append(only | fixed)
        for k in dels[1:]:
            masks.append(_keep_top(order, k, n, fixed))
        index.append(start)
    s = Prepared(result.prompt, result.target, ids[:n], ids[n:], None, False, list(result.target_tokens))
    with model_guard(model), torch.no_grad():
        fwd = Forwarder(model, tokenizer, model_device(model), max_tokens_per_forward)
        lp = fwd.token_masks(s, np.stack(masks), mode="mask" if ablation == "mask" else "drop")
    p = np.exp(lp)
    p_full = p[0]
    F = len(ks)
    comp = np.empty((T, F))
    suff = np.empty((T, F))
    auc = np.empty(T)
    xs = np.array(dels, dtype=np.float64) / C
    for j in range(T):
        b = index[j]
        comp[j] = p_full[j] - p[b : b + 2 * F : 2, j]
        suff[j] = p_full[j] - p[b + 1 : b + 2 * F : 2, j]
        curve = np.concatenate([[p_full[j]], p[b + 2 * F : b + 2 * F + deletion_steps, j]])
        auc[j] = float(np.sum((curve[1:] + curve[:-1]) * np.diff(xs)) / 2.0)
    out = {
        "comprehensiveness": float(comp.mean()),
        "sufficiency": float(suff.mean()),
        "deletion_auc": float(auc.mean()),
        "probability": float(p_full.mean()),
        "n_forwards": float(fwd.n_rows),
    }
    for i, f in enumerate(fr):
        tag = f"k{round(f * 100):d}"
        out[f"comprehensiveness_{tag}"] = float(comp[:, i].mean())
        out[f"sufficiency_{tag}"] = float(suff[:, i].mean())
    return out


def faithfulness_many(model: Any, tokenizer: Any, results: Sequence[AttributionResult], **kwargs: Any) -> dict[str, float]:
    """Mean of :func:`faithfulness` over several results (e.g. one method on a probe set)."""
    if not results:
        raise InputError("faithfulness_many needs at least one result")
    rows = [faithfulness(model, tokenizer, r, **kwargs) for r in results]
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def random_baseline(result: AttributionResult, seed: int = 0) -> AttributionResult:
    """The same result with uniform random scores: the chance level of every faithfulness number."""
    rng = np.random.default_rng(seed)
    mat = np.where(np.isnan(result.matrix), np.nan, rng.random(result.matrix.shape)).astype(np.float32)
    return replace(result, matrix=mat, method=f"random(seed={seed})", info=dict(result.info, baseline="random"))
