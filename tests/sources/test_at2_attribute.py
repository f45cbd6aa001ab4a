"""``attribute_sources(method="at2" | "attention")``: one forward per batch, scores, provenance, errors."""

from __future__ import annotations

import numpy as np
import pytest

from attrib_mlops import attribute_sources
from attrib_mlops.demo.tiny_families import build_tiny_causal_lm
from attrib_mlops.errors import InputError, ModelLoadError, SpecError
from attrib_mlops.sources.at2.estimator import EstimatorMismatchError, SourceEstimator
from attrib_mlops.sources.at2.features import source_features, span_features
from attrib_mlops.sources.at2.options import parse_at2_options
from attrib_mlops.sources.at2.prepare import prepare_samples

PROMPTS = ["w1 w2 . w3 w4 . w5 w6 .", "w7 . w8 w9 w10 .", "w11 w12 w13 . w14 . w15 . w16 w17 ."]
TARGETS = [" w3 w4", " w8", " w12 w13 w0"]


@pytest.fixture(scope="module")
def estimator():
    w = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    return SourceEstimator(w / np.abs(w).sum(), {"model_type": "gpt2"}, {"kind": "at2", "base_model": "tiny",
                                                                         "quality": {"lds": 0.5}})


def _expected(model, tok, est, span=None):
    samples, _ = prepare_samples(model, tok, PROMPTS, TARGETS, "sentence", parse_at2_options())
    feats = source_features(model, [s.sample for s in samples], [s.membership for s in samples])
    return [est.scores(span_features(f, span)) for f in feats]


def test_at2_scores_are_the_estimator_on_the_features_in_one_forward(tiny, estimator):
    model, tok = tiny
    res = attribute_sources(model, tok, PROMPTS, TARGETS, "sentence", method="at2", estimator=estimator,
                            sample_ids=["a", "b", "c"])
    for r, want in zip(res, _expected(model, tok, estimator)):
        np.testing.assert_allclose(r.scores, want, rtol=1e-6)
    assert [r.n_sources for r in res] == [3, 2, 4] and res[0].sources == ["w1 w2 .", "w3 w4 .", "w5 w6 ."]
    info = res[2].info
    assert res[2].method == "at2" and res[2].sample_id == "c" and res[2].ablation is None
    assert info["n_forwards"] == 1 and info["n_forward_calls"] == 1 and info["batch_samples"] == 3
    assert info["estimator"]["fingerprint"] == estimator.fingerprint()
    assert info["estimator"]["quality"] == {"lds": 0.5} and info["estimator"]["base_model"] == "tiny"
    # per-target-token scores are kept: a sub-span is a mean away, and equals a call with target_span
    tok_scores = np.array(info["token_scores"])  # [S, T]
    assert tok_scores.shape == (4, 3)
    np.testing.assert_allclose(tok_scores.mean(axis=1), res[2].scores, rtol=1e-6)
    [sub] = attribute_sources(model, tok, PROMPTS[2], TARGETS[2], "sentence", method="at2", estimator=estimator,
                              target_span=(1, 3))
    np.testing.assert_allclose(sub.scores, tok_scores[:, 1:3].mean(axis=1), rtol=1e-6)
    # the result serialises like an ablation result
    back = type(res[0]).from_dict(res[0].to_dict())
    np.testing.assert_allclose(back.scores, res[0].scores)


def test_attention_baseline_is_uniform_averaging(tiny):
    model, tok = tiny
    res = attribute_sources(model, tok, PROMPTS, TARGETS, "sentence", method="attention")
    uni = SourceEstimator.uniform(2, 4)
    for r, want in zip(res, _expected(model, tok, uni)):
        np.testing.assert_allclose(r.scores, want, rtol=1e-6)
    assert res[0].info["estimator"]["kind"] == "uniform"


def test_estimator_from_a_folder_and_generated_targets(tiny, estimator, tmp_path):
    model, tok = tiny
    d = estimator.save(tmp_path / "est")
    prompt = "w1 w2 w3\nw4 w5 w6"  # the tiny model continues it with words (no special tokens)
    [r] = attribute_sources(model, tok, prompt, None, "line", method="at2", estimator=str(d), max_new_tokens=3)
    [ab] = attribute_sources(model, tok, prompt, None, "line", max_new_tokens=3, n_ablations=8, n_holdout=0,
                             evaluate=False)
    assert r.info["target_source"] == "generated" and r.target == ab.target and len(r.target_tokens) == 3


def test_conversation_prompts_use_the_chat_template():
    from attrib_mlops.sources.conversation import SIMPLE_CHAT_TEMPLATE

    model, tok = build_tiny_causal_lm("llama", ["<user>", "<assistant>", "<system>", "w1", "w2", "w3", "."])
    conv = [{"role": "system", "content": "w1 w2 ."}, {"role": "user", "content": "w3 . w1 ."}]
    [r] = attribute_sources(model, tok, [conv], [" w2"], "turn", method="attention",
                            chat_template=SIMPLE_CHAT_TEMPLATE)
    assert r.sources == ["w1 w2 .", "w3 . w1 ."] and r.prompt.startswith("<system>")


def test_bad_input(tiny, estimator):
    model, tok = tiny
    with pytest.raises(InputError, match="method='at2' needs estimator="):
        attribute_sources(model, tok, PROMPTS, TARGETS, method="at2")
    with pytest.raises(InputError, match="takes no estimator"):
        attribute_sources(model, tok, PROMPTS, TARGETS, method="attention", estimator=estimator)
    llama_est = SourceEstimator.uniform(2, 4, {"model_type": "llama"})
    with pytest.raises(EstimatorMismatchError, match="model_type 'gpt2'"):
        attribute_sources(model, tok, PROMPTS, TARGETS, method="at2", estimator=llama_est)
    with pytest.raises(EstimatorMismatchError, match="3 layers"):
        attribute_sources(model, tok, PROMPTS, TARGETS, method="at2", estimator=SourceEstimator.uniform(3, 4))
    with pytest.raises(ModelLoadError, match="not an AT2 estimator folder"):
        attribute_sources(model, tok, PROMPTS, TARGETS, method="at2", estimator="/nonexistent/estimator")
    with pytest.raises(SpecError, match="unknown key 'n_ablations'"):
        attribute_sources(model, tok, PROMPTS, TARGETS, method="at2", estimator=estimator, n_ablations=8)
    with pytest.raises(InputError, match="outside the target"):
        attribute_sources(model, tok, PROMPTS[1], TARGETS[1], method="at2", estimator=estimator, target_span=(0, 3))
