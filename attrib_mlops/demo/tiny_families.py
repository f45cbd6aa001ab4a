"""Tiny randomly initialised causal LMs of several architecture families, built locally.

:func:`attrib_mlops.demo.tiny.build_tiny_model` builds a GPT-2; this module
builds the same kind of toy model for the RoPE families (Llama, Qwen2,
Mistral, Phi-3), from their ``transformers`` config classes, with no hub
access. Each uses grouped-query attention (fewer key/value heads than query
heads) so code that reads attention weights is exercised on GQA too.

Example:
    >>> model, tok = build_tiny_causal_lm("qwen2", ["a", "b", "c"], n_layer=2, n_head=4)
    >>> model.config.model_type, model.config.num_attention_heads, model.config.num_key_value_heads
    ('qwen2', 4, 2)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["FAMILIES", "build_tiny_causal_lm"]

#: Families :func:`build_tiny_causal_lm` knows.
FAMILIES = ("gpt2", "llama", "qwen2", "mistral", "phi3")


def build_tiny_causal_lm(
    family: str,
    vocab: Iterable[str],
    *,
    n_layer: int = 2,
    n_embd: int = 32,
    n_head: int = 4,
    n_kv_head: int | None = None,
    n_positions: int = 128,
    seed: int = 0,
    attn_implementation: str | None = None,
) -> tuple[Any, Any]:
    """``(model, tokenizer)``: a random ``family`` LM over a word-level tokenizer of ``vocab``.

    ``attn_implementation`` None keeps the library default (``sdpa`` for the RoPE
    families), so callers see the implementation a real checkpoint would load with.
    The model is in eval mode on the CPU; the caller's RNG state is untouched.
    """
    import torch

    from .tiny import build_tiny_model, build_word_tokenizer

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; valid: {', '.join(FAMILIES)}")
    if family == "gpt2":
        return build_tiny_model(vocab, n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=n_positions,
                                seed=seed, attn_implementation=attn_implementation or "sdpa")
    import transformers

    tok = build_word_tokenizer(vocab)
    kv = n_kv_head if n_kv_head is not None else max(1, n_head // 2)
    names = {"llama": "Llama", "qwen2": "Qwen2", "mistral": "Mistral", "phi3": "Phi3"}[family]
    cfg_cls = getattr(transformers, f"{names}Config")
    model_cls = getattr(transformers, f"{names}ForCausalLM")
    kwargs: dict[str, Any] = dict(
        vocab_size=len(tok),
        hidden_size=n_embd,
        intermediate_size=2 * n_embd,
        num_hidden_layers=n_layer,
        num_attention_heads=n_head,
        num_key_value_heads=kv,
        max_position_embeddings=n_positions,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    cfg = cfg_cls(**kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(cfg)
    model.eval()
    return model, tok
