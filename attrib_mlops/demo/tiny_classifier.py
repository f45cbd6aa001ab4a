"""Tiny sequence classifiers built locally (no hub): BERT, DistilBERT, RoBERTa or GPT-2 style.

The encoder models get a small WordPiece tokenizer that adds ``[CLS] ... [SEP]``
(``<s> ... </s>`` for RoBERTa), the decoder (GPT-2) model the word-level
tokenizer of :mod:`attrib_mlops.demo.tiny`. Weights are random unless trained;
the initialisation uses a forked RNG so the caller's stream is untouched.

Example:
    >>> model, tok = build_tiny_classifier("bert", ["good", "bad", "film"], labels=["negative", "positive"])
    >>> tok.convert_ids_to_tokens(tok("good film")["input_ids"])
    ['[CLS]', 'good', 'film', '[SEP]']
    >>> model.config.id2label[1]
    'positive'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["KINDS", "build_wordpiece_tokenizer", "build_tiny_classifier"]

KINDS = ("bert", "distilbert", "roberta", "gpt2")
_BERT_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_ROBERTA_SPECIAL = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]


def build_wordpiece_tokenizer(vocab: Iterable[str], roberta: bool = False):
    """A WordPiece ``PreTrainedTokenizerFast`` over ``vocab`` (entries may be ``##`` pieces) adding CLS/SEP."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    special = _ROBERTA_SPECIAL if roberta else _BERT_SPECIAL
    pad, unk, cls, sep, mask = special
    words: list[str] = []
    seen = set(special)
    for w in vocab:
        if w not in seen:
            seen.add(w)
            words.append(w)
    ids = {t: i for i, t in enumerate(special + words)}
    tok = Tokenizer(models.WordPiece(vocab=ids, unk_token=unk, continuing_subword_prefix="##"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B {sep}",
        special_tokens=[(cls, ids[cls]), (sep, ids[sep])],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token=unk, pad_token=pad, cls_token=cls, sep_token=sep, mask_token=mask,
        bos_token=cls if roberta else None, eos_token=sep if roberta else None, model_max_length=512,
    )


def _config(kind: str, tok: Any, n_labels: int, hidden: int, layers: int, heads: int, max_len: int) -> Any:
    from transformers import BertConfig, DistilBertConfig, GPT2Config, RobertaConfig

    common = {"vocab_size": len(tok), "num_labels": n_labels, "pad_token_id": tok.pad_token_id}
    if kind == "bert":
        return BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                          intermediate_size=2 * hidden, max_position_embeddings=max_len, hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0, **common)
    if kind == "distilbert":
        return DistilBertConfig(dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=2 * hidden,
                                max_position_embeddings=max_len, dropout=0.0, attention_dropout=0.0,
                                seq_classif_dropout=0.0, **common)
    if kind == "roberta":
        return RobertaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                             intermediate_size=2 * hidden, max_position_embeddings=max_len + 2,
                             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                             bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, **common)
    if kind == "gpt2":
        return GPT2Config(n_embd=hidden, n_layer=layers, n_head=heads, n_positions=max_len, resid_pdrop=0.0,
                          embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **common)
    raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")


def build_tiny_classifier(
    kind: str,
    vocab: Iterable[str],
    *,
    labels: Sequence[str] | None = ("negative", "positive"),
    n_labels: int | None = None,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    max_len: int = 64,
    seed: int = 0,
    attn_implementation: str = "eager",
    pad_token: bool = True,
):
    """A random ``<Kind>ForSequenceClassification`` and its tokenizer, in eval mode on the CPU.

    Args:
        kind: ``bert``, ``distilbert``, ``roberta`` or ``gpt2``.
        vocab: words (and ``##`` pieces for the encoders).
        labels: label names written to ``id2label``; None leaves transformers' defaults.
        n_labels: number of classes when ``labels`` is None (default 2).
        pad_token: GPT-2 only: False builds a config without ``pad_token_id``.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    from .tiny import build_word_tokenizer

    vocab = list(vocab)
    tok = build_word_tokenizer(vocab) if kind == "gpt2" else build_wordpiece_tokenizer(vocab, kind == "roberta")
    n = len(labels) if labels is not None else (n_labels or 2)
    cfg = _config(kind, tok, n, hidden, layers, heads, max_len)
    if labels is not None:
        cfg.id2label = {i: str(name) for i, name in enumerate(labels)}
        cfg.label2id = {str(name): i for i, name in enumerate(labels)}
    if kind == "gpt2" and not pad_token:
        cfg.pad_token_id = None
    cfg._attn_implementation = attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(cfg)
    model.eval()
    return model, tok
