"""analysis.registry: metrics registered once, read everywhere."""

from __future__ import annotations

import math

import pytest

from attrib_mlops.analysis import registry as R
from attrib_mlops.errors import InputError


def test_builtin_metric_names_are_unchanged():
    # the faithfulness metrics came later (opt-in: defined only when a result carries them)
    assert R.metric_names("sample") == ["concentration_entropy", "topk_mass", "mean_probability", "mean_entropy",
                                        "hit_at_1", "hit_at_3", "mean_rank", "comprehensiveness", "sufficiency",
                                        "deletion_auc",
                                        # classifiers (analysis/kinds/token_matrix_classifier.py)
                                        "probe_accuracy", "rationale_hit_at_1", "rationale_hit_at_3", "rationale_tau"]
    assert R.metric_names("drift") == ["spearman", "kendall", "js", "topk_overlap"]
    assert [m.summary_name for m in R.list_metrics("check")] == [
        "mean_importance_corr", "mean_spearman", "mean_topk_overlap", "mean_js", "topk_changed_share",
        "topk_set_changed_share"]
    assert R.metric_names("check_side") == ["hit_at_1", "hit_at_k", "probability", "probe_accuracy", "rationale_tau"]
    assert R.kind_names()[0] == R.TOKEN_MATRIX


def test_direction_aggregation_and_lookup():
    assert R.get_metric("mean_rank").higher_is_better is False
    assert R.get_metric("topk_changed_share", scope="check").aggregate == "share"
    assert [m.name for m in sorted((m for m in R.list_metrics("sample") if m.preferred), key=lambda m: m.preferred)] \
        == ["hit_at_1", "mean_rank", "topk_mass", "concentration_entropy", "mean_probability", "probe_accuracy",
            "rationale_hit_at_1", "rationale_tau"]
    with pytest.raises(InputError, match="unknown metric 'nope'; valid: .*topk_mass"):
        R.get_metric("nope")
    assert R.aggregate_values("share", [True, False, None, True]) == pytest.approx(2 / 3)
    assert R.nanmean([math.nan, None]) is None
    with pytest.raises(InputError, match="unknown aggregation"):
        R.aggregate_values("median", [1.0])


def test_registering_a_metric_of_a_new_kind_is_isolated():
    class Scores:
        pass

    R.register_kind("test_kind_iso", Scores)
    m = R.register_metric("test_metric_iso", lambda ctx: ctx * 2.0, kind="test_kind_iso", higher_is_better=True,
                          rules=(("value", 0.5),))
    assert R.kind_of(Scores()) == "test_kind_iso"
    assert R.compute("sample", 2.0, kind="test_kind_iso") == {"test_metric_iso": 4.0}
    assert "test_metric_iso" not in R.metric_names("sample")  # the token-matrix kind is untouched
    assert m.rules == (("value", 0.5),)
    with pytest.raises(InputError, match="registered twice"):
        R.register_metric("test_metric_iso", lambda ctx: 0.0, kind="test_kind_iso")
    with pytest.raises(InputError, match="rules need a direction"):
        R.register_metric("test_metric_nodir", lambda ctx: 0.0, kind="test_kind_iso", rules=(("value", 1.0),))
    with pytest.raises(InputError, match="no attribution kind handles int"):
        R.kind_of(3)
