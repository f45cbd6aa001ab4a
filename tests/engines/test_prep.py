"""engines/prep: a chat template that writes the BOS token is encoded with one BOS; Inseq says it cannot."""

from __future__ import annotations

import copy

import pytest

from attrib_mlops import attribute
from attrib_mlops.engines.prep import encode_samples, written_bos
from attrib_mlops.errors import UnsupportedMethodError
from attrib_mlops.sources.conversation import SIMPLE_CHAT_TEMPLATE, render_conversation

CONV = [{"role": "user", "content": "w1 w2"}, {"role": "assistant", "content": "w3"},
        {"role": "user", "content": "w4 w5"}]


@pytest.fixture(scope="module")
def bos_tok(tiny):
    """The tiny tokenizer made to add [BOS] itself, with a small chat template that also writes it (role words
    are [UNK] to this vocabulary, which is all the test needs)."""
    from tokenizers.processors import TemplateProcessing

    model, tok = tiny
    tok2 = copy.deepcopy(tok)
    tok2._tokenizer.post_processor = TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", tok2.bos_token_id)])
    tok2.chat_template = "[BOS] " + SIMPLE_CHAT_TEMPLATE
    return tok2


def test_chat_template_bos_is_not_doubled(tiny, bos_tok):
    model, tok = tiny
    text = render_conversation(bos_tok, CONV).text
    assert text.startswith("[BOS]") and written_bos(bos_tok, text)
    assert not written_bos(bos_tok, "w1 w2") and not written_bos(tok, text)  # plain prompt / no BOS added
    own = list(bos_tok(text, add_special_tokens=False)["input_ids"])  # the template's tokens, one BOS
    [enc] = encode_samples(bos_tok, [text], [" w6"], limit=None)
    assert list(enc.ids[: enc.n_prompt]) == own and enc.ids.count(bos_tok.bos_token_id) == 1
    # a plain prompt still gets the tokenizer's BOS
    [plain] = encode_samples(bos_tok, ["w1 w2"], [" w6"], limit=None)
    assert plain.ids[0] == bos_tok.bos_token_id and plain.ids.count(bos_tok.bos_token_id) == 1
    [r] = attribute(model, bos_tok, text, " w6", methods="saliency", engine="native")
    assert r.source_tokens.count("[BOS]") == 1 and r.n_prompt == len(own)


def test_inseq_adapter_refuses_a_written_bos_in_one_line(tiny, bos_tok):
    model, _ = tiny
    text = render_conversation(bos_tok, CONV).text
    from attrib_mlops.engines.inseq_engine import InseqEngine
    from attrib_mlops.options import AttributeOptions

    samples = encode_samples(bos_tok, ["w1 w2", text], [" w6", " w6"], limit=None)
    with pytest.raises(UnsupportedMethodError, match=r"sample 1: Inseq cannot run this chat-templated prompt "
                                                     r"\(Inseq issue 278\).*engine='native'") as e:
        InseqEngine().attribute(model, bos_tok, samples, "saliency", AttributeOptions(), "tiny")
    assert "\n" not in str(e.value)
