"""Conversations: rendering, eq. 8 follow-ups, rows by turn, eq. 11, turn sources, Inseq with chat templates."""

from __future__ import annotations

import numpy as np
import pytest

from attrib_mlops import attribute, attribute_sources
from attrib_mlops.errors import InputError, UnsupportedMethodError
from attrib_mlops.sources.conversation import (
    SIMPLE_CHAT_TEMPLATE,
    chat_prompt_for_engines,
    follow_up_turns,
    inseq_chat_problem,
    render_conversation,
    temporal_turn_importance,
    turn_ids,
    turn_importance,
)

VOCAB = ["<user>", "<assistant>", "<system>"] + [f"w{i}" for i in range(12)]
CONV = [
    {"role": "system", "content": "w0 w1"},
    {"role": "user", "content": "w2 w3 w4"},
    {"role": "assistant", "content": "w5"},
    {"role": "user", "content": "w6 w7"},
]
FAST = dict(n_ablations=16, n_holdout=8, n_random=2)


@pytest.fixture(scope="module")
def chat():
    """A tiny GPT-2 whose tokenizer gets a small chat template."""
    from attrib_mlops.demo.tiny import build_tiny_model

    model, tok = build_tiny_model(VOCAB, n_layer=2, n_embd=32, n_head=4, seed=1)
    tok.chat_template = SIMPLE_CHAT_TEMPLATE
    return model, tok


def test_render_finds_contents_and_adds_the_generation_prompt(chat):
    _, tok = chat
    r = render_conversation(tok, CONV)
    assert r.text == "<system> w0 w1 <user> w2 w3 w4 <assistant> w5 <user> w6 w7 <assistant>"
    assert [r.text[a:b] for a, b in r.content_spans] == ["w0 w1", "w2 w3 w4", "w5", "w6 w7"]
    assert r.add_generation_prompt
    assert not render_conversation(tok, CONV[:3]).add_generation_prompt  # ends with the assistant


def test_no_template_says_how_to_pass_one(chat):
    from attrib_mlops.demo.tiny import build_word_tokenizer

    bare = build_word_tokenizer(VOCAB)
    with pytest.raises(InputError, match=r"no chat template.*pass chat_template="):
        render_conversation(bare, CONV)
    assert render_conversation(bare, CONV, chat_template=SIMPLE_CHAT_TEMPLATE).text.startswith("<system>")
    with pytest.raises(InputError, match="does not copy message 0's content"):
        render_conversation(bare, CONV, chat_template="{% for m in messages %}<user> w9 {% endfor %}")


def test_turn_sources_are_message_contents_and_markup_is_never_a_source(chat):
    model, tok = chat
    [r] = attribute_sources(model, tok, CONV, " w8", "turn", **FAST)
    assert r.sources == ["w0 w1", "w2 w3 w4", "w5", "w6 w7"]
    [s] = attribute_sources(model, tok, [CONV], [" w8"], "token", ablation="mask", **FAST)
    assert s.sources == ["w0", "w1", "w2", "w3", "w4", "w5", "w6", "w7"]
    assert not any(src.startswith("<") for src in s.sources)
    # the prompt is tokenised without special tokens added again: its ids are the template's
    assert s.prompt == render_conversation(tok, CONV).text


def test_follow_up_turns_feed_back_the_models_own_answers(chat):
    model, tok = chat
    turns = follow_up_turns(model, tok, ["w2 w3", "w6"], system="w0", max_new_tokens=2)
    (m1, a1), (m2, a2) = turns
    assert [m["role"] for m in m1] == ["system", "user"]
    assert [m["role"] for m in m2] == ["system", "user", "assistant", "user"]
    assert m2[2]["content"] == a1.strip()  # eq. 8: X_2 = (X_1, Y_1, X_2)
    # each answer is the greedy continuation of its rendered conversation
    [r] = attribute_sources(model, tok, m2, None, "turn", max_new_tokens=2, **FAST)
    assert r.target == a2
    rs = attribute_sources(model, tok, [m for m, _ in turns], [a for _, a in turns], "turn", **FAST)
    assert [len(x.sources) for x in rs] == [2, 4]


def test_turn_ids_label_rows_and_eq11_aggregates_turns(chat):
    model, tok = chat
    text = render_conversation(tok, CONV).text
    [res] = attribute(model, tok, text, " w8 w9", methods="attention")
    ids = turn_ids(res, tok, CONV)
    words = res.source_tokens
    assert list(zip(words, ids.tolist())) == [
        ("<system>", 0), ("w0", 0), ("w1", 0), ("<user>", 1), ("w2", 1), ("w3", 1), ("w4", 1),
        ("<assistant>", 2), ("w5", 2), ("<user>", 3), ("w6", 3), ("w7", 3), ("<assistant>", 4),
        ("w8", 4), ("w9", 4),
    ]
    imp = turn_importance(res, ids)
    from attrib_mlops.analysis.aggregate import source_importance

    rows = source_importance(res)
    assert imp.tolist() == pytest.approx([np.nansum(rows[ids == t]) for t in range(5)])
    # eq. 11 over two turns with different numbers of sources: NaN-padded, weights renormalised
    got = temporal_turn_importance([np.array([1.0, 2.0]), np.array([3.0, 4.0, 5.0])], weights=[1.0, 3.0])
    assert got.tolist() == pytest.approx([(1 + 9) / 4, (2 + 12) / 4, 5.0])
    [r] = attribute_sources(model, tok, CONV, " w8", "turn", **FAST)
    assert temporal_turn_importance([r], decay=0.5).tolist() == pytest.approx(r.scores.tolist())


@pytest.fixture(scope="module")
def bos_chat(chat):
    """The same model with a tokenizer that adds [BOS] itself and a template that also writes it."""
    import copy

    from tokenizers.processors import TemplateProcessing

    model, tok = chat
    tok2 = copy.deepcopy(tok)
    tok2._tokenizer.post_processor = TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", tok2.bos_token_id)])
    tok2.chat_template = "[BOS] " + SIMPLE_CHAT_TEMPLATE
    return model, tok2


def test_written_bos_is_detected_and_cut_for_the_token_engines(chat, bos_chat):
    _, tok = chat
    model, tok2 = bos_chat
    assert inseq_chat_problem(tok, render_conversation(tok, CONV).text) is None
    text = render_conversation(tok2, CONV).text
    problem = inseq_chat_problem(tok2, text)
    assert "Inseq issue 278" in problem and "[BOS]" in problem
    ready = chat_prompt_for_engines(tok2, CONV)
    assert ready == text[len("[BOS] "):] or ready == text[len("[BOS]"):]
    own = tok2(text, add_special_tokens=False)["input_ids"]
    assert tok2(ready)["input_ids"] == own  # exactly the template's tokens, one BOS
    [res] = attribute(model, tok2, ready, " w8", methods="attention")
    ids = turn_ids(res, tok2, CONV)
    assert ids[0] == -1 and ids[1] == 0  # the tokenizer's BOS belongs to no message
    # attribute_sources renders and encodes conversations itself: one BOS
    [s] = attribute_sources(model, tok2, CONV, " w8", "turn", **FAST)
    assert s.prompt == text


@pytest.mark.slow
def test_inseq_runs_chat_prompts_when_the_template_leaves_special_tokens_alone(chat, bos_chat):
    model, tok = chat
    text = chat_prompt_for_engines(tok, CONV)
    [nat] = attribute(model, tok, text, " w8", methods="saliency", engine="native")
    [ins] = attribute(model, tok, text, " w8", methods="saliency", engine="inseq")
    assert nat.source_tokens == ins.source_tokens
    np.testing.assert_allclose(nat.matrix, ins.matrix, rtol=1e-4, atol=1e-6)
    # Inseq on the raw rendering of a BOS-writing template: the adapter says it cannot (Inseq issue 278);
    # the native engine encodes the same text with one BOS, as the cut text gives Inseq
    model2, tok2 = bos_chat
    raw = render_conversation(tok2, CONV).text
    with pytest.raises(UnsupportedMethodError, match="Inseq issue 278"):
        attribute(model2, tok2, raw, " w8", methods="saliency", engine="inseq")
    ready = chat_prompt_for_engines(tok2, CONV)
    [ins2] = attribute(model2, tok2, ready, " w8", methods="saliency", engine="inseq")
    assert ins2.source_tokens[:2] == ["[BOS]", "<system>"]
    [nat2] = attribute(model2, tok2, raw, " w8", methods="saliency", engine="native")
    assert nat2.source_tokens == ins2.source_tokens
    np.testing.assert_allclose(nat2.matrix, ins2.matrix, rtol=1e-4, atol=1e-6)
