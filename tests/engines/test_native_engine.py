"""The native engine's own guarantees: batching, state restoration, dtypes, bad input."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch

from attrib_mlops import attribute, list_methods
from attrib_mlops.engines.native import integration_points
from attrib_mlops.errors import (
    ContextLengthError,
    InputError,
    SpecError,
    UnknownMethodError,
    UnsupportedMethodError,
)
from attrib_mlops.result import future_mask


def test_list_methods_names_both_engines():
    table = list_methods()
    assert set(table["native"]) == {"saliency", "input_x_gradient", "integrated_gradients", "attention", "occlusion"}
    assert {"lime", "value_zeroing", "deeplift", "gradient_shap"} <= set(table["inseq"])


def test_matrix_layout_and_future_mask(tiny, samples):
    model, tok = tiny
    prompts, targets = samples
    res = attribute(model, tok, prompts, targets, methods=["saliency", "occlusion"], engine="native")
    assert [r.method for r in res] == ["saliency"] * 3 + ["occlusion"] * 3
    for r, p, t in zip(res, prompts * 2, targets * 2):
        n, m = len(p.split()), len(t.split())
        assert r.shape == (n + m, m)
        assert r.n_prompt == n
        assert r.source_tokens == (p + t).split()
        assert r.target_tokens == t.split()
        np.testing.assert_array_equal(np.isnan(r.matrix), future_mask(n + m, m, n))
        assert r.matrix.dtype == np.float32
        assert np.all(r.step_scores["probability"] > 0) and np.all(r.step_scores["probability"] < 1)
        assert r.info["nonfinite_cells"] == 0
        assert "torch" in r.info["versions"] and r.info["target_source"] == "given"


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "attention", "occlusion"])
def test_batching_does_not_change_results(method, tiny, samples):
    model, tok = tiny
    prompts, targets = samples
    one = attribute(model, tok, prompts, targets, methods=method, engine="native", batch_size=1, n_steps=8)
    three = attribute(model, tok, prompts, targets, methods=method, engine="native", batch_size=3, n_steps=8)
    small_fwd = attribute(
        model, tok, prompts, targets, methods=method, engine="native", batch_size=3, n_steps=8, max_tokens_per_forward=7
    )
    for a, b, c in zip(one, three, small_fwd):
        np.testing.assert_allclose(a.matrix, b.matrix, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(a.matrix, c.matrix, rtol=1e-5, atol=1e-8)


def test_vmap_equals_loop(tiny, samples):
    model, tok = tiny
    prompts, targets = samples
    for method in ("saliency", "integrated_gradients"):
        a = attribute(model, tok, prompts, targets, methods=method, engine="native", vjp="loop", n_steps=6)
        b = attribute(model, tok, prompts, targets, methods=method, engine="native", vjp="vmap", n_steps=6)
        for x, y in zip(a, b):
            np.testing.assert_allclose(x.matrix, y.matrix, rtol=1e-5, atol=1e-8)


def test_ig_completeness(tiny, samples):
    """Integrated gradients (dim 'sum') add up to f(x) - f(baseline) (the completeness axiom)."""
    model, tok = tiny
    prompts, targets = samples
    (r,) = attribute(model, tok, prompts[0], targets[0], methods="integrated_gradients", engine="native",
                     dim_aggregation="sum", n_steps=64)
    # f(baseline) for target 0: every position of the prefix replaced by UNK
    ids = tok(prompts[0] + targets[0])["input_ids"]
    n = r.n_prompt
    with torch.no_grad():
        base = torch.tensor([[tok.unk_token_id] * n])
        p_base = model(input_ids=base).logits[0, -1].softmax(-1)[ids[n]].item()
    total = float(np.nansum(r.matrix[:, 0]))
    assert total == pytest.approx(r.step_scores["probability"][0] - p_base, rel=2e-2, abs=1e-5)


def test_integration_points_match_captum():
    from captum.attr._utils.approximation_methods import approximation_parameters

    for rule in ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"):
        step_fn, alpha_fn = approximation_parameters(rule)
        a, w = integration_points(9, rule)
        np.testing.assert_allclose(a, alpha_fn(9), rtol=1e-6)  # captum builds some in float32
        np.testing.assert_allclose(w, step_fn(9), rtol=1e-6)


def test_model_state_and_rng_are_restored(tiny, samples):
    model, tok = tiny
    model = copy.deepcopy(model)
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    before = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    attribute(model, tok, *samples, methods=["saliency", "integrated_gradients", "occlusion", "attention"],
              engine="native", n_steps=4)
    got = torch.rand(3)
    assert torch.equal(got, expected), "the user's RNG stream was consumed"
    assert model.training is True
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    assert torch.is_grad_enabled()


def test_inseq_engine_restores_state(tiny, samples):
    model, tok = tiny
    model = copy.deepcopy(model)
    model.train()
    pad_before = tok.pad_token
    attribute(model, tok, *samples, methods="saliency", engine="inseq")
    assert model.training is True
    assert tok.pad_token == pad_before


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_and_tracks_float32(dtype, tiny, samples):
    model, tok = tiny
    half = copy.deepcopy(model).to(dtype)
    ref = attribute(model, tok, *samples, methods="input_x_gradient", engine="native")
    low = attribute(half, tok, *samples, methods="input_x_gradient", engine="native")
    for a, b in zip(ref, low):
        assert b.matrix.dtype == np.float32
        assert np.isfinite(b.matrix[b.valid_mask()]).all()
        # low precision: same ranking of the strongest source per target in most columns
        agree = np.mean(np.nanargmax(a.matrix, 0) == np.nanargmax(b.matrix, 0))
        assert agree >= 0.5


def test_generation_when_targets_missing(tiny):
    model, tok = tiny
    res = attribute(model, tok, ["w1 w2 w3"], methods=["saliency", "attention"], engine="native", max_new_tokens=4)
    assert len(res) == 2
    assert res[0].target_tokens == res[1].target_tokens  # one continuation, shared by methods
    assert 1 <= len(res[0].target_tokens) <= 4
    assert res[0].info["target_source"] == "generated"


def test_load_from_local_path(tiny_dir, samples):
    res = attribute(str(tiny_dir), None, *samples, methods="saliency")
    assert res[0].info["model"] == str(tiny_dir)
    assert res[0].engine == "native"


def test_tokenizer_without_pad_token(tiny, samples):
    model, tok = tiny
    tok2 = copy.deepcopy(tok)
    tok2.pad_token = None
    a = attribute(model, tok, *samples, methods="saliency", batch_size=3)
    b = attribute(model, tok2, *samples, methods="saliency", batch_size=3)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.matrix, y.matrix, rtol=1e-5, atol=1e-8)
    assert tok2.pad_token is None  # we never mutate the user's tokenizer


def test_bad_input_errors(tiny, samples):
    model, tok = tiny
    prompts, targets = samples
    with pytest.raises(UnknownMethodError, match="valid methods: .*saliency"):
        attribute(model, tok, prompts, targets, methods="salency")
    with pytest.raises(UnsupportedMethodError, match="does not support 'lime'"):
        attribute(model, tok, prompts, targets, methods="lime", engine="native")
    with pytest.raises(InputError, match="prompt 1 is empty"):
        attribute(model, tok, ["w1", "  "], [" w2", " w3"])
    with pytest.raises(InputError, match="3 prompts but 2 targets"):
        attribute(model, tok, prompts, targets[:2])
    with pytest.raises(SpecError, match="unknown key 'n_stepz'"):
        attribute(model, tok, prompts, targets, n_stepz=3)
    with pytest.raises(InputError, match="adds no token"):
        attribute(model, tok, ["w1 w2"], [""])
    with pytest.raises(Exception, match="unknown engine 'fast'"):
        attribute(model, tok, prompts, targets, engine="fast")


def test_context_length_error_and_truncation(tiny):
    model, tok = tiny  # n_positions = 64
    long_prompt = " ".join(f"w{i % 40}" for i in range(70))
    with pytest.raises(ContextLengthError, match="truncate=True"):
        attribute(model, tok, long_prompt, " w1")
    (r,) = attribute(model, tok, long_prompt, " w1", truncate=True)
    assert r.shape == (64, 1)
    assert r.info["truncated_prompt_tokens"] == 7


def test_nonfinite_attributions_are_flagged(tiny, samples, caplog):
    model, tok = tiny
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.transformer.wte.weight[5] = float("inf")  # token 'w1'
    with caplog.at_level(logging.WARNING):
        res = attribute(broken, tok, samples[0][:1], samples[1][:1], methods="input_x_gradient")
    assert res[0].info["nonfinite_cells"] > 0
    assert "NaN or inf" in caplog.text


def test_sdpa_model_attention_switches_and_restores(samples):
    from attrib_mlops.demo.tiny import build_tiny_model

    model, tok = build_tiny_model([f"w{i}" for i in range(40)], n_layer=2, n_embd=32, n_head=4,
                                  attn_implementation="sdpa")
    eager, _ = build_tiny_model([f"w{i}" for i in range(40)], n_layer=2, n_embd=32, n_head=4)
    a = attribute(model, tok, *samples, methods="attention", engine="native")
    b = attribute(eager, tok, *samples, methods="attention", engine="native")
    assert model.config._attn_implementation == "sdpa"
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.matrix, y.matrix, rtol=1e-5, atol=1e-7)


def test_encoder_decoder_goes_through_inseq():
    from transformers import BartConfig, BartForConditionalGeneration

    from attrib_mlops.demo.tiny import build_word_tokenizer

    tok = build_word_tokenizer([f"w{i}" for i in range(40)])
    cfg = BartConfig(
        vocab_size=len(tok), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.bos_token_id, forced_eos_token_id=None,
    )
    torch.manual_seed(0)
    model = BartForConditionalGeneration(cfg).eval()
    res = attribute(model, tok, ["w1 w2 w3"], ["w4 w5"], methods=["saliency", "attention"])
    assert [r.engine for r in res] == ["inseq", "inseq"]
    for r in res:
        assert r.source_tokens == ["w1", "w2", "w3"] and r.target_tokens == ["w4", "w5"]
        assert r.n_prompt == 3 and np.isfinite(r.matrix).all()
    assert len(res[0].step_scores["probability"]) == 2
    with pytest.raises(UnsupportedMethodError, match="decoder-only"):
        attribute(model, tok, ["w1 w2 w3"], ["w4 w5"], methods="saliency", engine="native")


@pytest.mark.parametrize("method", ["deeplift", "gradient_shap", "lime"])
def test_inseq_only_methods_through_auto(method, tiny, samples):
    """Methods without a native implementation run through Inseq with engine='auto', same layout."""
    model, tok = tiny
    prompts, targets = samples
    kw = {"method_kwargs": {"n_samples": 5}} if method == "gradient_shap" else {}
    res = attribute(model, tok, prompts[:2], targets[:2], methods=method, **kw)
    assert [r.engine for r in res] == ["inseq", "inseq"]
    for r, p, t in zip(res, prompts, targets):
        n, m = len(p.split()), len(t.split())
        assert r.shape == (n + m, m)
        assert np.isfinite(r.matrix[r.valid_mask()]).all()
        np.testing.assert_array_equal(np.isnan(r.matrix), ~r.valid_mask())
        assert r.info["inseq"] and r.method == method


def test_inseq_failure_is_reported_and_model_restored(tiny, samples):
    """Inseq 0.7's value_zeroing cannot parse transformers 5's GPT-2 attention source: a clear error,
    and every hook Inseq installed is removed, so the model keeps working."""
    from attrib_mlops.engines.inseq_engine import InseqFailure

    model, tok = tiny
    prompts, targets = samples
    before = attribute(model, tok, prompts, targets, methods="saliency", engine="native")
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    try:
        attribute(model, tok, prompts[:1], targets[:1], methods="value_zeroing")
    except InseqFailure as e:
        assert "value_zeroing" in str(e)
    after = attribute(model, tok, prompts, targets, methods="saliency", engine="native")
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == hooks
    assert all("forward" not in m.__dict__ for m in model.modules())
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a.matrix, b.matrix)
