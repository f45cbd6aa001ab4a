"""analysis.compare: pairing two result sets by sample id, with token checks."""

from __future__ import annotations

import numpy as np
import pytest

from attrib_mlops.analysis.compare import align_prefix, by_sample_id, first_difference, pair_samples
from attrib_mlops.errors import InputError
from attrib_mlops.result import AttributionResult, future_mask


def res(sid, prompt=("a", "b"), target=("x", "y"), value=1.0):
    src = list(prompt) + list(target)
    m = np.full((len(src), len(target)), value, dtype=np.float32)
    m[future_mask(len(src), len(target), len(prompt))] = np.nan
    return AttributionResult(m, src, list(target), "saliency", "native", n_prompt=len(prompt), sample_id=sid,
                             step_scores={"probability": np.full(len(target), 0.5)})


def test_exact_match_skips_and_counts_different_tokens():
    a = [res("s0"), res("s1"), res("s2", prompt=("a", "c")), res("only_a")]
    b = [res("s2"), res("s1", target=("x", "z")), res("s0"), res("only_b")]
    p = pair_samples(a, b)
    assert [q.sample_id for q in p.pairs] == ["s0"]  # order of the first set
    assert p.skipped_counts == {"different_continuation": 1, "different_prompt_tokens": 1}
    assert p.n_shared == 3 and p.only_a == ["only_a"] and p.only_b == ["only_b"] and (p.n_a, p.n_b) == (4, 4)
    detail = next(s["detail"] for s in p.skipped if s["id"] == "s2")
    assert detail == "position 1: 'c' vs 'b'"


def test_target_prefix_truncates_to_cells_that_see_the_same_tokens():
    a, b = res("s", target=("x", "y", "w")), res("s", target=("x", "z"))
    (pair,) = pair_samples([a], [b], match="target_prefix").pairs
    assert pair.truncated
    for r in (pair.a, pair.b):
        assert r.target_tokens == ["x"] and r.source_tokens == ["a", "b", "x"] and r.matrix.shape == (3, 1)
        assert r.step_scores["probability"].shape == (1,)
    none = pair_samples([a], [res("s", target=("q",))], match="target_prefix")
    assert not none.pairs and none.skipped[0]["reason"] == "different_continuation"


def test_source_match_and_ids_from_positions():
    a = [res(None), res(None, prompt=("q", "b"))]
    b = [res(None, target=("x", "y")), res(None)]
    p = pair_samples(a, b, match="source")
    assert [q.sample_id for q in p.pairs] == ["0"] and p.skipped[0]["reason"] == "different_source_tokens"
    assert list(by_sample_id([res("d", value=1.0), res("d", value=2.0)])["d"].matrix[:1, 0]) == [1.0]
    with pytest.raises(InputError, match="unknown match"):
        pair_samples(a, b, match="cells")


def test_align_prefix_and_first_difference():
    same = align_prefix(res("s"), res("s"))
    assert same.same_tokens and (same.n_source, same.n_target) == (4, 2)
    other = align_prefix(res("s"), res("s", target=("x", "q")))
    assert (other.n_source, other.n_target) == (3, 1) and len(other.differences) == 2
    assert first_difference(["a"], ["a"]) == "lengths 1 vs 1"
