"""Storage schema v1 stays readable and is written the same: a store written by the old code (commit c212509).

The fixture (``fixtures/v1_store``) was written by the writer before it was split into
kinds; ``make_v1_store.py`` next to it says how. These tests read it with today's reader,
append to it with today's writer, and replay the same calls with today's writer to
compare every file it writes with the old one.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from attrib_mlops.tracking import AttributionReader, AttributionWriter
from attrib_mlops.tracking import layout as L

FIXTURE = Path(__file__).parent / "fixtures" / "v1_store"
# written per call (time, versions), or added since v1 (additive keys an old reader ignores)
VOLATILE = {"created", "updated", "logged", "versions"}
ADDED = {"kinds", "integrity", "sha256"}  # additive keys since v1: the per-kind entry, the content hashes


def _fixture_module():
    spec = importlib.util.spec_from_file_location("make_v1_store", FIXTURE / "make_v1_store.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def v1_run(tmp_path):
    """A run whose artifacts, tags and metrics are the fixture's (as the old writer left them)."""
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.create_experiment("v1", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(exp)
    art = Path(run.info.artifact_uri)
    art.mkdir(parents=True, exist_ok=True)
    shutil.copytree(FIXTURE / "attribution", art / "attribution")
    rec = json.loads((FIXTURE / "run.json").read_text())
    metrics = [Metric(k, v, 0, s) for k, pts in rec["metrics"].items() for s, v in pts]
    client.log_batch(run.info.run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in rec["tags"].items()])
    return client, run.info.run_id


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE and k not in ADDED}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def test_reader_reads_the_v1_store(v1_run):
    client, run_id = v1_run
    mod = _fixture_module()
    reader = AttributionReader(client=client)
    assert reader.steps(run_id) == [0, 10]
    assert reader.models(run_id) == ["model", "org/ft"]
    assert sorted(reader.methods(run_id)) == ["attention", "saliency"]
    assert [s["id"] for s in reader.probe(run_id)] == ["s0", "s1", "s2"]
    for step in mod.STEPS:
        for model, methods in mod.CALLS:
            for method in methods:
                got = reader.load(run_id, step, model, method)
                want = mod.results(method, step, model)
                assert [r.sample_id for r in got] == ["s0", "s1", "s2"]
                for g, w in zip(got, want):
                    np.testing.assert_array_equal(g.matrix, w.matrix)  # float32 kept in the fixture
                    assert g.source_tokens == w.source_tokens and g.info == {"model": model}
                one = reader.load_sample(run_id, step, model, method, "s1")
                np.testing.assert_array_equal(one.matrix, want[1].matrix)
    summ = reader.summary(run_id, 10)
    assert set(summ["models"]) == {"model", "org/ft"}
    assert summ["models"]["model"]["methods"]["saliency"]["drift"]["prev_step"] == 0
    assert "placeholder" in reader.html_path(run_id, 0).read_text()
    assert reader.problems(run_id, deep=True) == []
    assert [p.step for p in reader.metric_history(run_id, "attrib/saliency/topk_mass")] == [0, 10]


def test_todays_writer_writes_the_same_v1_files(v1_run, tmp_path):
    client, old_run = v1_run
    mod = _fixture_module()
    run_id = client.create_run(client.get_run(old_run).info.experiment_id).info.run_id
    mod.write_steps(AttributionWriter(client, run_id, spool_dir=tmp_path / "spool", keep_float32=True))
    old_root = Path(client.get_run(old_run).info.artifact_uri) / "attribution"
    new_root = Path(client.get_run(run_id).info.artifact_uri) / "attribution"

    old_files = sorted(p.relative_to(old_root).as_posix() for p in old_root.rglob("*") if p.is_file())
    new_files = sorted(p.relative_to(new_root).as_posix() for p in new_root.rglob("*") if p.is_file())
    assert new_files == old_files

    old_man = json.loads((old_root / L.MANIFEST_NAME).read_text())
    new_man = json.loads((new_root / L.MANIFEST_NAME).read_text())
    assert _strip(new_man) == _strip(old_man)
    assert set(new_man) - set(old_man) <= {"kinds", "integrity"}  # the additions: per-kind entry, hashes
    assert new_man.get("kinds", {"token_matrix": {"version": 1}}) == {"token_matrix": {"version": 1}}

    for rel in old_files:
        if rel.endswith("summary.json"):
            assert json.loads((new_root / rel).read_text()) == json.loads((old_root / rel).read_text()), rel
        elif rel.endswith(".parquet"):
            old_t, new_t = pq.read_table(old_root / rel), pq.read_table(new_root / rel)
            assert new_t.schema == old_t.schema, rel
            assert repr(new_t.to_pylist()) == repr(old_t.to_pylist()), rel  # repr: NaN cells compare equal
            assert new_t.schema.metadata == old_t.schema.metadata, rel

    old_rec = json.loads((FIXTURE / "run.json").read_text())
    new_rec = mod.run_record(client, run_id)
    assert new_rec["tags"] == old_rec["tags"]
    assert set(new_rec["metrics"]) == set(old_rec["metrics"])
    for key, pts in old_rec["metrics"].items():
        assert [s for s, _ in new_rec["metrics"][key]] == [s for s, _ in pts], key
        assert [v for _, v in new_rec["metrics"][key]] == pytest.approx([v for _, v in pts], rel=1e-6), key


def test_todays_writer_appends_to_a_v1_run(v1_run, tmp_path):
    client, run_id = v1_run
    mod = _fixture_module()
    w = AttributionWriter(client, run_id, spool_dir=tmp_path / "spool")
    w.log_probe_set(mod.PROBE)  # same probe set: accepted
    summary = w.log_step(20, mod.results("saliency", 20, "model"))
    assert summary.logged
    # drift against the old writer's steps, read back from its Parquet files
    assert np.isfinite(summary.metrics["saliency"]["drift_prev_spearman"])
    assert np.isfinite(summary.metrics["saliency"]["drift_first_js"])
    reader = AttributionReader(client=client)
    assert reader.steps(run_id) == [0, 10, 20]
    man = reader.manifest(run_id)
    assert man["schema_version"] == 1 and man["steps"][0]["files"]["org/ft"]["saliency"].endswith(".parquet")
    assert reader.summary(run_id, 20)["models"]["model"]["methods"]["saliency"]["drift"] == {
        "prev_step": 10, "prev_n_samples": 3, "first_step": 0, "first_n_samples": 3}
    assert reader.problems(run_id, deep=True) == []
