"""Fixtures of the source-attribution tests: a hand-built model whose answers are known in closed
form, and the demo's trained models (session-scoped; trained once, only by the slow tests)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

BOW_VOCAB = ["a", "b", "c", "d", "t", "u", ".", "?"]


class BagOfVisibleTokens(torch.nn.Module):
    """A causal "LM" whose logits at position q are the summed votes of the tokens it can see.

    ``logits[q] = bias + sum_{k <= q, mask_k = 1} votes[ids_k]``: no positions and no residual,
    so every ablation has a closed-form answer (:meth:`prob`).
    """

    def __init__(self, vocab_size: int, votes: dict[int, dict[int, float]]):
        super().__init__()
        w = torch.zeros(vocab_size, vocab_size)
        for src, row in votes.items():
            for tgt, v in row.items():
                w[src, tgt] = v
        self.votes = torch.nn.Parameter(w)
        self.bias = torch.nn.Parameter(torch.zeros(vocab_size))

    def forward(self, input_ids, attention_mask=None, position_ids=None, logits_to_keep=0, **kw):
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        v = self.votes[input_ids] * mask.unsqueeze(-1).to(self.votes.dtype)  # [R, L, V]
        logits = v.cumsum(dim=1) + self.bias
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            logits = logits[:, -logits_to_keep:]
        return SimpleNamespace(logits=logits)

    def prob(self, visible_ids: list[int], target: int) -> float:
        """Closed form: softmax(bias + sum of the visible tokens' votes)[target]."""
        z = self.bias.detach().double().clone()
        for i in visible_ids:
            z += self.votes[i].detach().double()
        return float(torch.softmax(z, 0)[target])


@pytest.fixture(scope="session")
def bow():
    """(model, tokenizer): 'a' votes +4 for 't', 'b' +1 for 't', 'c' +2 for 'u'; the rest vote nothing."""
    from attrib_mlops.demo.tiny import build_word_tokenizer

    tok = build_word_tokenizer(BOW_VOCAB)
    ids = {w: tok.convert_tokens_to_ids(w) for w in BOW_VOCAB}
    model = BagOfVisibleTokens(len(tok), {ids["a"]: {ids["t"]: 4.0}, ids["b"]: {ids["t"]: 1.0},
                                          ids["c"]: {ids["u"]: 2.0}})
    return model, tok


# ------------------------------------------------------------ trained demo models (slow tests only)
MD_STEPS = 200  # the key-value models use the demo's own recipe (DEFAULT_TRAIN: 400 steps)


def _train(vocab, model_kw, data, train_kw):
    from attrib_mlops.demo.tiny import build_tiny_model
    from attrib_mlops.demo.train import train_keyvalue

    model, tok = build_tiny_model(vocab, **model_kw)
    train_keyvalue(model, tok, data, **train_kw)
    model.eval()
    return model, tok


@pytest.fixture(scope="session")
def kv_clean():
    from attrib_mlops.demo.tasks import keyvalue_vocab, make_keyvalue_dataset
    from attrib_mlops.demo.train import DEFAULT_DATA, DEFAULT_MODEL, DEFAULT_TRAIN

    return _train(keyvalue_vocab(), DEFAULT_MODEL, make_keyvalue_dataset(**DEFAULT_DATA), DEFAULT_TRAIN)


@pytest.fixture(scope="session")
def kv_shortcut():
    from attrib_mlops.demo.tasks import keyvalue_vocab, make_keyvalue_dataset
    from attrib_mlops.demo.train import DEFAULT_MODEL, DEFAULT_TRAIN, SHORTCUT_DATA

    return _train(keyvalue_vocab(), DEFAULT_MODEL, make_keyvalue_dataset(**SHORTCUT_DATA), DEFAULT_TRAIN)


@pytest.fixture(scope="session")
def multidoc_model():
    from attrib_mlops.demo.multidoc import MULTIDOC_DATA, MULTIDOC_MODEL, MULTIDOC_TRAIN, make_multidoc_dataset, multidoc_vocab

    data = make_multidoc_dataset(**dict(MULTIDOC_DATA, n=MD_STEPS * 32))
    return _train(multidoc_vocab(), MULTIDOC_MODEL, data, dict(MULTIDOC_TRAIN, max_steps=MD_STEPS))


# ------------------------------------------------------------------ a subword (byte-level BPE) model
CORPUS = [
    "The cat sat on the mat. The dog ran in the park. Where is the cat? The cat is on the mat.",
    "Paris is the capital of France. Berlin is the capital of Germany. What is the capital of France?",
    "Alice likes tea. Bob likes coffee. Who likes tea? Alice does.",
]


@pytest.fixture(scope="session")
def bpe_tiny():
    """(model, tokenizer): a random GPT-2 with a byte-level BPE tokenizer trained here (offsets, merges)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(CORPUS * 4, trainer=trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>")
    cfg = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=4,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(cfg)
    model.eval()
    return model, tok
