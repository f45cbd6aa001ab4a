"""The ablation engine: random keep/drop masks, batched forwards, surrogate fit and its quality.

For one prepared sample with ``S`` sources:

1. ``K`` random masks (each source kept with probability ``keep_prob``; seeded,
   so the masks depend only on ``seed`` and ``S``), plus ``H`` held-out masks and
   the all-kept row; with ``estimator="leave_one_out"`` the fitting masks are the
   ``S`` single-source drops instead;
2. every row through the model in batches (:class:`~attrib_mlops.sources.forward.Forwarder`):
   ``remove`` re-tokenises the prompt text without the dropped sources,
   ``mask`` zeroes their tokens in the attention mask;
3. the surrogate fitted on the target span's log-odds (:mod:`~attrib_mlops.sources.surrogate`);
4. quality: the LDS (Spearman of predicted vs actual outcome on the held-out
   masks) and the top-k drop: the target's log-probability lost when the
   ``k`` best-scored sources are removed, next to the mean loss for ``k``
   random sources (``n_random`` draws).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

from ..errors import InputError
from .forward import Forwarder, Prepared
from .options import SourceOptions
from .result import AblationData
from .splitting import remove_spans
from .surrogate import fit, lds, logit_outcome, predict, span_logprob

logger = logging.getLogger(__name__)

__all__ = ["SourceBudgetWarning", "random_masks", "token_membership", "ablate_sample"]

Span = tuple[int, int]


class SourceBudgetWarning(UserWarning):
    """More sources than the ablation budget can resolve; the held-out LDS says how well it did."""


def random_masks(rng: np.random.Generator, n: int, n_sources: int, keep_prob: float) -> np.ndarray:
    """``[n, n_sources]`` bool keep masks (True = kept)."""
    return rng.random((n, n_sources)) < keep_prob


def token_membership(offsets: list[Span] | None, spans: list[Span], n_prompt: int) -> np.ndarray:
    """``[P, S]`` bool: prompt token ``i`` overlaps source ``j``'s character span.

    A token straddling two sources belongs to both (dropping either hides it).
    """
    if offsets is None:
        raise InputError(
            "ablation='mask' needs token offsets, which only fast tokenizers give; "
            "load a fast tokenizer (use_fast=True) or use ablation='remove'"
        )
    off = np.asarray(offsets, dtype=np.int64).reshape(n_prompt, 2)
    sp = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    member = (off[:, None, 0] < sp[None, :, 1]) & (off[:, None, 1] > sp[None, :, 0]) & (off[:, None, 1] > off[:, None, 0])
    empty = np.flatnonzero(~member.any(axis=0))
    if empty.size:
        raise InputError(f"source {int(empty[0])} covers no prompt token; check the source spans")
    return member


class _Rows:
    """Turns source keep masks into target log-probs with the chosen ablation."""

    def __init__(self, fwd: Forwarder, s: Prepared, spans: list[Span], mode: str):
        self.fwd, self.s, self.spans, self.mode = fwd, s, spans, mode
        self.member = token_membership(s.offsets, spans, s.n_prompt) if mode == "mask" else None

    def __call__(self, keep: np.ndarray) -> np.ndarray:
        keep = np.asarray(keep, dtype=bool).reshape(-1, len(self.spans))
        if self.mode == "mask":
            dropped = (~keep).astype(np.int64) @ self.member.T.astype(np.int64)  # [R, P]
            return self.fwd.token_masks(self.s, dropped == 0, mode="mask")
        texts = [remove_spans(self.s.prompt, self.spans, k) for k in keep]
        return self.fwd.texts(self.s, texts)


def _fit_masks(rng: np.random.Generator, S: int, opts: SourceOptions) -> np.ndarray:
    if opts.estimator == "leave_one_out":
        m = np.ones((S + 1, S), dtype=bool)
        m[np.arange(1, S + 1), np.arange(S)] = False
        return m
    return random_masks(rng, opts.n_ablations, S, opts.keep_prob)


def ablate_sample(fwd: Forwarder, s: Prepared, spans: list[Span], opts: SourceOptions) -> dict[str, Any]:
    """Scores, bias, ablation data and quality for one sample (see module docstring)."""
    S, T = len(spans), s.n_target
    if S == 0:
        raise InputError("zero sources to attribute")
    span = opts.target_span or (0, T)
    if span[1] > T:
        raise InputError(f"target_span {span} is outside the target's {T} tokens; give 0 <= start < end <= {T}")
    rows = _Rows(fwd, s, spans, opts.ablation)
    calls0, n0 = fwd.n_calls, fwd.n_rows
    rng = np.random.default_rng(opts.seed)
    fit_masks = _fit_masks(rng, S, opts)
    n_hold = opts.n_holdout if opts.evaluate else 0
    hold = random_masks(rng, n_hold, S, opts.keep_prob)
    full = np.ones((1, S), dtype=bool)
    lp = rows(np.concatenate([fit_masks, hold, full]))
    K, H = fit_masks.shape[0], hold.shape[0]
    lp_fit, lp_hold, lp_full = lp[:K], lp[K : K + H], lp[K + H]
    y = logit_outcome(span_logprob(lp_fit, span))
    weights, bias = fit(opts.estimator, fit_masks, y, span[1] - span[0], opts.lasso_alpha)

    quality: dict[str, Any] = {"n_holdout": int(H)}
    if H:
        quality["lds"] = lds(predict(hold, weights, bias), logit_outcome(span_logprob(lp_hold, span)))
    if opts.evaluate and opts.topk:
        quality.update(_topk(rows, rng, weights, float(span_logprob(lp_full, span)[0]), span, S, opts))
    warn = None
    if opts.estimator == "lasso" and S > opts.n_ablations:
        score = quality.get("lds", float("nan"))
        warn = (
            f"{S} sources but only n_ablations={opts.n_ablations} random masks: the surrogate cannot resolve "
            f"every source (held-out LDS = {score:.2f}, 1.0 = perfect ranking of ablation outcomes). "
            f"Pass n_ablations >= {2 * S} or use coarser sources."
        )
        warnings.warn(SourceBudgetWarning(warn), stacklevel=3)
    return {
        "scores": weights,
        "bias": bias,
        "span": span,
        "ablation": AblationData(fit_masks, lp_fit, hold, lp_hold, lp_full),
        "quality": quality,
        "n_forwards": fwd.n_rows - n0,
        "n_forward_calls": fwd.n_calls - calls0,
        "warning": warn,
    }


def _topk(rows: _Rows, rng: np.random.Generator, weights: np.ndarray, logp_full: float, span: Span, S: int,
          opts: SourceOptions) -> dict[str, Any]:
    """Log-prob drop of the target span when the top-k sources are removed, vs k random ones."""
    ks = [k for k in opts.topk if k <= S]
    if not ks:
        return {}
    order = np.argsort(-weights, kind="stable")
    masks = []
    for k in ks:
        m = np.ones(S, dtype=bool)
        m[order[:k]] = False
        masks.append(m)
        for _ in range(opts.n_random):
            r = np.ones(S, dtype=bool)
            r[rng.choice(S, size=k, replace=False)] = False
            masks.append(r)
    lp = span_logprob(rows(np.stack(masks)), span)
    drop = logp_full - lp
    per = 1 + opts.n_random
    topk_drop = {str(k): float(drop[i * per]) for i, k in enumerate(ks)}
    random_drop = {str(k): float(drop[i * per + 1 : (i + 1) * per].mean()) for i, k in enumerate(ks)}
    return {"topk_drop": topk_drop, "random_drop": random_drop}
