"""Occlusion: how much each target's probability drops when one source embedding is replaced.

One forward per occluded source position serves every target at once (the baseline
embedding as in integrated gradients); positions are batched up to
``options.max_tokens_per_forward`` tokens per forward.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..registry import AttributionMethod

__all__ = ["Occlusion"]


class Occlusion(AttributionMethod):
    """|p(y_j) - p(y_j | x_i occluded)| for every source position i."""

    name = "occlusion"
    engine = "native"
    order = 50
    description = "probability drop when one source embedding is replaced by the baseline"

    def compute(self, run: Any) -> Any:
        import torch

        from .. import native_kernels as K

        model, tokenizer, scorer, batch, options = run
        mats = K.empty_matrices(batch)
        with torch.no_grad():
            x0 = model.get_input_embeddings()(batch.ids)
            base = K.baseline_embeddings(model, tokenizer, batch, x0, options)
            prob0, ent0 = K.prob_entropy(scorer.logits_at(scorer.hidden(x0, batch.mask), batch.pos), batch.tgt)
            # every (sample, occluded position) pair that can affect some target
            jobs = [(b, i) for b in range(len(batch.samples)) for i in range(batch.lengths[b] - 1)]
            per_fwd = max(1, options.max_tokens_per_forward // batch.L)
            for k0 in range(0, len(jobs), per_fwd):
                part = jobs[k0 : k0 + per_fwd]
                bs = torch.tensor([b for b, _ in part], device=x0.device)
                rows = torch.tensor([i for _, i in part], device=x0.device)
                xs = x0[bs].clone()
                ar = torch.arange(len(part), device=x0.device)
                xs[ar, rows] = base[bs, rows]
                p, _ = K.prob_entropy(scorer.logits_at(scorer.hidden(xs, batch.mask[bs]), batch.pos[bs]), batch.tgt[bs])
                diff = (prob0[bs] - p).abs().cpu().numpy()  # [K, T]
                for k, (b, i) in enumerate(part):
                    n, t = batch.n_prompt[b], batch.n_target[b]
                    js = np.arange(t)
                    ok = i <= n + js - 1
                    mats[b][i, js[ok]] = diff[k, js[ok]]
        probs, ents = K.split_scores(batch, prob0, ent0)
        return mats, probs, ents
