"""LIME and KernelSHAP through Captum: classifiers and causal LMs, equal to Captum called by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attrib_mlops import attribute
from attrib_mlops.demo.tiny_classifier import build_tiny_classifier
from attrib_mlops.errors import InputError

VOCAB = ["the", "film", "plot", "was", "very", "good", "bad", "boring", "great", "and", "not"]
TEXTS = ["the film was good", "the plot was very boring and bad"]


@pytest.fixture(scope="module")
def bert():
    model, tok = build_tiny_classifier("bert", VOCAB, seed=2)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    return model, tok


def _by_hand(model, tok, texts, method, n_samples, ppe, seed, classes):
    """Captum on each unpadded sample, in the engine's order (samples, then classes), one seed."""
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import KernelShap, Lime

    torch.manual_seed(seed)
    out = []
    for text, cs in zip(texts, classes):
        enc = tok(text, return_special_tokens_mask=True)
        ids = torch.tensor([enc["input_ids"]])
        special = torch.tensor([enc["special_tokens_mask"]], dtype=torch.bool)
        emb = model.get_input_embeddings()
        x = emb(ids).detach()
        base = emb(torch.where(special, ids, torch.full_like(ids, tok.unk_token_id))).detach()
        mask = torch.arange(x.shape[1]).view(1, -1, 1).expand_as(x)

        def fn(e):
            return model(inputs_embeds=e, attention_mask=torch.ones(e.shape[:2], dtype=torch.long)).logits.softmax(-1)

        cols = []
        for c in cs:
            expl = Lime(fn, interpretable_model=SkLearnRidge(alpha=1.0)) if method == "lime" else KernelShap(fn)
            a = expl.attribute(x, baselines=base, target=c, feature_mask=mask, n_samples=n_samples,
                               perturbations_per_eval=ppe)
            cols.append(a[0, :, 0].detach().numpy())
        out.append(np.stack(cols, 1))
    return out


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_classifier_equals_captum_by_hand(method, bert):
    model, tok = bert
    kw = {"n_samples": 60, "perturbations_per_eval": 8, "seed": 3}
    res = attribute(model, tok, TEXTS, targets=["positive", "*"], methods=method, method_kwargs=kw)
    ref = _by_hand(model, tok, TEXTS, method, 60, 8, 3, [[1], [0, 1]])
    for r, want in zip(res, ref):
        assert r.engine == "captum" and r.method == method
        assert r.matrix.shape == want.shape
        np.testing.assert_allclose(r.matrix, want, rtol=1e-4, atol=1e-6)
        assert r.info["n_samples"] == 60 and r.info["special_tokens_mask"][0] == 1
    assert res[1].target_tokens == ["negative", "positive"]
    assert np.abs(res[1].matrix).max() > 1e-3


def test_kernel_shap_is_nearly_efficient_and_deterministic(bert):
    model, tok = bert
    kw = {"n_samples": 300, "seed": 0}
    torch.manual_seed(9)
    expected = torch.rand(2)
    torch.manual_seed(9)
    a = attribute(model, tok, TEXTS[1], targets=1, methods="kernel_shap", method_kwargs=kw)[0]
    assert torch.equal(torch.rand(2), expected)  # the caller's RNG stream is untouched
    b = attribute(model, tok, TEXTS[1], targets=1, methods="kernel_shap", method_kwargs=kw)[0]
    np.testing.assert_array_equal(a.matrix, b.matrix)
    # Shapley efficiency: attributions sum to f(x) - f(baseline)
    enc = tok(TEXTS[1], return_special_tokens_mask=True, return_tensors="pt")
    ids = enc["input_ids"]
    base = torch.where(enc["special_tokens_mask"].bool(), ids, torch.full_like(ids, tok.unk_token_id))
    with torch.no_grad():
        fx = model(input_ids=ids).logits.softmax(-1)[0, 1]
        fb = model(input_ids=base).logits.softmax(-1)[0, 1]
    assert float(a.matrix.sum()) == pytest.approx(float(fx - fb), abs=0.02)


def test_causal_lm_through_captum(tiny, samples):
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime

    model, tok = tiny
    prompts, targets = samples
    res = attribute(model, tok, prompts[:2], targets[:2], methods="lime", engine="captum",
                    method_kwargs={"n_samples": 40, "seed": 1})
    torch.manual_seed(1)
    for r, p, t in zip(res, prompts[:2], targets[:2]):
        assert r.engine == "captum" and r.is_decoder_only
        np.testing.assert_array_equal(np.isnan(r.matrix), ~r.valid_mask())
        ids = tok(p + t)["input_ids"]
        emb = model.get_input_embeddings()
        n = r.n_prompt
        for j in range(len(ids) - n):
            pre = torch.tensor([ids[: n + j]])
            x = emb(pre).detach()
            base = emb(torch.full_like(pre, tok.unk_token_id)).detach()
            mask = torch.arange(n + j).view(1, -1, 1).expand_as(x)
            lime = Lime(lambda e: model(inputs_embeds=e).logits[:, -1].float().softmax(-1),
                        interpretable_model=SkLearnRidge(alpha=1.0))
            a = lime.attribute(
                x, baselines=base, target=ids[n + j], feature_mask=mask, n_samples=40, perturbations_per_eval=16)
            np.testing.assert_allclose(r.matrix[: n + j, j], a[0, :, 0].detach().numpy(), rtol=1e-4, atol=1e-6)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0].softmax(-1)
        want = [float(logits[n - 1 + j, ids[n + j]]) for j in range(len(ids) - n)]
        np.testing.assert_allclose(r.step_scores["probability"], want, rtol=1e-5)


def test_kernel_shap_on_causal_lm_via_auto(tiny, samples):
    model, tok = tiny
    prompts, targets = samples
    r = attribute(model, tok, prompts[0], targets[0], methods="kernel_shap", method_kwargs={"n_samples": 30})[0]
    assert r.engine == "captum" and r.shape == (len(r.source_tokens), 2)


def test_bad_method_kwargs(bert):
    model, tok = bert
    with pytest.raises(InputError, match=r"unknown method_kwargs \['steps'\]"):
        attribute(model, tok, TEXTS[0], methods="lime", method_kwargs={"steps": 3})
    with pytest.raises(InputError, match="n_samples must be >= 2"):
        attribute(model, tok, TEXTS[0], methods="lime", method_kwargs={"n_samples": 1})
