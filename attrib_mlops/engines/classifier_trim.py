"""An exact shortcut for encoder classifiers: the last layer computed at the pooled first token only.

A BERT-style classifier (BERT, RoBERTa, ELECTRA, MiniLM...) reads its class
logits from the first token's final hidden state. In the last encoder layer the
other positions only serve as keys and values of that token's attention; their
queries, attention outputs and feed-forward blocks are computed and then
dropped, forward and backward. :func:`pooled_last_layer` replaces, for the
duration, the last layer's ``forward`` by one that computes keys and values at
every position and the rest at the first position only (the other rows of its
output are zeros). The logits are the same, and so are the gradients with
respect to the input embeddings: for a 6-layer model about a seventh of the
work of a gradient or integrated-gradients pass is saved, for a 2-layer one
about two fifths. Captum treats the model as a black box and cannot do this.

:func:`pooled_is_exact` checks it once per model on a padded pair of samples
(the trimmed logits must equal the full ones); models whose last layer is not
laid out as BERT's (``attention.self.query/key/value``, ``attention.output``,
``intermediate``, ``output``), decoders, layers with hooks on ``forward``
(``accelerate`` offloading) and heads that read other positions are left as
they are.

Example:
    >>> with pooled_last_layer(model, enabled=pooled_is_exact(model, fwd, sample, pad_id, device)):  # doctest: +SKIP
    ...     logits = fwd(x, mask, pos)
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from .classifier_prep import ClassifierBatch, ClassifierForward, ClassifierSample

logger = logging.getLogger(__name__)

__all__ = ["pooled_last_layer", "pooled_is_exact"]

_EXACT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _last_layer(model: Any) -> Any | None:
    """The last encoder layer when it is laid out as BERT's (and has no forward hook), else None."""
    if getattr(getattr(model, "config", None), "is_decoder", False):
        return None
    layers = getattr(getattr(getattr(model, "base_model", None), "encoder", None), "layer", None)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0:
        return None
    last = layers[-1]
    att = getattr(last, "attention", None)
    sa = getattr(att, "self", None)
    needed = [getattr(sa, n, None) for n in ("query", "key", "value", "num_attention_heads", "attention_head_size",
                                             "scaling")]
    if any(v is None for v in needed) or not all(hasattr(x, n) for x, n in
                                                 ((att, "output"), (last, "intermediate"), (last, "output"))):
        return None
    if "forward" in last.__dict__ or getattr(last, "crossattention", None) is not None:
        return None
    return last


def _first_token_forward(layer: Any):
    sa, att_out, inter, out = layer.attention.self, layer.attention.output, layer.intermediate, layer.output

    def forward(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *args: Any,
                **kwargs: Any) -> torch.Tensor:
        B, L, D = hidden_states.shape
        H, dh = sa.num_attention_heads, sa.attention_head_size
        h0 = hidden_states[:, :1]
        q = sa.query(h0).view(B, 1, H, dh).transpose(1, 2)
        k = sa.key(hidden_states).view(B, L, H, dh).transpose(1, 2)
        v = sa.value(hidden_states).view(B, L, H, dh).transpose(1, 2)
        m = attention_mask
        if m is not None and m.dim() == 4 and m.shape[-2] == L:
            m = m[:, :, :1]  # the first query's row of the mask
        if m is not None and m.dtype != torch.bool:
            m = m.to(q.dtype)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=sa.scaling)
        a = att_out(a.transpose(1, 2).reshape(B, 1, H * dh), h0)
        y = out(inter(a), a)
        return torch.cat([y, y.new_zeros(B, L - 1, D)], 1)

    return forward


@contextlib.contextmanager
def pooled_last_layer(model: Any, enabled: bool = True) -> Iterator[bool]:
    """Compute the last layer at the first token only for the duration (see the module docstring).

    Yields whether the shortcut is on; the layer's own ``forward`` is restored afterwards.
    """
    layer = _last_layer(model) if enabled else None
    if layer is None:
        yield False
        return
    layer.forward = _first_token_forward(layer)
    try:
        yield True
    finally:
        del layer.forward


def pooled_is_exact(model: Any, fwd: ClassifierForward, sample: ClassifierSample, pad_id: int,
                    device: torch.device) -> bool:
    """Does the shortcut give the model's logits on a padded pair of samples? (cached per model)."""
    ok = _EXACT.get(model)
    if ok is not None:
        return ok
    ok = False
    if not fwd.left and _last_layer(model) is not None:
        short = ClassifierSample(sample.ids[:6], sample.text, special=sample.special[:6])
        longer = ClassifierSample(short.ids + short.ids[1:4], sample.text, special=short.special + short.special[1:4])
        batch = ClassifierBatch([short, longer], pad_id, device, fwd.left)
        try:
            with torch.no_grad():
                emb = model.get_input_embeddings()(batch.ids)
                ref = fwd(emb, batch.mask, batch.pos)
                with pooled_last_layer(model):
                    got = fwd(emb, batch.mask, batch.pos)
            tol = 1e-4 if ref.dtype == torch.float32 and emb.dtype == torch.float32 else 2e-2
            ok = bool(torch.allclose(got, ref, rtol=tol, atol=tol * (float(ref.abs().max()) + 1.0)))
        except Exception as e:  # a layer that takes other arguments: keep the full forward
            logger.debug("first-token last layer not used for %s: %s", type(model).__name__, e)
    _EXACT[model] = ok
    return ok
