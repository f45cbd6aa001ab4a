"""Tests of attrib_mlops.analysis.aggregate: hand-computed tiny cases, NaN rules, errors."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from attrib_mlops.analysis import (
    common_prefix_alignment,
    difference,
    dim_aggregate,
    input_centered_window_sums,
    multi_method_mean,
    normalize,
    normalize_vector,
    output_centered_window_sums,
    source_importance,
    target_importance,
    temporal_weighted_sum,
    window_importance,
)
from attrib_mlops.errors import InputError
from attrib_mlops.result import AttributionResult, future_mask

NAN = np.nan
# Decoder-only: 2 prompt tokens + 2 target tokens as rows, 2 target columns.
# future_mask(4, 2, 2) = [[0,0],[0,0],[1,0],[1,1]] -> NaN cells below.
A = np.array(
    [
        [1.0, 2.0],
        [3.0, 4.0],
        [NAN, 5.0],
        [NAN, NAN],
    ]
)


def make_result(matrix=A, source=("a", "b", "c", "d"), target=("c", "d"), method="saliency") -> AttributionResult:
    return AttributionResult(np.asarray(matrix), list(source), list(target), method, "native", n_prompt=2)


def assert_same(actual, expected):
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float), equal_nan=True)


def test_fixture_matches_future_mask():
    assert (np.isnan(A) == future_mask(4, 2, 2)).all()


def test_analysis_modules_import_no_heavy_stack():
    allowed = {"__future__", "collections", "itertools", "math", "typing", "numpy", "scipy", "attrib_mlops"}
    for path in Path(__file__).parents[2].joinpath("attrib_mlops", "analysis").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
                if name.startswith("attrib_mlops"):
                    assert name in {"attrib_mlops.errors", "attrib_mlops.result", "attrib_mlops._util"} or name.startswith(
                        "attrib_mlops.analysis"
                    ), f"{path.name} imports {name}"


# ------------------------------------------------------------- dim_aggregate
def test_dim_aggregate_l2_sum_mean():
    x = np.array([[[3.0, 4.0], [1.0, 1.0]]])  # shape (1, 2, 2)
    assert_same(dim_aggregate(x, "l2"), [[5.0, np.sqrt(2.0)]])
    assert_same(dim_aggregate(x, "sum"), [[7.0, 2.0]])
    assert_same(dim_aggregate(x, "mean"), [[3.5, 1.0]])
    assert_same(dim_aggregate(x, "sum", axis=1), [[4.0, 5.0]])


def test_dim_aggregate_nan_cell_stays_nan():
    x = np.array([[3.0, 4.0], [1.0, NAN]])
    for how in ("l2", "sum", "mean"):
        out = dim_aggregate(x, how)
        assert np.isfinite(out[0]) and np.isnan(out[1])


def test_dim_aggregate_errors():
    with pytest.raises(InputError, match="l2, sum, mean"):
        dim_aggregate(np.ones((2, 3)), "max")
    with pytest.raises(InputError, match="axis 2"):
        dim_aggregate(np.ones((2, 3)), "l2", axis=2)


# --------------------------------------------------------------- importances
def test_source_and_target_importance_by_hand():
    # rows: 1+2=3, 3+4=7, 5 (NaN ignored), all NaN -> NaN
    assert_same(source_importance(A), [3.0, 7.0, 5.0, NAN])
    # columns: 1+3=4, 2+4+5=11
    assert_same(target_importance(A), [4.0, 11.0])


def test_importance_accepts_result():
    assert_same(source_importance(make_result()), source_importance(A))
    assert_same(target_importance(make_result()), target_importance(A))


def test_importance_rejects_non_2d():
    with pytest.raises(InputError, match="2-D"):
        source_importance(np.ones(3))


# ------------------------------------------------------------------- windows
def test_window_importance_by_hand():
    # I(x) = [3, 7, 5, nan]; half-width 1: [3+7, 3+7+5, 7+5, 5]
    assert_same(window_importance(A, 1), [10.0, 15.0, 12.0, 5.0])
    # I(y) = [4, 11]
    assert_same(window_importance(A, 1, axis="target"), [15.0, 15.0])
    assert_same(window_importance(A, 0), [3.0, 7.0, 5.0, NAN])
    assert_same(window_importance(A, 10), [15.0] * 4)


def test_window_importance_all_nan_window_is_nan():
    m = np.array([[1.0], [NAN], [NAN], [NAN]])
    assert_same(window_importance(m, 1), [1.0, 1.0, NAN, NAN])


def test_input_centered_window_sums_by_hand():
    # column 0: [1, 3, nan, nan] -> [1+3, 1+3, nan (centre undefined), nan]
    # column 1: [2, 4, 5, nan]   -> [2+4, 2+4+5, 4+5, nan (centre undefined)]
    assert_same(input_centered_window_sums(A, 1), [[4, 6], [4, 11], [NAN, 9], [NAN, NAN]])


def test_output_centered_window_sums_by_hand():
    # rows: [1,2] -> [3,3]; [3,4] -> [7,7]; [nan,5] -> [nan,5]; all NaN stays NaN
    assert_same(output_centered_window_sums(A, 1), [[3, 3], [7, 7], [NAN, 5], [NAN, NAN]])


def test_window_sums_c0_is_identity_and_keep_future_mask():
    for fn in (input_centered_window_sums, output_centered_window_sums):
        assert_same(fn(A, 0), A)
        assert_same(fn(make_result(), 0), A)
        assert (np.isnan(fn(A, 3)) == np.isnan(A)).all()


def test_window_errors():
    for bad in (-1, 1.5, True):
        with pytest.raises(InputError, match="c must be an integer >= 0"):
            input_centered_window_sums(A, bad)
    with pytest.raises(InputError, match="'source' or 'target'"):
        window_importance(A, 1, axis="rows")


# ------------------------------------------------------------- normalisation
def test_normalize_global_column_row_by_hand():
    # defined values 1..5 -> (v - 1) / 4
    assert_same(normalize(A), [[0, 0.25], [0.5, 0.75], [NAN, 1], [NAN, NAN]])
    # column 0: [1, 3] -> [0, 1]; column 1: [2, 4, 5] -> [0, 2/3, 1]
    assert_same(normalize(A, "column"), [[0, 0], [1, 2 / 3], [NAN, 1], [NAN, NAN]])
    # row 2 has a single defined value -> constant -> 0
    assert_same(normalize(A, "row"), [[0, 1], [0, 1], [NAN, 0], [NAN, NAN]])


def test_normalize_constant_gives_zeros_not_nan():
    assert_same(normalize(np.full((2, 2), 7.0)), np.zeros((2, 2)))
    assert_same(normalize(np.array([[NAN, 2.0], [2.0, 2.0]])), [[NAN, 0], [0, 0]])
    assert_same(normalize(np.full((2, 2), NAN)), np.full((2, 2), NAN))
    assert_same(normalize_vector([3.0, 3.0]), [0.0, 0.0])


def test_normalize_vector_by_hand():
    assert_same(normalize_vector([-1.0, 1.0, NAN, 0.0]), [0.0, 1.0, NAN, 0.5])


def test_normalize_errors():
    with pytest.raises(InputError, match="global, column, row"):
        normalize(A, "max")
    with pytest.raises(InputError, match="inf"):
        normalize(np.array([[1.0, np.inf]]))
    with pytest.raises(InputError, match="1-D"):
        normalize_vector(np.ones((2, 2)))


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 5)),
           elements=st.one_of(st.just(NAN), st.floats(-1e6, 1e6))),
    st.sampled_from(["global", "column", "row"]),
)
def test_normalize_property_in_unit_interval(m, mode):
    out = normalize(m, mode)
    assert out.shape == m.shape
    assert (np.isnan(out) == np.isnan(m)).all()
    defined = out[~np.isnan(out)]
    assert ((defined >= 0) & (defined <= 1)).all()


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 4)),
           elements=st.one_of(st.just(NAN), st.integers(-100, 100).map(float))),
    st.integers(0, 4),
)
def test_window_sums_match_naive_loop(m, c):
    w = input_centered_window_sums(m, c)
    n = m.shape[0]
    for i in range(n):
        for j in range(m.shape[1]):
            if np.isnan(m[i, j]):
                assert np.isnan(w[i, j])
            else:
                assert w[i, j] == np.nansum(m[max(0, i - c): i + c + 1, j])
    assert_same(output_centered_window_sums(m.T, c), w.T)


# -------------------------------------------------------------- combinations
def test_multi_method_mean_normalizes_first():
    a = np.array([[0.0, 2.0], [1.0, NAN]])  # -> [[0, 1], [0.5, nan]]
    b = np.array([[10.0, 0.0], [0.0, NAN]])  # -> [[1, 0], [0, nan]]
    assert_same(multi_method_mean([a, b]), [[0.5, 0.5], [0.25, NAN]])
    assert_same(multi_method_mean({"x": a, "y": b}, normalize_first=False), [[5.0, 1.0], [0.5, NAN]])


def test_multi_method_mean_nan_in_one_method_uses_the_others():
    a = np.array([[1.0, NAN]])
    b = np.array([[3.0, 4.0]])
    assert_same(multi_method_mean([a, b], normalize_first=False), [[2.0, 4.0]])


def test_multi_method_mean_errors():
    with pytest.raises(InputError, match=r"\(2, 2\), \(1, 2\)"):
        multi_method_mean([np.ones((2, 2)), np.ones((1, 2))])
    with pytest.raises(InputError, match="at least one"):
        multi_method_mean([])
    with pytest.raises(InputError, match="source tokens"):
        multi_method_mean([make_result(), make_result(source=("a", "x", "c", "d"))])


def test_temporal_weighted_sum_uniform_weights_decay():
    ms = [np.full((1, 1), v) for v in (1.0, 2.0, 3.0)]
    assert_same(temporal_weighted_sum(ms), [[2.0]])
    # weights [1, 1, 2] / 4 -> (1 + 2 + 6) / 4
    assert_same(temporal_weighted_sum(ms, weights=[1, 1, 2]), [[9 / 4]])
    # decay 0.5: weights [0.25, 0.5, 1] / 1.75 -> (0.25 + 1 + 3) / 1.75 = 17/7
    assert_same(temporal_weighted_sum(ms, decay=0.5), [[17 / 7]])
    assert_same(temporal_weighted_sum(ms, decay=1.0), [[2.0]])


def test_temporal_weighted_sum_nan_renormalizes():
    ms = [np.array([[NAN, 1.0]]), np.array([[2.0, 3.0]]), np.array([[NAN, NAN]])]
    assert_same(temporal_weighted_sum(ms), [[2.0, 2.0]])
    assert_same(temporal_weighted_sum([np.array([[NAN]])] * 2), [[NAN]])


def test_temporal_weighted_sum_errors():
    ms = [np.ones((1, 1))] * 3
    with pytest.raises(InputError, match="2 weights for 3 matrices"):
        temporal_weighted_sum(ms, weights=[1, 1])
    with pytest.raises(InputError, match="not both"):
        temporal_weighted_sum(ms, weights=[1, 1, 1], decay=0.5)
    for d in (0.0, 1.5, -0.1):
        with pytest.raises(InputError, match=r"decay must be in \(0, 1\]"):
            temporal_weighted_sum(ms, decay=d)
    with pytest.raises(InputError, match="nonnegative"):
        temporal_weighted_sum(ms, weights=[1, -1, 1])
    with pytest.raises(InputError, match="nonnegative"):
        temporal_weighted_sum(ms, weights=[0, 0, 0])
    with pytest.raises(InputError, match="same shape"):
        temporal_weighted_sum([np.ones((1, 1)), np.ones((1, 2))])


def test_difference_matrices_and_results():
    b = np.array([[0.5, 2.0], [1.0, 1.0], [NAN, 6.0], [NAN, NAN]])
    assert_same(difference(A, b), [[0.5, 0.0], [2.0, 3.0], [NAN, -1.0], [NAN, NAN]])
    assert_same(difference(make_result(), make_result(b)), difference(A, b))


def test_difference_refuses_different_tokens():
    with pytest.raises(InputError, match=r"source tokens, first mismatch at position 1: 'b' vs 'x'"):
        difference(make_result(), make_result(source=("a", "x", "c", "d")))
    with pytest.raises(InputError, match=r"target tokens, first mismatch at position 0: 'c' vs 'z'"):
        difference(make_result(), make_result(source=("a", "b", "c", "d"), target=("z", "d")))
    with pytest.raises(InputError, match=r"shapes \(4, 2\) and \(2, 2\)"):
        difference(A, np.ones((2, 2)))


def test_common_prefix_alignment():
    assert common_prefix_alignment(["a", "b", "c"], ["a", "b", "x"]) == 2
    assert common_prefix_alignment(["a", "b"], ["a", "b", "c"]) == 2
    assert common_prefix_alignment([], ["a"]) == 0
    assert common_prefix_alignment(["x"], ["a"]) == 0
