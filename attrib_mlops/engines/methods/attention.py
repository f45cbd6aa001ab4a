"""Attention: the attention weights of the predicting position, averaged over layers and heads.

One forward pass with ``output_attentions``; ``options.layers`` / ``options.heads`` select
what is averaged (:func:`~attrib_mlops.engines.native_kernels.mean_attention`). Causal
LMs: the query is the position that predicts each target token. Classifiers: the query
is the pooled position (the first token for encoders, the last real token for
decoders); it does not depend on the class, so every column is the same. Models running
another attention implementation are switched to ``eager`` for the pass and back.
"""

from __future__ import annotations

from typing import Any

from ..registry import CAUSAL_LM, CLASSIFIER, AttributionMethod

__all__ = ["Attention"]


class Attention(AttributionMethod):
    """Mean attention weight of the predicting position on every source position."""

    name = "attention"
    engine = "native"
    order = 40
    model_kinds = (CAUSAL_LM, CLASSIFIER)
    description = "attention weights, mean over the selected layers and heads"

    def info(self, options: Any) -> dict[str, Any]:
        return {"dim_aggregation": "mean over layers and heads", "layers": options.layers, "heads": options.heads}

    def compute(self, run: Any) -> Any:
        import torch

        from .. import native_kernels as K

        model, tokenizer, scorer, batch, options = run
        mats = K.empty_matrices(batch)
        with K.eager_attention(model), torch.no_grad():
            x0 = model.get_input_embeddings()(batch.ids)
            out = model(inputs_embeds=x0, attention_mask=batch.mask, output_attentions=True)
        mean = K.mean_attention(model, out.attentions, options)  # [N, L(query), L(key)]
        for j in range(batch.T):
            q = batch.pos[:, j]  # [N]
            cells = mean[torch.arange(mean.shape[0]), q].cpu().numpy()  # [N, L]
            K.fill_column(mats, batch, j, cells)
        prob, ent = K.prob_entropy(out.logits.float().gather(
            1, batch.pos.unsqueeze(-1).expand(*batch.pos.shape, out.logits.shape[-1])), batch.tgt)
        probs, ents = K.split_scores(batch, prob, ent)
        return mats, probs, ents

    def compute_classifier(self, run: Any) -> Any:
        import torch

        from ..native_kernels import eager_attention, mean_attention

        batch = run.batch
        with eager_attention(run.model), torch.no_grad():
            out = run.fwd.outputs(run.x0, batch.mask, batch.pos, output_attentions=True)
        p0 = out.logits.float().softmax(-1)
        cols, _, per = batch.columns(p0.argmax(-1))
        mean = mean_attention(run.model, out.attentions, run.options)  # [N, Lq, Lk]
        q = batch.pooled_position(run.pooling)
        row = mean[torch.arange(batch.N, device=mean.device), q]  # [N, Lk]
        return row.unsqueeze(-1).expand(-1, -1, cols.shape[1]).cpu(), p0, per
