"""Attention: the attention weights from each target's predicting position, averaged over layers and heads.

One forward pass with ``output_attentions``; ``options.layers`` / ``options.heads`` select
what is averaged. Models running another attention implementation are switched to
``eager`` for the pass and back.
"""

from __future__ import annotations

from typing import Any

from ...errors import InputError, UnsupportedMethodError
from ..registry import AttributionMethod

__all__ = ["Attention"]


class Attention(AttributionMethod):
    """Mean attention weight of the predicting position on every source position."""

    name = "attention"
    engine = "native"
    order = 40
    description = "attention weights, mean over the selected layers and heads"

    def info(self, options: Any) -> dict[str, Any]:
        return {"dim_aggregation": "mean over layers and heads", "layers": options.layers, "heads": options.heads}

    def compute(self, run: Any) -> Any:
        import torch

        from .. import native_kernels as K

        model, tokenizer, scorer, batch, options = run
        mats = K.empty_matrices(batch)
        restore = None
        cfg = getattr(model, "config", None)
        impl = getattr(cfg, "_attn_implementation", None)
        if impl not in (None, "eager") and hasattr(model, "set_attn_implementation"):
            restore = impl
            model.set_attn_implementation("eager")
        try:
            with torch.no_grad():
                x0 = model.get_input_embeddings()(batch.ids)
                out = model(inputs_embeds=x0, attention_mask=batch.mask, output_attentions=True)
        finally:
            if restore is not None:
                model.set_attn_implementation(restore)
        atts = out.attentions
        if not atts or atts[0] is None:
            raise UnsupportedMethodError(
                f"{type(model).__name__} returned no attention weights; load it with attn_implementation='eager'"
            )
        n_layers = len(atts)
        layers = options.layers if options.layers is not None else list(range(n_layers))
        try:
            sel = torch.stack([atts[i] for i in layers])  # [l, N, H, L, L]
        except IndexError:
            raise InputError(f"layers={options.layers} out of range: the model has {n_layers} layers") from None
        if options.heads is not None:
            H = sel.shape[2]
            if any(h >= H or h < -H for h in options.heads):
                raise InputError(f"heads={options.heads} out of range: the model has {H} heads")
            sel = sel[:, :, options.heads]
        mean = sel.float().mean(dim=(0, 2))  # [N, L(query), L(key)]
        for j in range(batch.T):
            q = batch.pos[:, j]  # [N]
            cells = mean[torch.arange(mean.shape[0]), q].cpu().numpy()  # [N, L]
            K.fill_column(mats, batch, j, cells)
        prob, ent = K.prob_entropy(out.logits.float().gather(
            1, batch.pos.unsqueeze(-1).expand(*batch.pos.shape, out.logits.shape[-1])), batch.tgt)
        probs, ents = K.split_scores(batch, prob, ent)
        return mats, probs, ents
