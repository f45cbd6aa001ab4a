"""Batched ablation forwards against one-row forwards, closed forms and float64 references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attrib_mlops.errors import ContextLengthError, InputError
from attrib_mlops.sources.forward import Forwarder, _token_logprobs, encode_prompt


def _ref_logprobs(model, ids, att=None, pos=None, n_prompt=None, target=None):
    """One sequence, no padding: float64 log-softmax of the full logits at the target positions."""
    x = torch.tensor([ids])
    kw = {}
    if att is not None:
        kw["attention_mask"] = torch.tensor([att])
    kw["position_ids"] = torch.tensor([pos if pos is not None else list(range(len(ids)))])
    with torch.no_grad():
        lg = model(input_ids=x, **kw).logits[0].double().log_softmax(-1)
    T = len(target)
    return np.array([float(lg[n_prompt - 1 + j, target[j]]) for j in range(T)])


@pytest.fixture()
def sample(tiny):
    model, tok = tiny
    return encode_prompt(tok, "w1 w2 w3 w4 w5 w6", " w7 w8 w9", add_special_tokens=True, limit=64)


def test_mask_rows_match_single_forwards(tiny, sample):
    model, tok = tiny
    rng = np.random.default_rng(0)
    keep = rng.random((9, sample.n_prompt)) < 0.5
    keep[0] = True
    fwd = Forwarder(model, tok, torch.device("cpu"))
    got = fwd.token_masks(sample, keep, mode="mask")
    assert fwd.n_calls == 1 and fwd.n_rows == 9
    ids = sample.prompt_ids + sample.target_ids[:-1]
    for r in range(9):
        att = [int(k) for k in keep[r]] + [1] * (sample.n_target - 1)
        ref = _ref_logprobs(model, ids, att, None, sample.n_prompt, sample.target_ids)
        np.testing.assert_allclose(got[r], ref, atol=2e-5)


@pytest.mark.parametrize("padding", ["left", "right"])
def test_drop_and_text_rows_match_unpadded_forwards(tiny, sample, padding):
    model, tok = tiny
    keep = np.array([[1, 1, 1, 1, 1, 1], [0, 1, 0, 1, 1, 1], [1, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1]], bool)
    fwd = Forwarder(model, tok, torch.device("cpu"), padding=padding)
    got = fwd.token_masks(sample, keep, mode="drop")
    texts = ["w1 w2 w3 w4 w5 w6", "w2 w4 w5 w6", "w6"]
    got_t = fwd.texts(sample, texts)
    for r in range(4):
        p = [t for t, k in zip(sample.prompt_ids, keep[r]) if k]
        ref = _ref_logprobs(model, p + sample.target_ids[:-1], None, None, len(p), sample.target_ids)
        np.testing.assert_allclose(got[r], ref, atol=2e-5)
    for r, text in enumerate(texts):
        p = tok(text)["input_ids"]
        ref = _ref_logprobs(model, p + sample.target_ids[:-1], None, None, len(p), sample.target_ids)
        np.testing.assert_allclose(got_t[r], ref, atol=2e-5)


def test_small_memory_bound_splits_forwards_with_same_outcomes(tiny, sample):
    model, tok = tiny
    keep = np.random.default_rng(1).random((12, sample.n_prompt)) < 0.5
    big = Forwarder(model, tok, torch.device("cpu")).token_masks(sample, keep)
    small = Forwarder(model, tok, torch.device("cpu"), max_tokens_per_forward=20)
    np.testing.assert_allclose(small.token_masks(sample, keep), big, atol=2e-5)
    assert small.n_calls == 6  # 8 tokens per row: 2 rows fit in 20 tokens, 3 do not


def test_bag_of_tokens_closed_form_in_every_mode(bow):
    model, tok = bow
    s = encode_prompt(tok, "a b . c d ?", " t", add_special_tokens=True, limit=None)
    keep = np.array([[1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1], [1, 0, 1, 0, 1, 1], [0, 0, 0, 0, 0, 0]], bool)
    t_id = s.target_ids[0]
    fwd = Forwarder(model, tok, torch.device("cpu"))
    for mode in ("mask", "drop"):
        got = fwd.token_masks(s, keep, mode=mode)[:, 0]
        for r in range(3):
            visible = [i for i, k in zip(s.prompt_ids, keep[r]) if k]
            assert got[r] == pytest.approx(math.log(model.prob(visible, t_id)), rel=1e-6)
    # every token dropped: 'drop' stands the BOS token in for the empty prompt
    assert fwd.n_empty_prompts == 1


def test_logprobs_stay_accurate_for_probability_near_one():
    V = 50
    z = torch.zeros(1, 1, V)
    z[0, 0, 3] = 40.0  # p = 1 - 49 e^-40 (float32 log_softmax rounds log p to 0)
    got = _token_logprobs(z, torch.tensor([[3]]))[0, 0]
    q = 49 * math.exp(-40.0)
    assert got == pytest.approx(math.log1p(-q / (1 + q)), rel=1e-5)
    assert got < 0
    z[0, 0, 3] = -40.0  # and near zero
    got = _token_logprobs(z, torch.tensor([[3]]))[0, 0]
    assert got == pytest.approx(-40.0 - math.log(49 + math.exp(-40.0)), rel=1e-6)


def test_encode_errors(tiny):
    _, tok = tiny
    with pytest.raises(InputError, match="adds no token"):
        encode_prompt(tok, "w1 w2", "", add_special_tokens=True, limit=None)
    with pytest.raises(InputError, match="adds no token"):
        encode_prompt(tok, "w1 w2", "  ", add_special_tokens=True, limit=None)
    with pytest.raises(ContextLengthError, match="context is 3"):
        encode_prompt(tok, "w1 w2 w3", " w4", add_special_tokens=True, limit=3)
