"""Top-k log-probability drop of source rankings (forwards through the ablation engine's batcher).

For one sample and a ranking of its sources, remove the ``k`` best-ranked
sources (the same ``mask`` or ``remove`` ablation as the ablation engine) and
measure how much the target span's log-probability drops; a scorer whose top
sources matter shows a larger drop. Several scorers and ``k`` share one batch of
rows per sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..forward import Forwarder
from .prepare import SourceSample

__all__ = ["topk_drops"]


def topk_drops(
    fwd: Forwarder,
    samples: Sequence[SourceSample],
    scores: Mapping[str, Sequence[np.ndarray]],
    full_logprobs: Sequence[np.ndarray],
    spans: Sequence[tuple[int, int]],
    ks: Sequence[int] = (1, 3),
    mode: str = "mask",
) -> dict[str, dict[str, float]]:
    """Mean drop ``log p(full) - log p(top-k removed)`` per scorer and ``k`` (``{name: {"1": ..}}``).

    Args:
        fwd: the ablation engine's batcher (model in eval mode, no grad: the caller's).
        samples: prepared samples (their membership maps sources to prompt tokens).
        scores: scorer name -> one ``[S]`` score array per sample.
        full_logprobs: per sample, ``[T]`` target-token log-probabilities with every source kept.
        spans: per sample, the target-token span ``[a, b)`` the scores are for.
        ks: the ``k`` values (a ``k`` larger than a sample's source count is skipped for it).
        mode: ``mask`` (attention mask, positions kept) or ``remove`` (text removed).
    """
    from ..splitting import remove_spans

    names = list(scores)
    sums: dict[str, dict[str, list[float]]] = {n: {str(k): [] for k in ks} for n in names}
    for i, s in enumerate(samples):
        S = s.n_sources
        keeps, keys = [], []
        for name in names:
            order = np.argsort(-np.asarray(scores[name][i], dtype=np.float64), kind="stable")
            for k in ks:
                if k <= S:
                    keep = np.ones(S, dtype=bool)
                    keep[order[:k]] = False
                    keeps.append(keep)
                    keys.append((name, str(k)))
        if not keeps:
            continue
        K = np.stack(keeps)
        if mode == "mask":
            dropped = (~K).astype(np.int64) @ s.membership.T.astype(np.int64)
            lp = fwd.token_masks(s.sample, dropped == 0, mode="mask")
        else:
            lp = fwd.texts(s.sample, [remove_spans(s.text, s.spans, k) for k in K])
        a, b = spans[i]
        full = float(np.asarray(full_logprobs[i])[a:b].sum())
        for (name, k), row in zip(keys, lp):
            sums[name][k].append(full - float(row[a:b].sum()))
    return {n: {k: float(np.mean(v)) if v else float("nan") for k, v in d.items()} for n, d in sums.items()}
