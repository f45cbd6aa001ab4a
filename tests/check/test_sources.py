"""The regression check of context-source results: top source changes and ground-truth hit drops."""

from __future__ import annotations

import numpy as np
import pytest

from attrib_mlops.check import Policy, compare
from attrib_mlops.sources.result import SourceAttribution
from attrib_mlops.tracking import AttributionWriter

SRC = ["k1 = v1 ;", "k2 = v2 ;", "? k2"]


def _results(tops, truth=1, method="ablation", sources=SRC):
    out = []
    for i, t in enumerate(tops):
        scores = np.array([0.1, 0.2, 0.3][: len(sources)])
        scores[t] = 3.0
        out.append(SourceAttribution(list(sources), [(0, 1)] * len(sources), scores, " v2", method,
                                     sample_id=f"s{i}", info={"true_sources": [truth]}))
    return out


def test_same_top_sources_pass_and_changed_ones_regress():
    same = compare({"ablation": _results([1, 1, 1, 1])}, {"ablation": _results([1, 1, 1, 1])})
    assert same.verdict == "pass"
    m = same.methods[0].metrics
    assert m["top_source_changed_share"] == 0.0 and m["source_hit_at_1"] == 1.0 and m["source_hit_at_1_drop"] == 0
    moved = compare({"ablation": _results([1, 1, 1, 1])}, {"ablation": _results([1, 0, 0, 1])})
    assert moved.verdict == "regression"
    rep = moved.methods[0]
    assert rep.metrics["top_source_changed_share"] == 0.5 and rep.metrics["source_hit_at_1_drop"] == 0.5
    failed = {r.name for r in rep.failed_rules}
    assert failed == {"top_source_changed_share", "source_hit_at_1_drop"}
    assert rep.worst[0]["top_source_changed"] is True
    text = moved.summary_text()
    assert "top source 'k2 = v2 ;'@1 -> 'k1 = v1 ;'@0" in text and "true sources [1]" in text
    # a looser policy passes the same candidate
    loose = Policy(max_top_source_changed_share=0.6, max_source_hit_at_1_drop=0.6)
    assert compare({"ablation": _results([1, 1, 1, 1])}, {"ablation": _results([1, 0, 0, 1])}, loose).verdict == "pass"


def test_different_sources_are_never_compared():
    res = compare({"ablation": _results([1, 1])}, {"ablation": _results([0, 0], sources=["a", "b", "c"])})
    assert res.verdict == "cannot_compare" and "same sources" in res.reasons[0]
    assert res.methods[0].skipped_counts == {"different_sources": 2}


def test_runs_refs_load_the_sources_kind(check_db, tmp_path):
    client, uri = check_db.client, check_db.uri
    rid = client.create_run(check_db.exp).info.run_id
    w = AttributionWriter(client, rid, spool_dir=tmp_path / "spool")
    w.log_step(1, _results([1, 1, 1, 1]))
    w.log_step(2, _results([0, 0, 0, 1]))
    res = compare(f"runs:/{rid}@1", f"runs:/{rid}@2", tracking_uri=uri)
    assert res.verdict == "regression" and [m.method for m in res.methods] == ["ablation"]
    assert res.methods[0].metrics["top_source_changed_share"] == pytest.approx(0.75)
