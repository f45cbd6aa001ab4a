"""Outcomes of ablations and the linear surrogate fitted on them (numpy + scikit-learn, no torch).

Notation: ``masks`` is a ``[R, S]`` boolean array (True = source kept) and
``token_logprobs`` a ``[R, T]`` array of the target tokens' log-probabilities
under each ablation. For a target span ``[a, b)`` the outcome of an ablation is
the logit of the span's probability,

    f = log p - log(1 - p),   log p = sum_{t in [a, b)} log p_t,

computed stably with ``log(1 - p) = log1mexp(log p)`` (``log(-expm1(x))`` near
0, ``log1p(-exp(x))`` far from it), so ``p`` close to 1 stays finite.

The surrogate is linear in the keep indicators, ``f(m) ~ bias + w . m``:

* ``lasso`` (ContextCite): scikit-learn's Lasso on standardised masks, the
  outcome divided by the number of target tokens (so ``alpha`` is per token),
  weights mapped back to the unstandardised 0/1 scale and multiplied back;
* ``leave_one_out``: exact, ``w_i = f(all kept) - f(all but i kept)``.

Either way a positive ``w_i`` means removing source ``i`` lowers the target.

Example:
    >>> import numpy as np
    >>> m = np.array([[1, 1], [1, 0], [0, 1], [0, 0]], bool)
    >>> w, b = fit_lasso(m, m @ np.array([2.0, 0.0]), n_tokens=1, alpha=0.0)
    >>> (np.round(w, 3) + 0.0).tolist()
    [2.0, 0.0]
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError

__all__ = [
    "log1mexp",
    "span_logprob",
    "logit_outcome",
    "fit_lasso",
    "fit_leave_one_out",
    "fit",
    "predict",
    "lds",
]

_LN2 = math.log(2.0)


def log1mexp(x: np.ndarray | float) -> np.ndarray:
    """``log(1 - exp(x))`` for ``x <= 0``, accurate near 0 and far from it (Maechler, 2012).

    >>> float(np.round(log1mexp(np.log(0.25)), 6)) == float(np.round(np.log(0.75), 6))
    True
    """
    x = np.minimum(np.asarray(x, dtype=np.float64), 0.0)
    with np.errstate(divide="ignore"):
        return np.where(x > -_LN2, np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


def span_logprob(token_logprobs: np.ndarray, span: tuple[int, int] | None = None) -> np.ndarray:
    """Log-probability of the target span ``[a, b)`` under each row (sum of token log-probs)."""
    lp = np.asarray(token_logprobs, dtype=np.float64)
    if lp.ndim == 1:
        lp = lp[None]
    a, b = span if span is not None else (0, lp.shape[1])
    if not 0 <= a < b <= lp.shape[1]:
        raise InputError(
            f"target token span ({a}, {b}) is outside the target's {lp.shape[1]} tokens; "
            f"give 0 <= start < end <= {lp.shape[1]}"
        )
    return lp[:, a:b].sum(axis=1)


def logit_outcome(logp: np.ndarray) -> np.ndarray:
    """``log p - log(1 - p)`` from ``log p``; finite unless ``p`` is exactly 0 or 1 in float64."""
    logp = np.minimum(np.asarray(logp, dtype=np.float64), 0.0)
    out = logp - log1mexp(logp)
    # p == 1 in float64 (log p == 0) has no finite logit: clamp to the largest representable margin
    return np.clip(out, -745.0, 745.0)


def fit_lasso(masks: np.ndarray, y: np.ndarray, n_tokens: int, alpha: float = 0.01) -> tuple[np.ndarray, float]:
    """ContextCite's surrogate: Lasso on standardised masks; returns ``(weights, bias)`` on the 0/1 scale."""
    from sklearn.linear_model import Lasso, LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.asarray(masks, dtype=np.float64)
    n = max(int(n_tokens), 1)
    Y = np.asarray(y, dtype=np.float64) / n
    scaler = StandardScaler()
    reg = LinearRegression() if alpha == 0 else Lasso(alpha=alpha, random_state=0, fit_intercept=True, max_iter=10000)
    make_pipeline(scaler, reg).fit(X, Y)
    coef = np.asarray(reg.coef_, dtype=np.float64).reshape(-1)
    weights = coef / scaler.scale_
    bias = float(np.asarray(reg.intercept_).reshape(-1)[0]) - float((scaler.mean_ / scaler.scale_) @ coef)
    return weights * n, bias * n


def fit_leave_one_out(masks: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Exact leave-one-out scores from rows with all sources kept and each single source dropped."""
    m = np.asarray(masks, dtype=bool)
    y = np.asarray(y, dtype=np.float64)
    S = m.shape[1]
    full = np.flatnonzero(m.all(axis=1))
    if full.size == 0:
        raise InputError("leave-one-out needs the row with every source kept")
    base = float(y[full[0]])
    w = np.empty(S, dtype=np.float64)
    for i in range(S):
        rows = np.flatnonzero((~m[:, i]) & (m.sum(axis=1) == S - 1))
        if rows.size == 0:
            raise InputError(f"leave-one-out needs the row with only source {i} dropped")
        w[i] = base - float(y[rows[0]])
    return w, base - float(w.sum())


def fit(estimator: str, masks: np.ndarray, y: np.ndarray, n_tokens: int, alpha: float) -> tuple[np.ndarray, float]:
    """Dispatch on the estimator name (``lasso`` or ``leave_one_out``)."""
    if estimator == "lasso":
        return fit_lasso(masks, y, n_tokens, alpha)
    if estimator == "leave_one_out":
        return fit_leave_one_out(masks, y)
    raise InputError(f"unknown estimator {estimator!r}; valid: lasso, leave_one_out")


def predict(masks: np.ndarray, weights: np.ndarray, bias: float) -> np.ndarray:
    """Surrogate outcome of each mask row."""
    return np.asarray(masks, dtype=np.float64) @ np.asarray(weights, dtype=np.float64) + float(bias)


def lds(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Linear datamodeling score: Spearman correlation of predicted vs actual outcomes.

    NaN when either side is constant (a surrogate with all-zero weights predicts
    nothing; say so rather than report a number).
    """
    from scipy.stats import spearmanr

    p, a = np.asarray(predicted, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if p.size < 3 or np.ptp(p) == 0 or np.ptp(a) == 0:
        return float("nan")
    return float(spearmanr(p, a).statistic)
