"""Integrated gradients: gradients along the path from a baseline embedding, times the input delta.

The interpolation steps are batched (``options.max_tokens_per_forward``), every target
column shares each forward pass; baselines are the UNK embedding (EOS stays EOS) or zeros,
the integration rule and step count follow Captum (``options.ig_method``, ``options.n_steps``).
"""

from __future__ import annotations

from typing import Any

from ..registry import AttributionMethod

__all__ = ["IntegratedGradients"]


class IntegratedGradients(AttributionMethod):
    """Integrated gradients (Sundararajan et al., 2017) on the input embeddings."""

    name = "integrated_gradients"
    engine = "native"
    order = 30
    uses_dim_aggregation = True
    description = "path integral of gradients from a baseline embedding (Captum's rules)"

    def compute(self, run: Any) -> Any:
        import torch

        from .. import native_kernels as K

        model, tokenizer, scorer, batch, options = run
        mats = K.empty_matrices(batch)
        x0 = model.get_input_embeddings()(batch.ids).detach()
        base = K.baseline_embeddings(model, tokenizer, batch, x0, options)
        alphas, steps = K.integration_points(options.n_steps, options.ig_method)
        N, L, T = x0.shape[0], batch.L, batch.T
        total = torch.zeros((T, N, L, x0.shape[-1]), dtype=torch.float32, device=x0.device)
        per_fwd = max(1, options.max_tokens_per_forward // max(1, N * L))
        use_vmap = K.use_vmap(options, x0.device)
        with torch.enable_grad():
            for s0 in range(0, len(alphas), per_fwd):
                a = torch.tensor(alphas[s0 : s0 + per_fwd], dtype=x0.dtype, device=x0.device)
                w = torch.tensor(steps[s0 : s0 + per_fwd], dtype=torch.float32, device=x0.device)
                S = a.shape[0]
                xs = (base.unsqueeze(0) + a.view(S, 1, 1, 1) * (x0 - base).unsqueeze(0)).reshape(S * N, L, -1)
                xs = xs.detach().requires_grad_(True)
                rep = lambda t: t.unsqueeze(0).expand(S, *t.shape).reshape(S * N, *t.shape[1:])  # noqa: E731
                weights = w.repeat_interleave(N)
                for j, g, _p, _e in K.per_target_grads(
                    scorer, xs, rep(batch.mask), rep(batch.pos), rep(batch.tgt), rep(batch.valid), weights, use_vmap
                ):
                    total[j] += g.float().reshape(S, N, L, -1).sum(0)
        delta = (x0 - base).float()
        for j in range(T):
            cells = K.dim_agg(total[j] * delta, options.dim_aggregation).cpu().numpy()
            K.fill_column(mats, batch, j, cells)
        with torch.no_grad():
            prob, ent = K.prob_entropy(scorer.logits_at(scorer.hidden(x0, batch.mask), batch.pos), batch.tgt)
        probs, ents = K.split_scores(batch, prob, ent)
        return mats, probs, ents
