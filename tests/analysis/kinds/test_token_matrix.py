"""The token-matrix kind's metrics: values against closed forms (numpy/scipy by hand)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from attrib_mlops.analysis import drift, summarize
from attrib_mlops.analysis.kinds.token_matrix import CheckContext, SideContext, importance_corr, top_tokens
from attrib_mlops.analysis.registry import compute
from attrib_mlops.result import AttributionResult


def res(imp, probability=(0.5,)):
    m = np.asarray(imp, dtype=np.float32)[:, None]
    return AttributionResult(m, [f"t{i}" for i in range(len(imp))], ["y"], "saliency", "native",
                             n_prompt=len(imp), step_scores={"probability": np.asarray(probability)})


def test_summarize_is_the_sample_scope_of_the_registry():
    r = res([0.9, 0.1, 0.0])
    out = summarize(r, k=1, true_positions=[0])
    assert list(out) == ["concentration_entropy", "topk_mass", "mean_probability", "hit_at_1", "hit_at_3",
                         "mean_rank"]
    p = np.array([0.9, 0.1])
    assert out["concentration_entropy"] == pytest.approx(-(p * np.log(p)).sum() / np.log(3))
    assert out["topk_mass"] == pytest.approx(0.9) and out["mean_rank"] == 1.0


def test_drift_matches_scipy():
    a, b = np.array([[1.0], [2.0], [3.0], [0.5]]), np.array([[2.0], [1.0], [3.0], [0.1]])
    d = drift(a, b, k=2)
    assert d["spearman"] == pytest.approx(stats.spearmanr(a[:, 0], b[:, 0]).statistic)
    assert d["kendall"] == pytest.approx(stats.kendalltau(a[:, 0], b[:, 0]).statistic)
    assert list(drift(a, b, kendall=False)) == ["spearman", "js", "topk_overlap"]


def test_check_metrics_against_closed_forms():
    b, c = res([3.0, 1.0, 0.5]), res([0.5, 1.0, 3.0])
    ctx = CheckContext(b, c, k=1)
    out = compute("check", ctx)
    assert out["importance_corr"] == pytest.approx(np.corrcoef([3, 1, 0.5], [0.5, 1, 3])[0, 1])
    assert out["topk_changed"] is True and out["topk_set_changed"] is True
    assert top_tokens(b, ctx.ib, 2) == [{"pos": 0, "token": "t0", "share": pytest.approx(3 / 4.5)},
                                        {"pos": 1, "token": "t1", "share": pytest.approx(1 / 4.5)}]
    assert importance_corr(np.ones(3), np.arange(3.0)) == 0.0 and importance_corr(np.ones(2), np.ones(2)) == 1.0
    side = compute("check_side", SideContext(b, [0], k=2))
    assert side == {"hit_at_1": 1.0, "hit_at_k": 1.0, "probability": 0.5}
    no_p = res([1.0])
    no_p.step_scores = {}
    assert compute("check_side", SideContext(no_p, [0])) == {"hit_at_1": 1.0, "hit_at_k": 1.0}
    assert "hit_at_1" not in compute("check_side", SideContext(b, None))


def test_faithfulness_metrics_read_what_the_result_carries():
    from attrib_mlops.analysis.kinds.token_matrix import SampleContext

    r = AttributionResult(np.array([[0.9], [0.1]]), ["k", "v"], ["x"], "saliency", "native", n_prompt=2)
    assert "comprehensiveness" not in compute("sample", SampleContext(r))  # opt-in: undefined, left out
    r.info["faithfulness"] = {"comprehensiveness": 0.4, "sufficiency": 0.1, "deletion_auc": 0.2}
    out = compute("sample", SampleContext(r))
    assert (out["comprehensiveness"], out["sufficiency"], out["deletion_auc"]) == (0.4, 0.1, 0.2)
