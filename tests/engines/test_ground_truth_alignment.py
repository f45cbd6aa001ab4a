"""A briefly trained tiny model attributes the key-value answer to the true source; an untrained one does not."""

from __future__ import annotations

import numpy as np
import pytest

from attrib_mlops import attribute
from attrib_mlops.analysis import ground_truth_alignment
from attrib_mlops.demo.tasks import keyvalue_vocab, make_keyvalue_dataset, probe_set
from attrib_mlops.demo.tiny import build_tiny_model
from attrib_mlops.demo.train import DEFAULT_MODEL, keyvalue_accuracy, train_keyvalue


def _hit_rate(model, tok, probe, method):
    res = attribute(model, tok, list(probe["prompt"]), list(probe["target"]), methods=method, engine="native",
                    sample_ids=list(probe["id"]), batch_size=16)
    hits = [ground_truth_alignment(r, gt, k=1, target_index=0)["hit@1"] for r, gt in zip(res, probe["ground_truth"])]
    return float(np.mean(hits))


@pytest.mark.slow
def test_trained_model_aligns_with_ground_truth_untrained_does_not():
    probe = probe_set(n=32)
    untrained, tok = build_tiny_model(keyvalue_vocab(), **DEFAULT_MODEL)
    trained, _ = build_tiny_model(keyvalue_vocab(), **DEFAULT_MODEL)
    train_keyvalue(trained, tok, make_keyvalue_dataset(300 * 32, seed=0), max_steps=300, batch_size=32,
                   lr=3e-3, seed=0, num_threads=1)
    assert keyvalue_accuracy(trained, tok, probe) >= 0.9
    for method in ("saliency", "input_x_gradient"):
        hit_trained = _hit_rate(trained, tok, probe, method)
        hit_untrained = _hit_rate(untrained, tok, probe, method)
        # chance of hitting the one true source among ~17 prompt tokens is ~6%
        assert hit_trained >= 0.8, (method, hit_trained)
        assert hit_untrained <= 0.4, (method, hit_untrained)
