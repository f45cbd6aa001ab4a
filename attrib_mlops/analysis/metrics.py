"""Scalar metrics of attributions: concentration, drift, method agreement, ground truth.

All metrics work on the source importance ``I(x_i) = sum_j A[i, j]`` (see
:func:`~attrib_mlops.analysis.aggregate.source_importance`), taken in absolute
value because methods differ in sign conventions. NaN entries (undefined rows)
are left out; a metric is NaN only when no defined input is left.

Pure numpy/scipy: this module imports neither torch, mlflow nor transformers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from itertools import combinations

import numpy as np
from scipy.special import rel_entr

from attrib_mlops.analysis.aggregate import MatrixLike, _as_matrix, _as_vector, check_same_tokens, source_importance
from attrib_mlops._util import nanmean
from attrib_mlops.errors import InputError
from attrib_mlops.result import AttributionResult

__all__ = [
    "normalized_entropy",
    "concentration",
    "spearman",
    "kendall",
    "jensen_shannon",
    "topk_overlap",
    "drift",
    "method_agreement",
    "ground_truth_alignment",
    "mean_target_probability",
    "summarize",
]

VectorLike = Sequence[float] | np.ndarray


# ----------------------------------------------------------------- helpers
def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


def _check_finite_or_nan(x: np.ndarray, name: str) -> None:
    if np.isinf(x).any():
        raise InputError(f"{name} contains +-inf; expected finite values (NaN = undefined)")


def _paired(a: VectorLike, b: VectorLike, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The entries defined (not NaN) in both vectors, which must have equal length."""
    x, y = _as_vector(a, f"{what} first argument"), _as_vector(b, f"{what} second argument")
    if x.shape != y.shape:
        raise InputError(f"{what} needs vectors of the same length, got {x.size} and {y.size}")
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep]


def _distribution(x: np.ndarray) -> np.ndarray:
    """``|x|`` normalised to sum 1; an all-zero vector becomes uniform."""
    x = np.abs(x)
    total = x.sum()
    return x / total if total > 0 else np.full(x.size, 1.0 / x.size)


def _abs_importance(x: MatrixLike) -> np.ndarray:
    return np.abs(source_importance(x))


def _is_constant(x: np.ndarray) -> bool:
    return x.size < 2 or bool(np.ptp(x) == 0)


def _rank_corr(a: VectorLike, b: VectorLike, fn: Callable, what: str) -> float:
    x, y = _paired(a, b, what)
    if x.size < 2 or _is_constant(x) or _is_constant(y):
        return math.nan
    return float(fn(x, y).statistic)


class _Stat:
    __slots__ = ("statistic",)

    def __init__(self, statistic: float) -> None:
        self.statistic = statistic


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """``scipy.stats.rankdata(x)`` (ties get their average rank) of a 1-D vector without NaN."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    first = np.r_[True, xs[1:] != xs[:-1]]
    dense = np.empty(x.size, dtype=np.intp)
    dense[order] = first.cumsum()
    bounds = np.r_[np.nonzero(first)[0], x.size]
    return 0.5 * (bounds[dense] + bounds[dense - 1] + 1)


def spearman_fast(x: np.ndarray, y: np.ndarray) -> _Stat:
    """``scipy.stats.spearmanr(x, y)`` (the same float, bit for bit) for two NaN-free, non-constant vectors of
    two or more values, several times faster on the short vectors of per-step metrics (no input
    checks, no p-value).

    Example:
        >>> spearman_fast(np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])).statistic
        0.5
    """
    ranked = np.vstack((_average_ranks(x), _average_ranks(y)))  # the layout scipy's corrcoef call sees
    return _Stat(float(np.corrcoef(ranked)[1, 0]))


def _robust_rank_corr(a: np.ndarray, b: np.ndarray, fn: Callable, what: str) -> float:
    """Rank correlation for drift/agreement: defined whenever any pair is defined.

    When a ranking is constant the correlation is undefined; we report 1.0 if
    both are constant (the same, all-tied ranking) and 0.0 if only one is.
    """
    x, y = _paired(a, b, what)
    if x.size == 0:
        return math.nan
    cx, cy = _is_constant(x), _is_constant(y)
    if cx or cy:
        return 1.0 if cx and cy else 0.0
    return float(fn(x, y).statistic)


def _topk_indices(x: np.ndarray, k: int) -> set[int]:
    """Indices of the ``k`` largest values; ties go to the earlier position."""
    return set(np.argsort(-x, kind="stable")[:k].tolist())


# ------------------------------------------------------------ concentration
def normalized_entropy(v: VectorLike) -> float:
    """Shannon entropy of ``|v| / sum |v|`` divided by ``log(n)``, in ``[0, 1]``.

    NaN entries are left out and ``n`` counts the remaining ones.

    Args:
        v: nonempty 1-D vector (signs are dropped).

    Returns:
        1.0 for a uniform vector, 0.0 for a one-hot vector or ``n <= 1``; an
        all-zero vector counts as uniform (1.0); NaN if every entry is NaN.

    Raises:
        InputError: empty vector or infinite values.

    Example:
        >>> normalized_entropy([1.0, 1.0, 1.0, 1.0]), normalized_entropy([0.0, 5.0, 0.0])
        (1.0, 0.0)
    """
    x = _as_vector(v, "v")
    if x.size == 0:
        raise InputError("normalized_entropy needs a nonempty vector")
    _check_finite_or_nan(x, "v")
    x = x[~np.isnan(x)]
    if x.size == 0:
        return math.nan
    if x.size == 1:
        return 0.0
    p = _distribution(x)
    p = p[p > 0]
    return float(np.clip(-np.sum(p * np.log(p)) / np.log(x.size), 0.0, 1.0)) + 0.0  # + 0.0: no -0.0


def concentration(result_or_matrix: MatrixLike, k: int = 3) -> dict[str, float]:
    """How concentrated the source importance is.

    Computed on ``|I(x_i)|`` over every source row with a defined importance
    (prompt rows and, for decoder-only models, the target prefix rows; the
    all-NaN last row is left out).

    Args:
        result_or_matrix: AttributionResult or ``(n_source, n_target)`` array.
        k: number of top tokens for ``topk_mass``.

    Returns:
        ``{"entropy": normalised entropy, "topk_mass": share of the total
        |I(x)| held by the k largest tokens}``. With ``k >= n`` the mass is 1.0;
        an all-zero importance counts as uniform (mass ``k/n``); both are NaN if
        no row is defined.

    Example:
        >>> concentration(np.array([[3.0], [1.0], [0.0], [0.0]]), k=1)
        {'entropy': 0.4056390622295664, 'topk_mass': 0.75}
    """
    k = _check_k(k)
    imp = _abs_importance(result_or_matrix)
    _check_finite_or_nan(imp, "source importance")
    imp = imp[~np.isnan(imp)]
    if imp.size == 0:
        return {"entropy": math.nan, "topk_mass": math.nan}
    p = _distribution(imp)
    return {"entropy": normalized_entropy(imp), "topk_mass": float(min(1.0, np.sort(p)[::-1][:k].sum()))}


# ---------------------------------------------------------------- similarity
def spearman(a: VectorLike, b: VectorLike) -> float:
    """Spearman rank correlation of two importance vectors (pairs with a NaN are left out).

    Returns:
        Correlation in ``[-1, 1]``; NaN if fewer than two pairs remain or a
        vector is constant (the correlation is undefined; :func:`drift` maps
        that case to 1.0/0.0).

    Raises:
        InputError: different lengths.

    Example:
        >>> spearman([1.0, 2.0, 3.0], [30.0, 20.0, 10.0])
        -1.0
    """
    from scipy import stats  # imported on use: scipy.stats takes about a second to import

    return _rank_corr(a, b, stats.spearmanr, "spearman")


def kendall(a: VectorLike, b: VectorLike) -> float:
    """Kendall's tau-b of two importance vectors; same conventions as :func:`spearman`.

    Example:
        >>> round(kendall([1.0, 2.0, 3.0], [1.0, 3.0, 2.0]), 4)
        0.3333
    """
    from scipy import stats

    return _rank_corr(a, b, stats.kendalltau, "kendall")


def jensen_shannon(p: VectorLike, q: VectorLike) -> float:
    """Jensen-Shannon *divergence* (base 2) of ``|p|`` and ``|q|`` normalised to distributions.

    This is ``scipy.spatial.distance.jensenshannon(p, q, base=2) ** 2``: 0.0
    for identical distributions, 1.0 for disjoint supports. Positions where
    either vector is NaN are left out before normalising; an all-zero vector
    counts as uniform.

    Returns:
        Value in ``[0, 1]``; NaN if no position is defined in both.

    Raises:
        InputError: different lengths or infinite values.

    Example:
        >>> jensen_shannon([1.0, 0.0], [0.0, 2.0]), jensen_shannon([1.0, 3.0], [2.0, 6.0])
        (1.0, 0.0)
    """
    x, y = _paired(p, q, "jensen_shannon")
    _check_finite_or_nan(np.concatenate([x, y]), "jensen_shannon input")
    if x.size == 0:
        return math.nan
    px, py = _distribution(x), _distribution(y)
    m = (px + py) / 2
    js = (rel_entr(px, m).sum() + rel_entr(py, m).sum()) / (2 * np.log(2))
    return float(np.clip(js, 0.0, 1.0))


def topk_overlap(a: VectorLike, b: VectorLike, k: int) -> float:
    """Share of the top-k positions (by value, largest first) that two vectors have in common.

    Positions NaN in either vector are left out; ``k`` is capped at the number
    of remaining positions so identical vectors always give 1.0. Ties go to the
    earlier position.

    Returns:
        ``|topk(a) ∩ topk(b)| / k`` in ``[0, 1]``; NaN if no position is defined in both.

    Example:
        >>> topk_overlap([5.0, 4.0, 0.0, 1.0], [5.0, 0.0, 4.0, 1.0], k=2)
        0.5
    """
    k = _check_k(k)
    x, y = _paired(a, b, "topk_overlap")
    if x.size == 0:
        return math.nan
    k = min(k, x.size)
    return len(_topk_indices(x, k) & _topk_indices(y, k)) / k


# --------------------------------------------------------- drift, agreement
def _importances_of_same_sources(items: Sequence[MatrixLike], names: Sequence[str]) -> list[np.ndarray]:
    results = [r for r in items if isinstance(r, AttributionResult)]
    for other in results[1:]:
        check_same_tokens(results[0], other, target=False)
    imps = [_abs_importance(m) for m in items]
    sizes = {name: imp.size for name, imp in zip(names, imps)}
    if len(set(sizes.values())) > 1:
        raise InputError(f"expected the same number of source tokens, got {sizes}")
    return imps


def drift(res_a: MatrixLike, res_b: MatrixLike, k: int = 3, kendall: bool = True) -> dict[str, float]:
    """How much the absolute source importance ``|I(x)|`` moved between two attributions.

    Args:
        res_a: AttributionResult or matrix (e.g. earlier checkpoint).
        res_b: AttributionResult or matrix on the same source tokens.
        k: top-k size for ``topk_overlap``.
        kendall: also compute Kendall's tau (the slowest of the four; skip it
            when it is not reported, e.g. in per-step logging).

    Returns:
        ``{"spearman", "kendall", "js", "topk_overlap"}`` (``kendall`` only when asked). Rank correlations of
        a constant importance are reported as 1.0 if both are constant and 0.0
        if only one is; every value is NaN only if no source row is defined in both.

    Raises:
        InputError: different source tokens (results) or row counts (matrices).

    Example:
        >>> d = drift(np.array([[1.0], [2.0], [3.0]]), np.array([[3.0], [2.0], [1.0]]), k=1)
        >>> d["spearman"], d["topk_overlap"]
        (-1.0, 0.0)
    """
    from attrib_mlops.analysis.kinds.token_matrix import PairContext
    from attrib_mlops.analysis.registry import compute

    return compute("drift", PairContext(res_a, res_b, _check_k(k)), skip=() if kendall else ("kendall",))


def method_agreement(results_by_method: Mapping[str, MatrixLike]) -> dict[str, float]:
    """Pairwise Spearman correlation of ``|I(x)|`` between attribution methods of one sample.

    Args:
        results_by_method: at least two ``{method name: AttributionResult or matrix}``.

    Returns:
        ``{"<m1>~<m2>": rho, ..., "mean": mean over the pairs}`` with pairs in
        insertion order; constant importances are handled as in :func:`drift`.

    Raises:
        InputError: fewer than two methods, or different source tokens.

    Example:
        >>> m = np.array([[1.0], [2.0], [3.0]])
        >>> method_agreement({"saliency": m, "attention": m, "ig": -m[::-1]})
        {'saliency~attention': 1.0, 'saliency~ig': -1.0, 'attention~ig': -1.0, 'mean': -0.3333333333333333}
    """
    if len(results_by_method) < 2:
        raise InputError(f"method_agreement needs at least two methods, got {list(results_by_method)}")
    names = list(results_by_method)
    imps = dict(zip(names, _importances_of_same_sources([results_by_method[n] for n in names], names)))
    out = {
        f"{a}~{b}": _robust_rank_corr(imps[a], imps[b], spearman_fast, "method_agreement")
        for a, b in combinations(names, 2)
    }
    values = np.array(list(out.values()))
    out["mean"] = float(np.mean(values[~np.isnan(values)])) if (~np.isnan(values)).any() else math.nan
    return out


# -------------------------------------------------------------- ground truth
def ground_truth_alignment(
    result_or_matrix: MatrixLike,
    true_positions: Sequence[int],
    k: int = 1,
    restrict_to_prompt: bool = True,
    target_index: int | None = None,
    n_prompt: int | None = None,
) -> dict[str, float]:
    """Does the attribution point at the tokens that hold the answer?

    Candidates are ranked by ``|I(x_i)|`` (``target_index=None``) or by
    ``|A[i, target_index]|`` (e.g. ``0`` for the first answer token of a
    key-value task), highest first. Undefined (NaN) scores rank last. Ties with
    a non-true candidate count against the true position (an all-zero
    attribution never scores a hit by luck).

    Args:
        result_or_matrix: AttributionResult or ``(n_source, n_target)`` array.
        true_positions: source row indices that hold the evidence (nonempty).
        k: a hit means the best true position ranks within the top ``k``.
        restrict_to_prompt: rank only the prompt rows ``0 .. n_prompt-1``.
        target_index: column to rank by, or None for the whole importance.
        n_prompt: prompt length; defaults to ``result.n_prompt``; required for a
            bare matrix when ``restrict_to_prompt`` is True.

    Returns:
        ``{"hit@<k>": 1.0 or 0.0, "mean_rank": 1-based rank of the best-ranked
        true position}`` (a single sample's rank; average it over samples).

    Raises:
        InputError: positions or ``target_index`` out of range, missing ``n_prompt``.

    Example:
        >>> ground_truth_alignment(np.array([[0.1], [0.9], [0.3]]), [2], k=2, restrict_to_prompt=False)
        {'hit@2': 1.0, 'mean_rank': 2.0}
    """
    k = _check_k(k)
    a = _as_matrix(result_or_matrix)
    n_source, n_target = a.shape
    if target_index is None:
        scores = np.abs(source_importance(a))
    else:
        if isinstance(target_index, bool) or not isinstance(target_index, (int, np.integer)):
            raise InputError(f"target_index must be an int or None, got {target_index!r}")
        if not 0 <= target_index < n_target:
            raise InputError(f"target_index {target_index} is out of range; expected 0 <= target_index < {n_target}")
        scores = np.abs(a[:, int(target_index)])
    scope = "source rows"
    if restrict_to_prompt:
        if n_prompt is None and isinstance(result_or_matrix, AttributionResult):
            n_prompt = result_or_matrix.n_prompt
        if n_prompt is None:
            raise InputError("restrict_to_prompt=True needs n_prompt for a bare matrix; pass n_prompt=... "
                             "or restrict_to_prompt=False")
        if not 1 <= n_prompt <= n_source:
            raise InputError(f"n_prompt {n_prompt} is out of range; expected 1 <= n_prompt <= {n_source}")
        scores, scope = scores[: int(n_prompt)], "prompt rows"
    positions = list(true_positions)
    if not positions:
        raise InputError("true_positions is empty; expected at least one source row index")
    for p in positions:
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not 0 <= p < scores.size:
            raise InputError(f"true position {p!r} is out of range; expected ints in 0..{scores.size - 1} ({scope})")
    s = np.where(np.isnan(scores), -np.inf, scores)
    is_true = np.zeros(s.size, dtype=bool)
    is_true[positions] = True
    best = min(1 + int(np.sum(s > s[p])) + int(np.sum((s == s[p]) & ~is_true)) for p in positions)
    return {f"hit@{k}": float(best <= k), "mean_rank": float(best)}


# ------------------------------------------------------------------ summary
def mean_target_probability(result: AttributionResult) -> float:
    """Mean of ``step_scores["probability"]`` over the target tokens (NaN left out; NaN if all are).

    Raises:
        InputError: no ``probability`` step score.

    Example:
        >>> r = AttributionResult(np.ones((1, 2)), ["a"], ["b", "c"], "saliency", "native",
        ...                       step_scores={"probability": [0.5, 0.25]})
        >>> mean_target_probability(r)
        0.375
    """
    if not isinstance(result, AttributionResult) or "probability" not in result.step_scores:
        raise InputError("mean_target_probability needs an AttributionResult with a 'probability' step score")
    return _nanmean(result.step_scores["probability"])


def _nanmean(v: np.ndarray) -> float:
    return nanmean(np.asarray(v, dtype=np.float64).ravel(), empty=math.nan)


def summarize(
    result: AttributionResult,
    k: int = 3,
    true_positions: Sequence[int] | None = None,
    target_index: int | None = None,
) -> dict[str, float]:
    """One flat dict of scalar metrics for a single result, with MLflow-safe keys.

    The ``sample`` metrics of the metric registry (:mod:`attrib_mlops.analysis.registry`). Keys: ``concentration_entropy``, ``topk_mass`` (top ``k``), then
    ``mean_probability`` / ``mean_entropy`` when those step scores exist, then
    ``hit_at_1``, ``hit_at_3`` and ``mean_rank`` when ``true_positions`` is
    given (ranked over the prompt rows, by ``target_index`` as in
    :func:`ground_truth_alignment`).

    Example:
        >>> r = AttributionResult(np.array([[0.9], [0.1]]), ["k", "v"], ["x"], "saliency", "native",
        ...                       step_scores={"probability": [0.5]})
        >>> sorted(summarize(r, k=1, true_positions=[0]).items())  # doctest: +ELLIPSIS
        [('concentration_entropy', 0.46...), ('hit_at_1', 1.0), ('hit_at_3', 1.0), ('mean_probability', 0.5), ...]
    """
    if not isinstance(result, AttributionResult):
        raise InputError(f"summarize needs an AttributionResult, got {type(result).__name__}")
    from attrib_mlops.analysis.kinds.token_matrix import SampleContext
    from attrib_mlops.analysis.registry import compute

    return compute("sample", SampleContext(result, k=k, true_positions=true_positions, target_index=target_index))
