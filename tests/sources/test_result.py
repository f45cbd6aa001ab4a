"""SourceAttribution: JSON round trip, refits of target sub-spans."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attrib_mlops.errors import InputError
from attrib_mlops.sources import SourceAttribution, attribute_sources
from attrib_mlops.sources.result import SCHEMA_VERSION, source_hit_rate

PROMPT = "a b . c d ?"
SOURCES = ["a b .", "c d", "?"]


def test_json_round_trip_keeps_everything(bow):
    model, tok = bow
    [r] = attribute_sources(model, tok, PROMPT, " t u", [SOURCES], ablation="mask", sample_ids=["s0"])
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))  # strict JSON: no NaN, no pickle
    back = SourceAttribution.from_dict(d)
    assert back.sources == r.sources and back.spans == r.spans and back.sample_id == "s0"
    np.testing.assert_array_equal(back.scores, r.scores)
    np.testing.assert_array_equal(back.ablation.masks, r.ablation.masks)
    np.testing.assert_array_equal(back.ablation.token_logprobs, r.ablation.token_logprobs)
    np.testing.assert_array_equal(back.ablation.holdout_masks, r.ablation.holdout_masks)
    assert back.info["quality"] == json.loads(json.dumps(r.to_dict()["info"]["quality"]))
    assert back.target_tokens == ["t", "u"] and back.target_span == (0, 2) and back.bias == pytest.approx(r.bias)
    for a, b in back.spans:
        assert back.prompt[a:b] in SOURCES


def test_nan_scores_and_missing_ablation_round_trip():
    r = SourceAttribution(["x"], [(0, 1)], np.array([np.nan]), " y", "ablation", info={"quality": {"lds": np.nan}})
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["scores"] == [None] and d["info"]["quality"]["lds"] is None and d["ablation"] is None
    back = SourceAttribution.from_dict(d)
    assert np.isnan(back.scores[0]) and back.ablation is None
    with pytest.raises(InputError, match="no ablation data"):
        back.for_target_tokens(0, 1)
    with pytest.raises(InputError, match="schema version 99"):
        SourceAttribution.from_dict(dict(d, schema_version=99))
    assert d["schema_version"] == SCHEMA_VERSION and d["kind"] == "sources"


def test_refit_of_a_sub_span_equals_attributing_that_span(bow):
    model, tok = bow
    [whole] = attribute_sources(model, tok, PROMPT, " t u", [SOURCES], ablation="mask")
    [direct] = attribute_sources(model, tok, PROMPT, " t u", [SOURCES], ablation="mask", target_span=(1, 2))
    refit = whole.for_target_tokens(1, 2)
    np.testing.assert_allclose(refit.scores, direct.scores, atol=1e-12)
    assert refit.quality["lds"] == pytest.approx(direct.quality["lds"])
    assert "topk_drop" not in refit.quality  # would need new forwards
    assert refit.target_span == (1, 2) and whole.target_span == (0, 2)
    assert refit.ranking()[0] == 1 and whole.for_target_tokens(0, 1).ranking()[0] == 0  # u <- 'c d', t <- 'a b .'
    with pytest.raises(InputError, match="outside the target's 2 tokens"):
        whole.for_target_tokens(1, 3)


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="one span and one score per source"):
        SourceAttribution(["x", "y"], [(0, 1)], np.zeros(2), "", "ablation")


def test_source_hit_rate():
    a = SourceAttribution(["x", "y", "z"], [(0, 1), (2, 3), (4, 5)], np.array([0.2, 0.9, 0.5]), "", "ablation")
    b = SourceAttribution(["x", "y", "z"], [(0, 1), (2, 3), (4, 5)], np.array([0.9, 0.1, 0.5]), "", "ablation")
    assert source_hit_rate([a, b], [1, 1]) == 0.5
    assert source_hit_rate([a, b], [2, 2], k=2) == 1.0
    assert source_hit_rate([a, b], [[0, 1], [0, 1]]) == 1.0
    with pytest.raises(InputError, match="2 results but 1"):
        source_hit_rate([a, b], [1])
