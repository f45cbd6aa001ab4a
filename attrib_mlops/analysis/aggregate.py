"""Aggregations of attribution matrices: importances, windows, normalisation, combinations.

Every function takes a plain 2-D array or an :class:`~attrib_mlops.result.AttributionResult`
(its ``matrix`` is used) and returns float64 numpy arrays. NaN cells mean "not
defined" (the future of a decoder-only model): sums ignore them, and a value
whose every input is NaN is NaN.

Pure numpy: this module imports neither torch, mlflow nor transformers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Union

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from attrib_mlops.errors import InputError
from attrib_mlops.result import AttributionResult

__all__ = [
    "DIM_AGGREGATIONS",
    "dim_aggregate",
    "source_importance",
    "target_importance",
    "window_importance",
    "input_centered_window_sums",
    "output_centered_window_sums",
    "normalize",
    "normalize_vector",
    "multi_method_mean",
    "temporal_weighted_sum",
    "difference",
    "check_same_tokens",
    "common_prefix_alignment",
]

MatrixLike = Union[np.ndarray, AttributionResult, Sequence]

DIM_AGGREGATIONS = ("l2", "sum", "mean")
_NORMALIZE_MODES = ("global", "column", "row")


# ----------------------------------------------------------------- helpers
def _as_matrix(x: MatrixLike, name: str = "matrix") -> np.ndarray:
    """Return a float64 2-D copy of an array or of ``AttributionResult.matrix``."""
    arr = x.matrix if isinstance(x, AttributionResult) else x
    try:
        arr = np.array(arr, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a numeric 2-D array or an AttributionResult ({exc})") from None
    if arr.ndim != 2:
        raise InputError(f"{name} must be 2-D (n_source, n_target), got shape {arr.shape}")
    return arr


def _as_vector(v: Sequence[float] | np.ndarray, name: str = "vector") -> np.ndarray:
    try:
        arr = np.array(v, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a numeric 1-D array ({exc})") from None
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _check_window(c: int) -> int:
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0:
        raise InputError(f"window half-width c must be an integer >= 0, got {c!r}")
    return int(c)


def _nansum_or_nan(x: np.ndarray, axis: int) -> np.ndarray:
    """``np.nansum`` along ``axis``, but NaN where every summed value is NaN."""
    total = np.nansum(x, axis=axis)
    return np.where(np.isnan(x).all(axis=axis), np.nan, total)


def _box_sum(x: np.ndarray, c: int, axis: int) -> np.ndarray:
    """Sum of the values within distance ``c`` along ``axis`` (NaN ignored; all-NaN -> NaN)."""
    if c == 0:
        return x.copy()
    pad = [(0, 0)] * x.ndim
    pad[axis] = (c, c)
    windows = sliding_window_view(np.pad(x, pad, constant_values=np.nan), 2 * c + 1, axis=axis)
    return _nansum_or_nan(windows, axis=-1)


# ------------------------------------------------------ hidden-dim reduction
def dim_aggregate(x: np.ndarray, how: str = "l2", axis: int = -1) -> np.ndarray:
    """Reduce a per-dimension attribution (e.g. gradient x embedding) to one score.

    Args:
        x: array with a hidden dimension, e.g. shape ``(n_source, n_target, d_model)``.
        how: ``"l2"`` (Euclidean norm), ``"sum"`` or ``"mean"``.
        axis: the axis to reduce.

    Returns:
        float64 array without ``axis``. A NaN anywhere along ``axis`` gives NaN for that cell.

    Raises:
        InputError: unknown ``how`` or ``axis`` out of range.

    Example:
        >>> dim_aggregate(np.array([[3.0, 4.0], [1.0, np.nan]]), "l2").tolist()
        [5.0, nan]
    """
    if how not in DIM_AGGREGATIONS:
        raise InputError(f"unknown dimension aggregation {how!r}; expected one of {', '.join(DIM_AGGREGATIONS)}")
    arr = np.asarray(x, dtype=np.float64)
    if not -arr.ndim <= axis < arr.ndim:
        raise InputError(f"axis {axis} is out of range for an array of shape {arr.shape}")
    if how == "l2":
        return np.sqrt(np.sum(arr * arr, axis=axis))
    if how == "sum":
        return np.sum(arr, axis=axis)
    return np.mean(arr, axis=axis)


# ------------------------------------------------------------- importances
def source_importance(matrix: MatrixLike) -> np.ndarray:
    """Importance of each source token, ``I(x_i) = sum_j A[i, j]`` over defined cells.

    Args:
        matrix: ``(n_source, n_target)`` array or AttributionResult.

    Returns:
        Vector of length ``n_source``; NaN for a row with no defined cell (for a
        decoder-only model: the last target token, which is never a source).

    Example:
        >>> source_importance(np.array([[1.0, 2.0], [3.0, np.nan], [np.nan, np.nan]])).tolist()
        [3.0, 3.0, nan]
    """
    return _nansum_or_nan(_as_matrix(matrix), axis=1)


def target_importance(matrix: MatrixLike) -> np.ndarray:
    """Total attribution received by each target token, ``I(y_j) = sum_i A[i, j]`` over defined cells.

    Args:
        matrix: ``(n_source, n_target)`` array or AttributionResult.

    Returns:
        Vector of length ``n_target``; NaN for a column with no defined cell.

    Example:
        >>> target_importance(np.array([[1.0, 2.0], [3.0, np.nan]])).tolist()
        [4.0, 2.0]
    """
    return _nansum_or_nan(_as_matrix(matrix), axis=0)


# ----------------------------------------------------------------- windows
def window_importance(matrix: MatrixLike, c: int, axis: str = "source") -> np.ndarray:
    """Box filter of half-width ``c`` over the source or target importances.

    ``axis="source"``: ``out[i] = sum of I(x_i') for |i' - i| <= c`` (truncated at
    the edges); ``axis="target"``: the same over ``I(y)``. NaN importances are
    ignored; a window of only NaN gives NaN.

    Args:
        matrix: ``(n_source, n_target)`` array or AttributionResult.
        c: half-width of the window (``0`` returns the importances themselves).
        axis: ``"source"`` or ``"target"``.

    Returns:
        Vector of length ``n_source`` (source) or ``n_target`` (target).

    Example:
        >>> window_importance(np.array([[1.0], [2.0], [4.0]]), 1).tolist()
        [3.0, 7.0, 6.0]
    """
    c = _check_window(c)
    if axis == "source":
        imp = source_importance(matrix)
    elif axis == "target":
        imp = target_importance(matrix)
    else:
        raise InputError(f"unknown axis {axis!r}; expected 'source' or 'target'")
    return _box_sum(imp, c, axis=0)


def input_centered_window_sums(matrix: MatrixLike, c: int) -> np.ndarray:
    """Sum over neighbouring source rows: ``W[i, j] = sum of A[i', j] for |i' - i| <= c``.

    NaN cells inside a window are ignored. A cell that is NaN in the input stays
    NaN (a window centred on an undefined cell is undefined), so the future mask
    of a decoder-only matrix is preserved and ``c=0`` returns the input.

    Args:
        matrix: ``(n_source, n_target)`` array or AttributionResult.
        c: half-width of the window over source rows.

    Returns:
        ``(n_source, n_target)`` float64 array.

    Example:
        >>> input_centered_window_sums(np.array([[1.0, 2.0], [3.0, np.nan]]), 1).tolist()
        [[4.0, 2.0], [4.0, nan]]
    """
    a = _as_matrix(matrix)
    out = _box_sum(a, _check_window(c), axis=0)
    out[np.isnan(a)] = np.nan
    return out


def output_centered_window_sums(matrix: MatrixLike, c: int) -> np.ndarray:
    """Sum over neighbouring target columns: ``W[i, j] = sum of A[i, j'] for |j' - j| <= c``.

    Same NaN rules as :func:`input_centered_window_sums`.

    Args:
        matrix: ``(n_source, n_target)`` array or AttributionResult.
        c: half-width of the window over target columns.

    Returns:
        ``(n_source, n_target)`` float64 array.

    Example:
        >>> output_centered_window_sums(np.array([[1.0, 2.0, 4.0]]), 1).tolist()
        [[3.0, 7.0, 6.0]]
    """
    a = _as_matrix(matrix)
    out = _box_sum(a, _check_window(c), axis=1)
    out[np.isnan(a)] = np.nan
    return out


# ------------------------------------------------------------ normalisation
def _minmax(x: np.ndarray, axis: int | None) -> np.ndarray:
    if np.isinf(x).any():
        raise InputError("cannot min-max normalise values containing +-inf; expected finite values (NaN = undefined)")
    defined = ~np.isnan(x)
    if not defined.any():
        return x.copy()
    lo = np.min(x, axis=axis, initial=np.inf, where=defined, keepdims=True)
    hi = np.max(x, axis=axis, initial=-np.inf, where=defined, keepdims=True)
    span = hi - lo
    safe = np.where(np.isfinite(span) & (span > 0), span, 1.0)
    out = np.where(span > 0, (x - lo) / safe, 0.0)
    out[~defined] = np.nan
    return np.clip(out, 0.0, 1.0)


def normalize(matrix: MatrixLike, mode: str = "global") -> np.ndarray:
    """Min-max normalise the defined cells to ``[0, 1]``.

    Args:
        matrix: ``(n_source, n_target)`` array or AttributionResult.
        mode: ``"global"`` (one min/max over all defined cells), ``"column"``
            (per target token) or ``"row"`` (per source token).

    Returns:
        float64 array of the same shape. NaN stays NaN; a constant group of
        defined cells maps to 0.0.

    Raises:
        InputError: unknown ``mode`` or infinite values.

    Example:
        >>> normalize(np.array([[1.0, 3.0], [2.0, np.nan]])).tolist()
        [[0.0, 1.0], [0.5, nan]]
    """
    if mode not in _NORMALIZE_MODES:
        raise InputError(f"unknown normalisation mode {mode!r}; expected one of {', '.join(_NORMALIZE_MODES)}")
    axis = {"global": None, "column": 0, "row": 1}[mode]
    return _minmax(_as_matrix(matrix), axis)


def normalize_vector(v: Sequence[float] | np.ndarray) -> np.ndarray:
    """Min-max normalise a 1-D vector to ``[0, 1]`` (NaN stays NaN, constant -> zeros).

    Example:
        >>> normalize_vector([2.0, 4.0, np.nan, 3.0]).tolist()
        [0.0, 1.0, nan, 0.5]
    """
    return _minmax(_as_vector(v, "v"), None)


# ------------------------------------------------------------ combinations
def _matrices(items: Sequence[MatrixLike] | Mapping[str, MatrixLike], what: str) -> list[np.ndarray]:
    values = list(items.values()) if isinstance(items, Mapping) else list(items)
    if not values:
        raise InputError(f"{what} needs at least one matrix, got none")
    results = [v for v in values if isinstance(v, AttributionResult)]
    for other in results[1:]:
        check_same_tokens(results[0], other)
    mats = [_as_matrix(m, f"{what} item {k}") for k, m in enumerate(values)]
    shapes = [m.shape for m in mats]
    if len(set(shapes)) > 1:
        raise InputError(f"{what} needs matrices of the same shape, got shapes {shapes}")
    return mats


def _nan_weighted_mean(mats: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Weighted mean over the stack, renormalising the weights over the defined entries."""
    stack = np.stack(mats)
    defined = ~np.isnan(stack)
    w = weights.reshape(-1, 1, 1) * defined
    num = np.sum(np.where(defined, stack, 0.0) * w, axis=0)
    den = np.sum(w, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined.any(axis=0) & (den > 0), num / np.where(den > 0, den, 1.0), np.nan)


def multi_method_mean(
    matrices_or_results: Sequence[MatrixLike] | Mapping[str, MatrixLike], normalize_first: bool = True
) -> np.ndarray:
    """Mean of several attribution matrices of the same sample (one per method).

    Args:
        matrices_or_results: sequence (or dict, values used) of arrays / AttributionResults.
        normalize_first: min-max normalise each matrix globally to ``[0, 1]``
            first, so methods with different scales weigh the same.

    Returns:
        Cell-wise mean over the methods that define the cell; NaN if none does.

    Raises:
        InputError: empty input, different shapes, or results with different tokens.

    Example:
        >>> multi_method_mean([np.array([[0.0, 2.0]]), np.array([[10.0, 0.0]])]).tolist()
        [[0.5, 0.5]]
    """
    mats = _matrices(matrices_or_results, "multi_method_mean")
    if normalize_first:
        mats = [_minmax(m, None) for m in mats]
    return _nan_weighted_mean(mats, np.full(len(mats), 1.0 / len(mats)))


def temporal_weighted_sum(
    matrices: Sequence[MatrixLike],
    weights: Sequence[float] | np.ndarray | None = None,
    decay: float | None = None,
) -> np.ndarray:
    """Weighted sum of a time-ordered sequence of matrices (checkpoints, dialogue turns).

    Weights are always normalised to sum to 1, so the result is on the scale of
    the inputs. Default: uniform. With ``decay=d`` the weight of step ``t`` of
    ``T`` is ``d**(T-1-t)`` (the most recent step weighs most). A NaN cell is
    left out and the remaining weights of that cell are renormalised; a cell NaN
    at every step is NaN.

    Args:
        matrices: ``T`` arrays / AttributionResults of the same shape, oldest first.
        weights: ``T`` nonnegative weights with a positive sum (not with ``decay``).
        decay: factor in ``(0, 1]`` (not with ``weights``).

    Raises:
        InputError: empty input, shape mismatch, results with different tokens, both ``weights`` and ``decay``,
            wrong number of weights, negative/zero-sum weights, decay outside ``(0, 1]``.

    Example:
        >>> temporal_weighted_sum([np.array([[0.0]]), np.array([[3.0]])], decay=0.5).tolist()
        [[2.0]]
    """
    mats = _matrices(matrices, "temporal_weighted_sum")
    n = len(mats)
    if weights is not None and decay is not None:
        raise InputError("pass either weights or decay to temporal_weighted_sum, not both")
    if decay is not None:
        if not 0.0 < float(decay) <= 1.0:
            raise InputError(f"decay must be in (0, 1], got {decay!r}")
        w = float(decay) ** np.arange(n - 1, -1, -1, dtype=np.float64)
    elif weights is not None:
        w = _as_vector(weights, "weights")
        if w.size != n:
            raise InputError(f"got {w.size} weights for {n} matrices; expected one weight per matrix")
        if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise InputError(f"weights must be finite, nonnegative and sum to > 0, got {w.tolist()}")
    else:
        w = np.ones(n)
    return _nan_weighted_mean(mats, w / w.sum())


def _first_mismatch(a: Sequence[str], b: Sequence[str]) -> str | None:
    """Human-readable description of the first difference between two token lists."""
    k = common_prefix_alignment(a, b)
    if k == len(a) == len(b):
        return None
    left = repr(a[k]) if k < len(a) else "<end>"
    right = repr(b[k]) if k < len(b) else "<end>"
    return f"first mismatch at position {k}: {left} vs {right} (lengths {len(a)} and {len(b)})"


def check_same_tokens(a: AttributionResult, b: AttributionResult, target: bool = True) -> None:
    """Raise :class:`InputError` unless two results have identical source (and target) tokens.

    Example:
        >>> r = AttributionResult(np.ones((2, 1)), ["a", "b"], ["b"], "saliency", "native")
        >>> check_same_tokens(r, r)
    """
    kinds = [("source", a.source_tokens, b.source_tokens)]
    if target:
        kinds.append(("target", a.target_tokens, b.target_tokens))
    for kind, ta, tb in kinds:
        problem = _first_mismatch(ta, tb)
        if problem:
            raise InputError(
                f"the two results have different {kind} tokens, {problem}; "
                "expected attributions of the same tokens (align them first, e.g. with common_prefix_alignment)"
            )


def difference(a: MatrixLike, b: MatrixLike) -> np.ndarray:
    """Cell-wise difference ``A1 - A2`` (NaN where either cell is undefined).

    Args:
        a: first array / AttributionResult.
        b: second array / AttributionResult.

    Raises:
        InputError: different shapes, or two AttributionResults whose source or
            target tokens differ (the message names the first mismatch).

    Example:
        >>> difference(np.array([[3.0, 1.0]]), np.array([[1.0, np.nan]])).tolist()
        [[2.0, nan]]
    """
    if isinstance(a, AttributionResult) and isinstance(b, AttributionResult):
        check_same_tokens(a, b)
    ma, mb = _as_matrix(a, "a"), _as_matrix(b, "b")
    if ma.shape != mb.shape:
        raise InputError(f"cannot subtract matrices of shapes {ma.shape} and {mb.shape}; expected equal shapes")
    return ma - mb


def common_prefix_alignment(tokens_a: Sequence[str], tokens_b: Sequence[str]) -> int:
    """Length of the common prefix of two token lists.

    Example:
        >>> common_prefix_alignment(["The", " cat", " sat"], ["The", " cat", " ran"])
        2
    """
    n = 0
    for x, y in zip(tokens_a, tokens_b):
        if x != y:
            break
        n += 1
    return n
