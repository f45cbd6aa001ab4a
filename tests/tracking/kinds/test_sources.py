"""The context-sources kind in a real SQLite MLflow store: written, committed, read back, v1 untouched."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from attrib_mlops.result import AttributionResult
from attrib_mlops.sources.result import AblationData, SourceAttribution
from attrib_mlops.tracking import AttributionReader, AttributionWriter, TrackingError
from attrib_mlops.tracking.kinds import get_kind

PROBE = [{"id": f"s{i}", "prompt": f"a{i}. <b>{i}</b>. c{i}.", "target": " x"} for i in range(3)]


def _sources(step: int, method: str = "ablation") -> list[SourceAttribution]:
    rng = np.random.default_rng(step)
    out = []
    for i, p in enumerate(PROBE):
        text = p["prompt"]
        parts = text.split(" ")
        spans, pos = [], 0
        for part in parts:
            a = text.index(part, pos)
            spans.append((a, a + len(part)))
            pos = a + len(part)
        scores = rng.normal(size=3)
        scores[i] = 5.0 + step  # sample i's true source is source i ... at every step
        ab = AblationData(rng.random((4, 3)) > 0.5, rng.normal(size=(4, 1)), np.ones((2, 3), bool),
                          rng.normal(size=(2, 1)), np.array([-0.5]))
        out.append(SourceAttribution(parts, spans, scores, p["target"], method, prompt=text, sample_id=p["id"],
                                     info={"true_sources": [i if step == 0 else 0], "seed": 0,
                                           "quality": {"lds": 0.5 + 0.1 * i, "topk_drop": {"1": 2.0},
                                                       "random_drop": {"1": 0.5}}},
                                     target_tokens=["x"], target_span=(0, 1), bias=-1.0, ablation=ab))
    return out


@pytest.fixture
def run(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.create_experiment("src", artifact_location=str(tmp_path / "artifacts"))
    return client, client.create_run(exp).info.run_id, tmp_path / "spool"


def test_sources_written_committed_and_read_back(run):
    client, run_id, spool = run
    w = AttributionWriter(client, run_id, spool_dir=spool)
    w.log_probe_set(PROBE)
    tokens = [AttributionResult(np.full((2, 1), 0.5, np.float32), ["a", "b"], ["x"], "saliency", "native",
                                n_prompt=2, sample_id=p["id"], prompt=p["prompt"], target=p["target"]) for p in PROBE]
    assert w.log_step(0, tokens).logged
    s0 = w.log_step(0, _sources(0) + _sources(0, "at2"))
    assert s0.logged
    assert s0.metrics["ablation"]["hit_at_1"] == 1.0 and s0.metrics["ablation"]["lds"] == pytest.approx(0.6)
    assert s0.mlflow_metrics["attrib/sources/ablation/hit_at_1"] == 1.0
    assert s0.mlflow_metrics["attrib/sources/at2/top1_drop"] == 2.0
    # the two methods scored the same (same seed): full agreement between them
    assert s0.mlflow_metrics["attrib/sources/agreement/ablation_vs_at2_top_source_same"] == 1.0
    s1 = w.log_step(5, _sources(5), model="ft", offline=True)  # through the spool
    assert not s1.logged and w.flush()
    s2 = w.log_step(10, _sources(10), model="ft")
    # drift against step 5 of the same model: same sources, same top source
    assert s2.metrics["ablation"]["drift_prev_top_source_same"] == 1.0

    hist = client.get_metric_history(run_id, "attrib/sources/ft/ablation/hit_at_1")
    assert [(m.step, m.value) for m in hist] == [(5, pytest.approx(1 / 3)), (10, pytest.approx(1 / 3))]

    reader = AttributionReader(client=client)
    assert reader.kinds(run_id) == ["token_matrix", "sources"]
    got = reader.load(run_id, 0, "model", "ablation", kind="sources")
    want = _sources(0)
    assert [r.sample_id for r in got] == ["s0", "s1", "s2"]
    for g, x in zip(got, want):
        assert g.sources == x.sources and g.spans == x.spans and g.prompt == x.prompt
        np.testing.assert_array_equal(g.scores, x.scores)
        np.testing.assert_array_equal(g.ablation.token_logprobs, x.ablation.token_logprobs)
    one = reader.load_sample(run_id, 10, "ft", "ablation", "s1", kind="sources")
    assert one.scores[1] == 15.0 and one.info["true_sources"] == [0]
    assert one.for_target_tokens(0, 1).target_span == (0, 1)  # ablation data survives: a refit away
    summ = reader.summary(run_id, 0, kind="sources")
    assert summ["kind"] == "sources" and set(summ["models"]["model"]["methods"]) == {"ablation", "at2"}
    assert summ["models"]["model"]["methods"]["ablation"]["top_sources"]["s2"]["index"] == 2
    view = reader.html_path(run_id, 0, kind="sources").read_text()
    assert "&lt;b&gt;0&lt;/b&gt;" in view and "<b>0</b>" not in view  # prompt text is escaped
    # the token kind of step 0 (schema v1) is untouched, and its manifest keys know nothing of sources
    assert [r.sample_id for r in reader.load(run_id, 0, method="saliency")] == ["s0", "s1", "s2"]
    man = reader.manifest(run_id)
    step0 = next(s for s in man["steps"] if s["step"] == 0)
    assert "sources" not in json.dumps(step0["files"]) and "sources" in step0["kinds"]
    assert man["kinds"]["sources"]["version"] == 1


def test_foreign_file_is_refused(tmp_path):
    kind = get_kind("sources")
    path = tmp_path / "x.parquet"
    kind.write(_sources(0), path, metadata={}, row_group_size=2, keep_float32=False)
    assert [r.sample_id for r in kind.read(path, ["s2", "s0"])] == ["s2", "s0"]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1]}), tmp_path / "other.parquet")
    with pytest.raises(TrackingError, match="not a sources file"):
        kind.read(tmp_path / "other.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1garbage")
    with pytest.raises(TrackingError, match="corrupt"):
        kind.check(tmp_path / "bad.parquet")
