"""Tests of attrib_mlops.analysis.metrics: closed forms, hand-computed cases, NaN rules, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import jensenshannon

from attrib_mlops.analysis import (
    concentration,
    drift,
    ground_truth_alignment,
    jensen_shannon,
    kendall,
    mean_target_probability,
    method_agreement,
    normalized_entropy,
    spearman,
    summarize,
    topk_overlap,
)
from attrib_mlops.errors import InputError
from attrib_mlops.result import AttributionResult

NAN = np.nan
# 2 prompt rows + 2 target rows, 2 target columns; I(x) = [3, 7, 5, nan].
A = np.array([[1.0, 2.0], [3.0, 4.0], [NAN, 5.0], [NAN, NAN]])
# I(x) = [5, 7, 3, nan]
B = np.array([[2.0, 3.0], [3.0, 4.0], [NAN, 3.0], [NAN, NAN]])


def make_result(matrix=A, source=("a", "b", "c", "d"), step_scores=None, method="saliency") -> AttributionResult:
    return AttributionResult(
        np.asarray(matrix), list(source), ["c", "d"], method, "native", step_scores=step_scores or {}, n_prompt=2
    )


# -------------------------------------------------------- normalized_entropy
def test_normalized_entropy_closed_forms():
    assert normalized_entropy([2.0, 2.0, 2.0]) == pytest.approx(1.0)
    assert normalized_entropy([0.0, -4.0, 0.0]) == 0.0  # one-hot, sign dropped
    assert normalized_entropy([5.0]) == 0.0  # n <= 1
    assert normalized_entropy([0.0, 0.0]) == 1.0  # all-zero counts as uniform
    # p = [1/4, 3/4]: -(0.25 ln 0.25 + 0.75 ln 0.75) / ln 2
    assert normalized_entropy([1.0, 3.0]) == pytest.approx(0.8112781244591328)


def test_normalized_entropy_nan_handling():
    assert normalized_entropy([1.0, NAN, 1.0]) == pytest.approx(1.0)  # n = 2 defined entries
    assert math.isnan(normalized_entropy([NAN, NAN]))
    with pytest.raises(InputError, match="nonempty"):
        normalized_entropy([])
    with pytest.raises(InputError, match="inf"):
        normalized_entropy([1.0, np.inf])


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(1, 8), elements=st.floats(-1e3, 1e3)))
def test_normalized_entropy_in_unit_interval(v):
    assert 0.0 <= normalized_entropy(v) <= 1.0


# ------------------------------------------------------------- concentration
def test_concentration_by_hand():
    # |I(x)| over defined rows = [3, 7, 5], total 15
    p = np.array([3, 7, 5]) / 15
    expected_entropy = float(-(p * np.log(p)).sum() / np.log(3))
    c = concentration(A, k=1)
    assert c["entropy"] == pytest.approx(expected_entropy)
    assert c["topk_mass"] == pytest.approx(7 / 15)
    assert concentration(make_result(), k=2)["topk_mass"] == pytest.approx(12 / 15)
    assert concentration(A, k=10)["topk_mass"] == pytest.approx(1.0)


def test_concentration_uses_absolute_importance_and_edge_cases():
    assert concentration(np.array([[-3.0], [1.0]]), k=1)["topk_mass"] == pytest.approx(0.75)
    assert concentration(np.zeros((4, 1)), k=1) == {"entropy": 1.0, "topk_mass": 0.25}
    out = concentration(np.full((2, 1), NAN))
    assert math.isnan(out["entropy"]) and math.isnan(out["topk_mass"])
    with pytest.raises(InputError, match="k must be an integer >= 1"):
        concentration(A, k=0)


# ------------------------------------------------------- rank correlations
def test_spearman_and_kendall_closed_forms():
    assert spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert kendall([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    # ranks [1,3,2] vs [2,3,1]: sum d^2 = 2 -> 1 - 6*2 / (3*8) = 0.5; tau = (2 - 1) / 3
    assert spearman([3, 7, 5], [5, 7, 3]) == pytest.approx(0.5)
    assert kendall([3, 7, 5], [5, 7, 3]) == pytest.approx(1 / 3)


def test_rank_correlations_nan_and_undefined():
    assert spearman([1.0, 2.0, NAN, 3.0], [1.0, 2.0, 9.0, 3.0]) == pytest.approx(1.0)
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))  # constant -> undefined
    assert math.isnan(kendall([1.0, 2.0], [NAN, 3.0]))  # one pair left
    with pytest.raises(InputError, match="same length, got 2 and 3"):
        spearman([1, 2], [1, 2, 3])


# ------------------------------------------------------------ jensen_shannon
def test_jensen_shannon_closed_forms():
    assert jensen_shannon([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) == pytest.approx(0.0, abs=1e-12)
    assert jensen_shannon([1.0, 0.0, 0.0], [0.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert jensen_shannon([-1.0, 3.0], [1.0, 3.0]) == pytest.approx(0.0, abs=1e-12)  # |.| taken
    assert jensen_shannon([1.0, NAN, 0.0], [0.0, 5.0, 1.0]) == pytest.approx(1.0)
    assert math.isnan(jensen_shannon([NAN], [1.0]))
    with pytest.raises(InputError, match="same length"):
        jensen_shannon([1.0], [1.0, 2.0])


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 8).flatmap(
        lambda n: st.tuples(*[arrays(np.float64, n, elements=st.floats(0, 100)) for _ in range(2)])
    )
)
def test_jensen_shannon_is_scipy_distance_squared(pq):
    p, q = pq
    js = jensen_shannon(p, q)
    assert 0.0 <= js <= 1.0
    assert js == pytest.approx(jensen_shannon(q, p))
    if p.sum() > 0 and q.sum() > 0:
        assert js == pytest.approx(jensenshannon(p, q, base=2) ** 2, abs=1e-9)


# -------------------------------------------------------------- topk_overlap
@settings(max_examples=300, deadline=None)
@given(st.integers(2, 40).flatmap(lambda n: st.tuples(
    arrays(np.float64, n, elements=st.sampled_from([0.0, 0.5, 1.0, 2.0, -1.0, 3.25])),
    arrays(np.float64, n, elements=st.floats(-1e3, 1e3, allow_nan=False, width=32)))))
def test_spearman_fast_is_scipy_bit_for_bit(xy):
    """The per-step metrics' Spearman (ties, float32-like values) equals scipy's exactly, not just closely."""
    from scipy import stats

    from attrib_mlops.analysis.metrics import spearman_fast

    x, y = xy
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return  # constant input: the callers handle it before any Spearman
    assert spearman_fast(x, y).statistic == stats.spearmanr(x, y).statistic
    assert spearman_fast(y, x).statistic == stats.spearmanr(y, x).statistic


def test_topk_overlap():
    assert topk_overlap([5, 4, 0, 1], [5, 0, 4, 1], k=2) == 0.5  # {0,1} vs {0,2}
    assert topk_overlap([1, 2, 3], [3, 2, 1], k=1) == 0.0
    assert topk_overlap([1, 2, 3], [1, 2, 3], k=10) == 1.0  # k capped at n
    assert topk_overlap([9.0, NAN, 1.0], [9.0, 8.0, 1.0], k=1) == 1.0  # NaN position left out
    assert math.isnan(topk_overlap([NAN], [1.0], k=1))
    with pytest.raises(InputError, match="k must be"):
        topk_overlap([1], [1], k=0)


# --------------------------------------------------------------------- drift
def test_drift_by_hand():
    d = drift(make_result(A), make_result(B), k=2)
    assert d["spearman"] == pytest.approx(0.5)
    assert d["kendall"] == pytest.approx(1 / 3)
    assert d["topk_overlap"] == pytest.approx(0.5)  # {1, 2} vs {1, 0}
    p, q = np.array([3, 7, 5]) / 15, np.array([5, 7, 3]) / 15
    assert d["js"] == pytest.approx(jensenshannon(p, q, base=2) ** 2)


def test_drift_identical_and_constant():
    assert drift(A, A) == pytest.approx({"spearman": 1.0, "kendall": 1.0, "js": 0.0, "topk_overlap": 1.0})
    const = np.ones((3, 1))
    assert drift(const, 2 * const)["spearman"] == 1.0  # both all-tied: same ranking
    d = drift(const, np.array([[1.0], [2.0], [3.0]]))
    assert d["spearman"] == 0.0 and d["kendall"] == 0.0
    assert all(math.isnan(v) for v in drift(np.full((2, 1), NAN), np.ones((2, 1))).values())


def test_drift_requires_same_source_tokens():
    with pytest.raises(InputError, match=r"source tokens, first mismatch at position 2: 'c' vs 'x'"):
        drift(make_result(), make_result(source=("a", "b", "x", "d")))
    with pytest.raises(InputError, match="same number of source tokens"):
        drift(np.ones((3, 1)), np.ones((4, 1)))


# ---------------------------------------------------------- method_agreement
def test_method_agreement_pairs_and_mean():
    out = method_agreement(
        {"saliency": make_result(A), "attention": make_result(A, method="attention"), "ig": make_result(B)}
    )
    assert list(out) == ["saliency~attention", "saliency~ig", "attention~ig", "mean"]
    assert out["saliency~attention"] == pytest.approx(1.0)
    assert out["saliency~ig"] == pytest.approx(0.5)
    assert out["mean"] == pytest.approx((1.0 + 0.5 + 0.5) / 3)


def test_method_agreement_errors():
    with pytest.raises(InputError, match="at least two methods"):
        method_agreement({"saliency": A})
    with pytest.raises(InputError, match="source tokens"):
        method_agreement({"a": make_result(), "b": make_result(source=("z", "b", "c", "d"))})


# ------------------------------------------------------ ground_truth_alignment
def test_ground_truth_alignment_by_hand():
    r = make_result()  # prompt rows I(x) = [3, 7]
    assert ground_truth_alignment(r, [0]) == {"hit@1": 0.0, "mean_rank": 2.0}
    assert ground_truth_alignment(r, [0], k=2) == {"hit@2": 1.0, "mean_rank": 2.0}
    assert ground_truth_alignment(r, [0, 1]) == {"hit@1": 1.0, "mean_rank": 1.0}  # best true position
    # column 0 = [1, 3]: row 1 first
    assert ground_truth_alignment(r, [1], target_index=0)["mean_rank"] == 1.0
    # all rows: I(x) = [3, 7, 5, nan] -> row 2 ranks 2nd
    assert ground_truth_alignment(r, [2], restrict_to_prompt=False)["mean_rank"] == 2.0


def test_ground_truth_alignment_ties_and_nan_count_against():
    # all-zero attribution: a tie with every other candidate -> worst rank
    assert ground_truth_alignment(np.zeros((3, 1)), [1], restrict_to_prompt=False) == {"hit@1": 0.0, "mean_rank": 3.0}
    # column 0 = [1, 3, nan, nan]: row 2 is undefined -> after rows 0, 1 and tied with row 3
    assert ground_truth_alignment(A, [2], restrict_to_prompt=False, target_index=0)["mean_rank"] == 4.0


def test_ground_truth_alignment_bare_matrix_needs_n_prompt():
    with pytest.raises(InputError, match="needs n_prompt"):
        ground_truth_alignment(A, [0])
    assert ground_truth_alignment(A, [1], n_prompt=2)["hit@1"] == 1.0


def test_ground_truth_alignment_validates_positions():
    r = make_result()
    with pytest.raises(InputError, match=r"true position 2 is out of range.*0\.\.1 \(prompt rows\)"):
        ground_truth_alignment(r, [2])
    with pytest.raises(InputError, match="out of range"):
        ground_truth_alignment(r, [-1], restrict_to_prompt=False)
    with pytest.raises(InputError, match="empty"):
        ground_truth_alignment(r, [])
    with pytest.raises(InputError, match="target_index 2 is out of range"):
        ground_truth_alignment(r, [0], target_index=2)
    with pytest.raises(InputError, match="n_prompt 9"):
        ground_truth_alignment(A, [0], n_prompt=9)


# ------------------------------------------------------------ summaries
def test_mean_target_probability():
    r = make_result(step_scores={"probability": [0.5, NAN]})
    assert mean_target_probability(r) == 0.5
    with pytest.raises(InputError, match="'probability' step score"):
        mean_target_probability(make_result())


def test_summarize_keys_and_values():
    r = make_result(step_scores={"probability": [0.2, 0.4], "entropy": [1.0, 3.0]})
    s = summarize(r, k=1, true_positions=[1])
    assert list(s) == [
        "concentration_entropy", "topk_mass", "mean_probability", "mean_entropy", "hit_at_1", "hit_at_3", "mean_rank"
    ]
    assert s["concentration_entropy"] == pytest.approx(concentration(A)["entropy"])
    assert s["topk_mass"] == pytest.approx(7 / 15)
    assert s["mean_probability"] == pytest.approx(0.3)
    assert s["mean_entropy"] == pytest.approx(2.0)
    assert (s["hit_at_1"], s["hit_at_3"], s["mean_rank"]) == (1.0, 1.0, 1.0)
    assert all(isinstance(v, float) for v in s.values())
    assert set(summarize(make_result())) == {"concentration_entropy", "topk_mass"}
    with pytest.raises(InputError, match="AttributionResult"):
        summarize(A)
