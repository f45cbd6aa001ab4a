"""SourceEstimator: scoring, safetensors + JSON round trip (no pickle), architecture checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attrib_mlops.demo.tiny_families import build_tiny_causal_lm
from attrib_mlops.errors import ModelLoadError
from attrib_mlops.sources.at2.estimator import META_FILE, WEIGHTS_FILE, EstimatorMismatchError, SourceEstimator

VOCAB = ["a", "b", "c", "."]


def test_uniform_is_the_mean_over_layers_and_heads():
    est = SourceEstimator.uniform(3, 4)
    f = np.random.default_rng(0).random((5, 2, 12))
    np.testing.assert_allclose(est.scores(f), f.mean(axis=-1), rtol=1e-6)
    assert est.kind == "uniform" and abs(est.weights).sum() == pytest.approx(1.0)


def test_save_load_round_trip_without_pickle(tmp_path):
    w = np.arange(8, dtype=np.float32).reshape(2, 4) / 28
    est = SourceEstimator(w, {"model_type": "llama", "architectures": ["LlamaForCausalLM"]},
                          {"kind": "at2", "quality": {"lds": 0.7, "missing": float("nan")}, "n_examples": 3})
    d = est.save(tmp_path / "est")
    assert sorted(p.name for p in d.iterdir()) == [META_FILE, WEIGHTS_FILE]
    meta = json.loads((d / META_FILE).read_text())  # plain JSON (NaN written as null)
    assert meta["architecture"]["n_layers"] == 2 and meta["info"]["quality"]["missing"] is None
    assert (d / WEIGHTS_FILE).read_bytes()[8:9] == b"{"  # safetensors: 8-byte length, then a JSON header
    back = SourceEstimator.load(d)
    np.testing.assert_array_equal(back.weights, w)
    assert back.fingerprint() == est.fingerprint() and back.architecture == est.architecture
    assert SourceEstimator.load(d / META_FILE).fingerprint() == est.fingerprint()


def test_load_rejects_what_is_not_a_valid_estimator(tmp_path):
    with pytest.raises(ModelLoadError, match="not an AT2 estimator folder"):
        SourceEstimator.load(tmp_path)
    d = SourceEstimator.uniform(2, 2, {"model_type": "gpt2"}).save(tmp_path / "e")
    other = SourceEstimator.uniform(2, 3).save(tmp_path / "other")
    (d / WEIGHTS_FILE).write_bytes((other / WEIGHTS_FILE).read_bytes())
    with pytest.raises(ModelLoadError, match="do not match estimator.json"):
        SourceEstimator.load(d)
    meta = json.loads((other / META_FILE).read_text())
    meta["format_version"] = 99
    (other / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="format version 99.*Upgrade"):
        SourceEstimator.load(other)


def test_estimator_for_another_architecture_or_shape_is_refused():
    gpt2, _ = build_tiny_causal_lm("gpt2", VOCAB, n_layer=2, n_head=4)
    llama, _ = build_tiny_causal_lm("llama", VOCAB, n_layer=2, n_head=4)
    deeper, _ = build_tiny_causal_lm("gpt2", VOCAB, n_layer=3, n_head=4)
    est = SourceEstimator.uniform_for(gpt2)
    est.check_model(gpt2)
    with pytest.raises(EstimatorMismatchError, match=r"model_type 'llama' \(estimator: 'gpt2'\)"):
        est.check_model(llama)
    with pytest.raises(EstimatorMismatchError, match=r"3 layers \(estimator: 2\)"):
        est.check_model(deeper)
    wide, _ = build_tiny_causal_lm("gpt2", VOCAB, n_layer=2, n_head=8)
    with pytest.raises(EstimatorMismatchError, match=r"8 heads \(estimator: 4\).*train one for this model"):
        est.check_model(wide)
    with pytest.raises(EstimatorMismatchError, match="12 layer x head entries"):
        est.scores(np.zeros((3, 12)))
