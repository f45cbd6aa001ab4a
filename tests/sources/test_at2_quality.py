"""Quality measures of source scores against ablation outcomes, checked against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from attrib_mlops.sources.at2.quality import Example, compare_scores, paired_lds, pearson_within, score_lds


def test_pearson_and_lds_match_scipy():
    rng = np.random.default_rng(0)
    masks = rng.random((40, 6)) < 0.5
    y = masks @ np.array([3.0, 0.5, -1.0, 0.0, 2.0, 0.1]) + rng.normal(0, 0.3, 40)
    w = rng.normal(size=6)
    assert pearson_within(masks @ w, y) == pytest.approx(pearsonr(masks @ w, y).statistic)
    assert score_lds(w, masks, y) == pytest.approx(spearmanr(masks @ w, y).statistic)
    assert np.isnan(pearson_within(np.ones(5), np.arange(5.0)))
    assert np.isnan(score_lds(np.zeros(6), masks, y))


def _example(rng, w_true, noise=0.0):
    S = w_true.size
    m, h = rng.random((48, S)) < 0.5, rng.random((24, S)) < 0.5
    y = m @ w_true + rng.normal(0, noise, 48)
    yh = h @ w_true + rng.normal(0, noise, 24)
    return Example(m, y, h, yh, surrogate_scores=w_true + 0.01, surrogate_lds=0.9)


def test_compare_scores_ranks_a_perfect_and_a_wrong_scorer():
    rng = np.random.default_rng(1)
    truths = [np.array([4.0, 0.2, 0.1, 0.0]), np.array([0.1, 0.0, 3.0, 0.3])]
    ex = [_example(rng, w) for w in truths]
    table = compare_scores(ex, {"exact": truths, "reversed": [-w for w in truths]})
    assert table["exact"]["lds"] == pytest.approx(1.0) and table["exact"]["pearson"] == pytest.approx(1.0)
    assert table["reversed"]["lds"] == pytest.approx(-1.0)
    assert table["exact"]["top1_agreement"] == 1.0 and table["reversed"]["top1_agreement"] == 0.0
    assert "surrogate" in table and table["surrogate"]["top1_agreement"] == 1.0
    with pytest.raises(ValueError, match="score arrays"):
        compare_scores(ex, {"short": truths[:1]})


def test_paired_lds_compares_on_the_same_masks():
    rng = np.random.default_rng(2)
    truths = [np.array([4.0, 0.2, -1.0, 0.0]), np.array([0.1, 0.0, 3.0, -0.5]), np.array([2.0, 1.0, 0.0, 0.5])]
    ex = [_example(rng, w, noise=0.05) for w in truths]
    naive = [np.abs(w) for w in truths]  # right magnitudes, wrong signs for the negative sources
    p = paired_lds(ex, truths, naive)
    assert p["lds_a"] > p["lds_b"] and p["diff"] == pytest.approx(p["lds_a"] - p["lds_b"])
    assert p["wins"] == pytest.approx(2 / 3) and p["n_examples"] == 3 and p["diff_se"] > 0
    held = paired_lds(ex, truths, naive, masks="holdout")
    assert held["lds_a"] == pytest.approx(np.mean([score_lds(w, e.holdout_masks, e.holdout_outcomes)
                                                   for w, e in zip(truths, ex)]))
