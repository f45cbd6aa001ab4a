"""attribute_sources: the contract, model handling, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attrib_mlops import SourceAttribution, attribute_sources
from attrib_mlops.errors import AttribError, InputError, SpecError, UnknownMethodError

TEXT = "The cat sat on the mat. The dog ran in the park. Where is the cat?"
FAST = dict(n_ablations=16, n_holdout=8, n_random=2)


def test_contract_on_a_subword_model(bpe_tiny):
    model, tok = bpe_tiny
    rs = attribute_sources(model, tok, [TEXT, "Alice likes tea.\nBob likes coffee.\nWho likes tea?"],
                           [" The cat", " Alice"], sources="sentence", **FAST)
    assert [type(r) for r in rs] == [SourceAttribution] * 2
    r = rs[0]
    assert r.sources == ["The cat sat on the mat.", "The dog ran in the park.", "Where is the cat?"]
    assert [r.prompt[a:b] for a, b in r.spans] == r.sources and r.prompt == TEXT
    assert r.scores.shape == (3,) and np.isfinite(r.scores).all()
    assert r.target == " The cat" and r.method == "ablation"
    info = r.info
    assert info["ablation"] == "remove" and info["seed"] == 0 and info["n_ablations"] == 16
    assert info["n_forwards"] == 16 + 8 + 1 + 2 * (1 + 2)  # fit + held-out + full + top-k (k=1, 3)
    assert {"lds", "topk_drop", "random_drop", "n_holdout"} <= set(info["quality"])
    assert info["target_source"] == "given" and "torch" in info["versions"]
    assert rs[1].sources == ["Alice likes tea.", "Bob likes coffee.", "Who likes tea?"]


@pytest.mark.parametrize("padding", ["left", "right"])
def test_paddings_agree_in_remove_mode(bpe_tiny, padding):
    model, tok = bpe_tiny
    ref = attribute_sources(model, tok, TEXT, " The cat", **FAST)[0]
    got = attribute_sources(model, tok, TEXT, " The cat", padding=padding, max_tokens_per_forward=64, **FAST)[0]
    np.testing.assert_allclose(got.ablation.token_logprobs, ref.ablation.token_logprobs, atol=5e-5)


def test_generated_target_is_the_greedy_continuation(tiny):
    model, tok = tiny
    prompt = "w1 w2 w3\nw4 w5 w6"
    [r] = attribute_sources(model, tok, prompt, None, "line", max_new_tokens=3, **FAST)
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False,
                         pad_token_id=tok.pad_token_id)[0, ids.shape[1]:]
    assert tok(prompt + r.target)["input_ids"][ids.shape[1]:] == gen.tolist()
    assert r.info["target_source"] == "generated" and r.sources == ["w1 w2 w3", "w4 w5 w6"]


def test_model_state_is_restored(tiny):
    model, tok = tiny
    model.train()
    frozen = next(model.parameters())
    frozen.requires_grad_(False)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    attribute_sources(model, tok, "w1 w2\nw3 w4", " w5", "line", **FAST)
    assert torch.equal(torch.rand(3), expected)  # the caller's RNG stream is untouched
    assert model.training and not frozen.requires_grad
    assert all(p.requires_grad for p in list(model.parameters())[1:])
    assert torch.is_grad_enabled()
    frozen.requires_grad_(True)
    model.eval()


def test_model_reference_is_loaded(tiny_dir):
    [r] = attribute_sources(str(tiny_dir), None, "w1 w2\nw3 w4", " w5", "line", **FAST)
    assert r.info["model"] == str(tiny_dir) and r.sources == ["w1 w2", "w3 w4"]


def test_explicit_substrings_flat_for_one_prompt(tiny):
    model, tok = tiny
    [r] = attribute_sources(model, tok, "w1 w2 w3 w4", " w5", ["w1 w2", "w4"], **FAST)
    assert r.spans == [(0, 5), (9, 11)] and r.info["splitter"] == "explicit"
    with pytest.raises(InputError, match="one list per prompt"):
        attribute_sources(model, tok, ["w1 w2", "w3 w4"], [" w5", " w6"], ["w1", "w3"])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(sources=[["w9"]]), InputError, "not a substring of the prompt"),
        (dict(sources=[["w3", "w1"]]), InputError, "in the order they occur"),
        (dict(sources=[[]]), InputError, "zero sources"),
        (dict(targets=""), InputError, "adds no token"),
        (dict(sources="turn"), InputError, "needs a conversation"),
        (dict(sources="paragraph"), InputError, "unknown source splitter"),
        (dict(method="at3"), UnknownMethodError, "valid: ablation"),
        (dict(n_ablation=8), SpecError, "unknown key 'n_ablation'"),
        (dict(targets=[" w1", " w2"]), InputError, "1 prompts but 2 targets"),
        (dict(prompts=["w1", "  "]), InputError, "prompt 1 is empty"),
        (dict(prompts=[{"role": "user", "content": "w1"}]), InputError, "no chat template.*chat_template="),
        (dict(prompts=[[{"role": "user"}]]), InputError, "needs string 'role' and 'content'"),
        (dict(device="cuda:3"), InputError, "move the model"),
    ],
)
def test_bad_input_is_a_clear_error(tiny, kwargs, error, match):
    model, tok = tiny
    call = dict(prompts="w1 w2 w3", targets=" w4", sources="line")
    call.update(kwargs)
    with pytest.raises(error, match=match) as info:
        attribute_sources(model, tok, **call)
    assert isinstance(info.value, AttribError)
    assert "\n" not in str(info.value)


def test_mask_mode_refuses_flash_attention(tiny):
    model, tok = tiny
    saved = model.config._attn_implementation
    model.config._attn_implementation = "flash_attention_2"
    try:
        with pytest.raises(AttribError, match="attn_implementation='sdpa'"):
            attribute_sources(model, tok, "w1 w2\nw3", " w4", "line", ablation="mask")
    finally:
        model.config._attn_implementation = saved
