"""Integrated gradients: gradients along the path from a baseline embedding, times the input delta.

``(x_i - x'_i) * sum_s w_s d p(y_j) / d x_i (x' + a_s (x - x'))`` with Captum's
integration rules (``options.ig_method``, ``options.n_steps``), reduced over the
embedding dimension. The interpolation steps of many samples are batched
(``options.max_tokens_per_forward``) and every target column shares each forward
pass (:func:`~attrib_mlops.engines.native_kernels.path_gradient_sums`, one kernel
for causal LMs and classifiers). Baselines: the UNK embedding (causal LMs: EOS stays
EOS; classifiers: special tokens stay) or zeros. Classifiers: the samples of one length
go together, unpadded and without an attention mask
(:func:`~attrib_mlops.engines.classifier_kernels.equal_length_groups`).
"""

from __future__ import annotations

from typing import Any

from ..registry import CAUSAL_LM, CLASSIFIER, AttributionMethod

__all__ = ["IntegratedGradients"]


class IntegratedGradients(AttributionMethod):
    """Integrated gradients (Sundararajan et al., 2017) on the input embeddings."""

    name = "integrated_gradients"
    engine = "native"
    order = 30
    uses_dim_aggregation = True
    model_kinds = (CAUSAL_LM, CLASSIFIER)
    description = "path integral of gradients from a baseline embedding (Captum's rules)"

    def compute(self, run: Any) -> Any:
        import torch

        from .. import native_kernels as K

        model, tokenizer, scorer, batch, options = run
        mats = K.empty_matrices(batch)
        x0 = model.get_input_embeddings()(batch.ids).detach()
        base = K.baseline_embeddings(model, tokenizer, batch, x0, options)
        vmap = K.use_vmap(options, x0.device)

        def grads(xs, rep, weights):
            for j, g, _p, _e in K.per_target_grads(
                scorer, xs, rep(batch.mask), rep(batch.pos), rep(batch.tgt), rep(batch.valid), weights, vmap
            ):
                yield j, g

        total = K.path_gradient_sums(x0, base, options, batch.T, grads)
        delta = (x0 - base).float()
        for j in range(batch.T):
            cells = K.dim_agg(total[j] * delta, options.dim_aggregation).cpu().numpy()
            K.fill_column(mats, batch, j, cells)
        with torch.no_grad():
            prob, ent = K.prob_entropy(scorer.logits_at(scorer.hidden(x0, batch.mask), batch.pos), batch.tgt)
        probs, ents = K.split_scores(batch, prob, ent)
        return mats, probs, ents

    def compute_classifier(self, run: Any) -> Any:
        import torch

        from ..classifier_kernels import class_probs, column_grads, equal_length_groups
        from ..classifier_prep import baseline_embeddings
        from ..native_kernels import dim_agg, path_gradient_sums

        batch, x0, fwd = run.batch, run.x0, run.fwd
        p0, cols, valid, per = class_probs(run)
        base = baseline_embeddings(run.model, run.tokenizer, batch, x0, run.options)
        K = cols.shape[1]
        cells = torch.zeros((batch.N, batch.L, K), dtype=torch.float32)
        # samples of one length together, unpadded: n_steps forwards of the padding would cost as
        # much as the real tokens' (the steps of several samples still share each forward)
        for idx, rows in equal_length_groups(batch):
            pos, g_cols, g_valid = batch.pos[idx, rows], cols[idx], valid[idx]

            def grads(xs, rep, weights, pos=pos, g_cols=g_cols, g_valid=g_valid):
                # no padding, no mask: the attention kernels' unmasked path
                probs = fwd(xs, None, rep(pos)).softmax(-1)
                yield from column_grads(probs, xs, rep(g_cols), rep(g_valid), weights)

            xg, bg = x0[idx, rows], base[idx, rows]
            total = path_gradient_sums(xg, bg, run.options, K, grads)
            delta = (xg - bg).float()
            for k in range(K):
                cells[idx.cpu(), rows, k] = dim_agg(total[k] * delta, run.options.dim_aggregation).cpu()
        return cells, p0, per
