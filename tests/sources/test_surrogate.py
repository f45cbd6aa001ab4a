"""Outcomes and surrogates, against closed forms and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from attrib_mlops.errors import InputError
from attrib_mlops.sources.surrogate import (
    fit,
    fit_lasso,
    fit_leave_one_out,
    lds,
    log1mexp,
    logit_outcome,
    predict,
    span_logprob,
)


def test_log1mexp_matches_direct_formula_and_stays_accurate_near_zero():
    xs = np.array([-1e-12, -1e-6, -0.1, -0.69, -0.7, -5.0, -50.0])
    with np.errstate(divide="ignore"):
        direct = np.log(1 - np.exp(xs))
    got = log1mexp(xs)
    far = xs < -1e-3
    np.testing.assert_allclose(got[far], direct[far], rtol=1e-12, atol=1e-15)
    assert got[-1] == pytest.approx(-math.exp(-50.0), rel=1e-9)  # log1p(-e^x) ~ -e^x far from 0
    # near 0 the direct formula loses every digit; log(1 - exp(x)) ~ log(-x) there
    assert got[0] == pytest.approx(math.log(1e-12), rel=1e-9)
    assert abs(direct[0] - math.log(1e-12)) > 1e-6


def test_logit_outcome_is_finite_and_exact_for_p_close_to_one():
    p = np.array([1e-30, 0.25, 0.5, 1 - 1e-12])
    with np.errstate(divide="ignore"):
        logp = np.log1p(p - 1)  # exact log p
    logp[0] = math.log(1e-30)
    out = logit_outcome(logp)
    assert np.isfinite(out).all()
    assert out[1] == pytest.approx(math.log(0.25 / 0.75))
    assert out[2] == pytest.approx(0.0, abs=1e-12)
    assert out[3] == pytest.approx(math.log((1 - 1e-12) / 1e-12), rel=1e-6)


def test_span_logprob_sums_tokens_and_rejects_bad_spans():
    lp = np.array([[-1.0, -2.0, -3.0], [0.0, -1.0, 0.0]])
    assert span_logprob(lp).tolist() == [-6.0, -1.0]
    assert span_logprob(lp, (1, 3)).tolist() == [-5.0, -1.0]
    with pytest.raises(InputError, match="outside the target's 3 tokens"):
        span_logprob(lp, (2, 4))


def test_lasso_recovers_sparse_linear_weights():
    rng = np.random.default_rng(0)
    masks = rng.random((64, 10)) < 0.5
    true_w = np.zeros(10)
    true_w[[2, 7]] = [3.0, -1.5]
    y = 0.4 + masks @ true_w
    w, b = fit_lasso(masks, y, n_tokens=1, alpha=0.0)
    np.testing.assert_allclose(w, true_w, atol=1e-8)
    assert b == pytest.approx(0.4)
    w2, _ = fit_lasso(masks, y, n_tokens=1, alpha=0.01)  # the L1 shrinks, the ranking stays
    assert list(np.argsort(-np.abs(w2))[:2]) == [2, 7]
    assert np.abs(np.delete(w2, [2, 7])).max() < 0.05


def test_lasso_alpha_is_per_token():
    rng = np.random.default_rng(1)
    masks = rng.random((64, 4)) < 0.5
    y = masks @ np.array([1.0, 0.0, 0.0, 0.5])
    w1, _ = fit_lasso(masks, y, n_tokens=1, alpha=0.01)
    w4, _ = fit_lasso(masks * 1, 4 * y, n_tokens=4, alpha=0.01)  # 4 tokens, 4x the log-odds
    np.testing.assert_allclose(w4, 4 * w1, rtol=1e-6)


def test_leave_one_out_is_exact_difference():
    S = 4
    m = np.ones((S + 1, S), bool)
    m[np.arange(1, S + 1), np.arange(S)] = False
    y = np.array([5.0, 4.0, 5.0, 2.0, 6.0])
    w, b = fit_leave_one_out(m, y)
    assert w.tolist() == [1.0, 0.0, 3.0, -1.0]
    assert predict(m[:1], w, b)[0] == pytest.approx(5.0)
    with pytest.raises(InputError, match="only source 1 dropped"):
        fit_leave_one_out(np.delete(m, 2, axis=0), np.delete(y, 2))
    with pytest.raises(InputError, match="unknown estimator"):
        fit("ridge", m, y, 1, 0.0)


def test_lds_is_spearman_and_nan_for_constant_predictions():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=20), rng.normal(size=20)
    assert lds(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert lds(a, 2 * a + 1) == pytest.approx(1.0)
    assert math.isnan(lds(np.zeros(20), b))
