"""Metrics of the context-sources kind against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from attrib_mlops.analysis.kinds.sources import (
    SOURCES,
    SourcePairContext,
    SourceSampleContext,
    SourceSideContext,
    true_sources,
)
from attrib_mlops.analysis.registry import compute, get_metric, kind_names, kind_of, list_metrics
from attrib_mlops.check.rules import rules
from attrib_mlops.sources.result import SourceAttribution


def _r(scores, truth=None, quality=None, sources=("a.", "b.", "c.")):
    info = {"quality": quality or {}}
    if truth is not None:
        info["true_sources"] = truth
    return SourceAttribution(list(sources), [(3 * i, 3 * i + 2) for i in range(len(sources))], np.array(scores),
                             " t", "ablation", info=info)


def test_kind_registered_after_token_matrix():
    assert kind_names()[0] == "token_matrix" and SOURCES in kind_names()
    assert kind_of(_r([1, 2, 3])) == SOURCES
    # the sources metrics do not shadow the token ones of the same name
    assert get_metric("hit_at_1").kind == "token_matrix" and get_metric("hit_at_1", kind=SOURCES).kind == SOURCES


def test_sample_metrics_closed_form():
    q = {"lds": 0.7, "topk_drop": {"1": 2.5, "3": 4.0}, "random_drop": {"1": 0.5, "3": 3.0}}
    out = compute("sample", SourceSampleContext(_r([0.5, 3.0, -1.0], truth=[0], quality=q)), kind=SOURCES)
    assert out["lds"] == 0.7 and out["top1_drop"] == 2.5 and out["top1_gain"] == pytest.approx(2.0)
    assert out["hit_at_1"] == 0.0 and out["hit_at_3"] == 1.0  # true source ranked 2nd
    assert out["top_share"] == pytest.approx(3.0 / 3.5)  # negative scores carry no mass
    # no truth, no quality: those metrics are not applicable (left out), never a made-up 0
    out = compute("sample", SourceSampleContext(_r([1.0, 0.0, 0.0])), kind=SOURCES)
    assert set(out) == {"top_share"} and out["top_share"] == 1.0
    assert true_sources(_r([1, 2, 3], truth=7)) is None  # out of range: no usable truth


def test_drift_and_check_metrics():
    a, b = _r([3.0, 1.0, 2.0]), _r([1.0, 3.0, 2.0])
    d = compute("drift", SourcePairContext(a, b), kind=SOURCES)
    assert d["top_source_same"] == 0.0 and d["spearman"] == pytest.approx(-1.0)  # ranks (3,1,2) vs (1,3,2): sum d^2 = 8
    same = compute("drift", SourcePairContext(a, _r([30.0, 10.0, 20.0])), kind=SOURCES)
    assert same == {"top_source_same": 1.0, "spearman": 1.0}
    other = SourcePairContext(a, _r([1.0, 2.0], sources=("x.", "y.")))
    assert compute("check", other, kind=SOURCES) == {}  # different sources are never compared
    c = compute("check", SourcePairContext(a, b), kind=SOURCES)
    assert c["top_source_changed"] is True
    m = get_metric("source_hit_at_1", "check_side", SOURCES)
    assert m.fn(SourceSideContext(b, [1])) == 1.0 and m.fn(SourceSideContext(a, [1])) == 0.0
    assert m.reduce([]) is None


def test_rules_derive_from_the_sources_metrics():
    keys = [r.key for r in rules(SOURCES)]
    assert keys == ["max_top_source_changed_share", "min_mean_source_spearman", "max_source_hit_at_1_drop"]
    assert [r.key for r in rules()][:3] == ["min_mean_importance_corr", "min_mean_spearman", "max_topk_changed_share"]
    assert {m.name for m in list_metrics("sample", SOURCES)} >= {"lds", "top1_drop", "hit_at_1"}
