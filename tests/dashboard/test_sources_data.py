"""Data of the Sources view (panel_app/sources_data.py) on real source attributions of a tiny model.

References: a target-span's ablation scores are the result's own refit on its masks
(``SourceAttribution.for_target_tokens``); a span's AT2/attention scores equal
``attribute_sources(..., target_span=...)`` computed by the model itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from attrib_mlops.errors import InputError
from attrib_mlops.sources.result import SourceAttribution
from panel_app.sources_data import (compare_rows, estimator_quality_rows, quality_rows, score_colour, segments,
                                    span_result, top_change)

PROMPT = "w1 w2 . w3 w4 . w5 w6 . w7 w8 ."
TARGET = " w2 w4 w6"


@pytest.fixture(scope="module")
def tiny():
    import torch

    from attrib_mlops.demo.tiny import build_tiny_model

    torch.manual_seed(0)
    return build_tiny_model([f"w{i}" for i in range(10)] + ["."], n_layer=2, n_embd=32, n_head=2)


@pytest.fixture(scope="module")
def ablation(tiny):
    from attrib_mlops import attribute_sources

    model, tok = tiny
    return attribute_sources(model, tok, [PROMPT], targets=[TARGET], sources="sentence", n_ablations=16,
                             n_holdout=8, ablation="mask", lasso_alpha=1e-4, sample_ids=["s0"])[0]


def test_ablation_span_is_the_refit_on_the_stored_masks(ablation):
    assert span_result(ablation, 0, 3) is ablation  # the whole target: the stored scores
    part = span_result(ablation, 1, 3)
    ref = ablation.for_target_tokens(1, 3)
    np.testing.assert_allclose(part.scores, ref.scores)
    assert part.target_span == (1, 3) and "lds" in part.quality
    assert not np.allclose(part.scores, ablation.scores)  # another span, other scores
    with pytest.raises(InputError, match="not inside the target's 3 tokens"):
        span_result(ablation, 2, 5)


def test_attention_span_equals_the_model_computed_span(tiny):
    from attrib_mlops import attribute_sources

    model, tok = tiny
    full = attribute_sources(model, tok, [PROMPT], targets=[TARGET], method="attention")[0]
    ref = attribute_sources(model, tok, [PROMPT], targets=[TARGET], method="attention", target_span=(1, 2))[0]
    np.testing.assert_allclose(span_result(full, 1, 2).scores, ref.scores, rtol=1e-6, atol=1e-9)
    bare = SourceAttribution(full.sources, full.spans, full.scores, full.target, "at2", prompt=full.prompt,
                             target_tokens=full.target_tokens)
    with pytest.raises(InputError, match="no per-token data"):
        span_result(bare, 0, 1)


def test_segments_rebuild_the_prompt_and_mark_each_source(ablation):
    segs = segments(ablation)
    assert "".join(t for t, _ in segs) == ablation.prompt
    assert [t for t, i in segs if i is not None] == ablation.sources
    assert [i for _, i in segs if i is not None] == list(range(ablation.n_sources))


def test_colours_follow_sign_and_magnitude():
    assert score_colour(2.0, 2.0) == "rgba(220, 30, 30, 0.85)"
    assert score_colour(-1.0, 2.0) == "rgba(30, 90, 220, 0.425)"
    assert score_colour(float("nan"), 1.0) == "rgba(0, 0, 0, 0)"


def test_compare_rows_and_top_change():
    a = SourceAttribution(["A.", "B.", "C."], [(0, 2), (3, 5), (6, 8)], np.array([0.1, 2.0, 0.3]), " x", "ablation")
    b = SourceAttribution(["A.", "B.", "C."], [(0, 2), (3, 5), (6, 8)], np.array([1.5, 0.2, 0.3]), " x", "ablation")
    rows, warn = compare_rows(a, b)
    assert warn is None
    assert [(r["A"], r["B"], r["rank A"], r["rank B"]) for r in rows] == [(0.1, 1.5, 3, 1), (2.0, 0.2, 1, 3),
                                                                         (0.3, 0.3, 2, 2)]
    assert rows[1]["B - A"] == pytest.approx(-1.8)
    assert top_change(a, b) == (1, 0, True) and top_change(a, a) == (1, 1, False)
    c = SourceAttribution(["A.", "D."], [(0, 2), (3, 5)], np.array([1.0, 0.0]), " x", "ablation")
    rows, warn = compare_rows(a, c)
    assert "different sources" in warn and np.isnan(rows[2]["B"])


def test_quality_rows(ablation):
    rows = dict(quality_rows(ablation))
    assert rows["method"] == "ablation" and rows["ablation mode"] == "mask"
    assert float(rows["LDS (held-out)"]) == pytest.approx(ablation.quality["lds"], rel=1e-5)
    est = estimator_quality_rows({"lds": 0.8, "lds_attention": 0.3, "lds_surrogate": 0.9})
    assert est[0] == {"measure": "LDS (held-out)", "AT2": 0.8, "naive attention": 0.3, "ablation surrogate": 0.9}
    assert np.isnan(est[1]["AT2"])
