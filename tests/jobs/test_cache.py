"""jobs.cache: content fingerprints and the on-disk result cache."""

from __future__ import annotations

import json

import numpy as np

from attrib_mlops.jobs import ResultCache, model_fingerprint
from attrib_mlops.result import AttributionResult


def test_model_fingerprint_tracks_weights(tiny):
    import copy

    import torch

    model = tiny[0]
    fp = model_fingerprint(model)
    assert fp == model_fingerprint(model)
    sampled = model_fingerprint(model, full_hash_limit=0)
    assert sampled != fp
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1.0
    assert model_fingerprint(other) != fp
    assert model_fingerprint(other, full_hash_limit=0) != sampled  # element 0 is always in the sample


def test_cache_roundtrip_keeps_nan_as_null(tmp_path):
    cache = ResultCache(tmp_path)
    r = AttributionResult(np.array([[0.5, 0.1], [0.2, np.nan]]), ["a", "b"], ["b", "c"], "saliency", "native",
                          n_prompt=1, sample_id="x")
    key = "ab" * 32
    assert cache.get(key) is None
    path = cache.put(key, r)
    assert json.loads(path.read_text())["matrix"][1][1] is None
    got = cache.get(key)
    np.testing.assert_array_equal(got.matrix, r.matrix)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left
    path.write_text("{broken")
    assert cache.get(key) is None  # a corrupt entry is a miss
