"""TrainingDataAttribution: top-k split by sign, histogram, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attrib_mlops.training_data.result import TrainingDataAttribution


def _res(scores, **kw):
    n = len(scores)
    return TrainingDataAttribution(np.array(scores, np.float32), [f"id{i}" for i in range(n)],
                                   [f"text <b>{i}</b>" for i in range(n)], "tracin", **kw)


def test_top_splits_supporting_and_opposing():
    r = _res([0.5, -2.0, 1.5, 0.0, -0.1, 3.0])
    top = r.top(2)
    assert [it["id"] for it in top["positive"]] == ["id5", "id2"]
    assert [it["id"] for it in top["negative"]] == ["id1", "id4"]
    assert top["positive"][0] == {"id": "id5", "text": "text <b>5</b>", "score": 3.0, "relative": 1.0,
                                  "index": 5, "rank": 1}
    assert top["negative"][0]["relative"] == pytest.approx(-2 / 3)
    big = r.top(10)
    assert len(big["positive"]) == 3 and len(big["negative"]) == 2  # zero is neither
    assert r.top(0) == {"positive": [], "negative": []}


def test_histogram_counts_and_marks():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=200)
    r = _res(scores, top_k=3)
    h = r.histogram(bins=10)
    assert sum(h["counts"]) == 200 and len(h["edges"]) == 11 and h["edges"][0] == -1 and h["edges"][-1] == 1
    assert h["scale"] == pytest.approx(np.abs(scores).max(), rel=1e-6)
    assert len(h["marks"]) == 6
    for m in h["marks"]:
        assert h["edges"][m["bin"]] <= m["relative"] <= h["edges"][m["bin"] + 1]
    assert max(m["bin"] for m in h["marks"]) == 9 or min(m["bin"] for m in h["marks"]) == 0
    shared = _res(scores, scale=10 * np.abs(scores).max()).histogram(bins=10)
    assert shared["counts"][4] + shared["counts"][5] == 200  # all within +-0.1 of the shared scale


def test_json_round_trip_is_safe():
    r = _res([1.0, float("nan"), -3.0], prompt="p", target=" t", target_tokens=["t"], selected=[0],
             info={"seed": np.int64(3)})
    d = r.to_dict()
    text = json.dumps(d, allow_nan=False)
    back = TrainingDataAttribution.from_dict(json.loads(text))
    assert back.ids == r.ids and back.texts == r.texts and back.selected == [0] and back.info == {"seed": 3}
    assert np.isnan(back.scores[1]) and back.scores[2] == -3.0
    assert "scores" not in r.to_dict(include_scores=False)
    with pytest.raises(ValueError, match="one entry per training example"):
        TrainingDataAttribution(np.zeros(2), ["a"], ["b"], "tracin")


def test_overlap_of_top_examples():
    a = _res([3.0, 2.0, 1.0, -1.0, -2.0])
    b = _res([1.0, 3.0, -2.0, 2.0, -1.0])
    assert a.overlap(b, k=2) == 0.5  # {id0, id1} vs {id1, id3}
    assert a.overlap(a, k=3) == 1.0
    assert a.overlap(b, k=2, side="negative") == 0.5  # {id4, id3} vs {id2, id4}
    assert np.isnan(_res([1.0, 2.0]).overlap(a, side="negative"))
