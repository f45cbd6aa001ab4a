"""Tiny models built locally: a GPT-2 config and a word-level tokenizer.

Nothing here touches a model hub. The tokenizer is trained with the
``tokenizers`` library on a vocabulary we give it, so tests, the demo and
benchmarks run on a fresh machine with no network.

Example:
    >>> from attrib_mlops.demo.tiny import build_tiny_model
    >>> model, tok = build_tiny_model(["a", "b", "="], n_layer=1, n_embd=16, n_head=2)
    >>> tok("a = b")["input_ids"][:3] == [tok.convert_tokens_to_ids(t) for t in ["a", "=", "b"]]
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ["[UNK]", "[PAD]", "[BOS]", "[EOS]"]

__all__ = ["SPECIAL_TOKENS", "build_word_tokenizer", "build_tiny_model", "save_tiny"]


def build_word_tokenizer(vocab: Iterable[str]):
    """A whitespace word-level ``PreTrainedTokenizerFast`` over ``vocab``.

    Token ids: the four special tokens ``[UNK] [PAD] [BOS] [EOS]`` first (ids
    0..3), then ``vocab`` in the order given (duplicates dropped).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words: list[str] = []
    seen = set(SPECIAL_TOKENS)
    for w in vocab:
        if any(c.isspace() for c in w) or not w:
            raise ValueError(f"vocabulary entry {w!r} must be a non-empty word without whitespace")
        if w not in seen:
            seen.add(w)
            words.append(w)
    ids = {t: i for i, t in enumerate(SPECIAL_TOKENS + words)}
    tok = Tokenizer(models.WordLevel(vocab=ids, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        bos_token="[BOS]",
        eos_token="[EOS]",
        model_max_length=1024,
    )


def build_tiny_model(
    vocab: Iterable[str],
    *,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_positions: int = 128,
    seed: int = 0,
    attn_implementation: str = "eager",
):
    """A randomly initialised GPT-2 LM with a word-level tokenizer over ``vocab``.

    Returns ``(model, tokenizer)``; the model is in eval mode on the CPU. The
    initialisation uses a private ``torch.Generator`` state so the caller's RNG
    stream is left as it was.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = build_word_tokenizer(vocab)
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    cfg._attn_implementation = attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(cfg)
    model.eval()
    return model, tok


def save_tiny(model, tokenizer, path: str | Path) -> Path:
    """Save model and tokenizer (safetensors, no pickle) to ``path``; returns it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
