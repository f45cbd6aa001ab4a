"""Corrupt, foreign, missing and newer-schema artifacts: clear errors, the rest stays readable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attrib_mlops.errors import AttribError, InputError
from attrib_mlops.result import AttributionResult, future_mask
from attrib_mlops.tracking import (
    AttributionReader,
    AttributionWriter,
    SchemaVersionError,
    TrackingError,
    read_results,
    read_sample,
    safe_name,
    write_results,
)
from attrib_mlops.tracking import layout as L


def make_results(step, n=3, method="saliency") -> list[AttributionResult]:
    out = []
    for i in range(n):
        rng = np.random.default_rng(100 * step + i)
        m = rng.random((6, 2)).astype(np.float32)
        m[future_mask(6, 2, 4)] = np.nan
        toks = [f"w{k}" for k in range(6)]
        out.append(AttributionResult(m, toks, toks[4:], method, "native", n_prompt=4, sample_id=f"s{i}"))
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mlflow.tracking import MlflowClient

    d = tmp_path_factory.mktemp("mlflow")
    client = MlflowClient(tracking_uri=f"sqlite:///{d}/mlflow.db")
    exp = client.create_experiment("errors", artifact_location=str(d / "artifacts"))
    return client, exp


@pytest.fixture
def written(store, tmp_path):
    """A run with steps 1, 2, 3 of method saliency; returns (client, run_id, artifact dir)."""
    client, exp = store
    run_id = client.create_run(exp).info.run_id
    w = AttributionWriter(client, run_id, spool_dir=tmp_path / "spool")
    for step in (1, 2, 3):
        assert w.log_step(step, make_results(step)).logged
    return client, run_id, Path(client.get_run(run_id).info.artifact_uri)


def parquet_of(art: Path, step: int) -> Path:
    return art / "attribution" / "steps" / f"{step:010d}" / "model" / "saliency.parquet"


def without_hashes(art: Path) -> None:
    """Drop the content hashes from the manifest, as written before they existed: the tests below then
    reach the format's own checks (with hashes, any change is an IntegrityError: tests/tracking/test_integrity.py)."""
    mpath = art / "attribution" / "manifest.json"
    man = json.loads(mpath.read_text())
    for s in man["steps"]:
        s.pop("sha256", None)
    mpath.write_text(json.dumps(man))


def test_corrupt_parquet_names_the_file_and_the_rest_stays_readable(written):
    client, run_id, art = written
    without_hashes(art)
    parquet_of(art, 2).write_bytes(b"PAR1 this is not parquet at all")
    reader = AttributionReader(client=client)
    with pytest.raises(TrackingError) as e:
        reader.load(run_id, 2, "model", "saliency")
    msg = str(e.value)
    assert run_id in msg and "attribution/steps/0000000002/model/saliency.parquet" in msg
    assert "not a readable Parquet file" in msg
    with pytest.raises(TrackingError, match="0000000002/model/saliency.parquet"):
        reader.load_sample(run_id, 2, "model", "saliency", "s0")
    assert reader.steps(run_id) == [1, 2, 3]
    assert len(reader.load(run_id, 3)) == 3
    assert any(r.run_id == run_id for r in reader.list_runs())
    problems = AttributionReader(client=client).problems(run_id, deep=True)
    assert len(problems) == 1 and problems[0].startswith("attribution/steps/0000000002/model/saliency.parquet: ")


def test_foreign_parquet_is_rejected(written):
    client, run_id, art = written
    without_hashes(art)
    pq.write_table(pa.table({"x": [1, 2]}), parquet_of(art, 1))
    with pytest.raises(TrackingError, match="not an attrib-mlops results file"):
        AttributionReader(client=client).load(run_id, 1)


def test_missing_file_is_a_problem_not_a_crash(written):
    client, run_id, art = written
    parquet_of(art, 3).unlink()
    (art / "attribution" / "steps" / f"{3:010d}" / "view.html").unlink()
    reader = AttributionReader(client=client)
    assert reader.steps(run_id) == [1, 2, 3]
    problems = reader.problems(run_id)
    assert problems == [
        "attribution/steps/0000000003/model/saliency.parquet: listed in the manifest but missing from the "
        "artifact store",
        "attribution/steps/0000000003/view.html: listed in the manifest but missing from the artifact store",
    ]
    with pytest.raises(TrackingError, match="0000000003/model/saliency.parquet: file not found"):
        reader.load(run_id, 3)


def test_newer_manifest_schema_raises_schema_version_error(written, tmp_path):
    client, run_id, art = written
    mpath = art / "attribution" / "manifest.json"
    man = json.loads(mpath.read_text())
    man["schema_version"] = L.SCHEMA_VERSION + 1
    mpath.write_text(json.dumps(man))
    reader = AttributionReader(client=client)
    with pytest.raises(SchemaVersionError) as e:
        reader.steps(run_id)
    assert str(e.value) == (f"run {run_id} was written with schema v2; this reader understands up to v1; "
                            "upgrade attrib-mlops")
    assert isinstance(e.value, TrackingError) and isinstance(e.value, AttribError)
    # the run is still listed (from tags), and a writer refuses to overwrite the newer manifest
    assert any(r.run_id == run_id for r in reader.list_runs())
    with pytest.raises(SchemaVersionError):
        AttributionWriter(client, run_id, spool_dir=tmp_path / "sp2").log_step(4, make_results(4))


def test_newer_parquet_schema_raises(tmp_path):
    p = write_results(make_results(1), tmp_path / "x.parquet")
    t = pq.read_table(p)
    meta = dict(t.schema.metadata)
    meta[b"attrib_mlops.schema_version"] = b"7"
    pq.write_table(t.replace_schema_metadata(meta), p)
    with pytest.raises(SchemaVersionError, match="schema v7; this reader understands up to v1"):
        read_results(p)


def test_corrupt_or_foreign_manifest(written):
    client, run_id, art = written
    mpath = art / "attribution" / "manifest.json"
    mpath.write_text("{ truncated")
    reader = AttributionReader(client=client)
    with pytest.raises(TrackingError, match=r"attribution/manifest.json: not valid JSON"):
        reader.manifest(run_id)
    assert any(r.run_id == run_id for r in reader.list_runs())
    assert "manifest.json" in reader.problems(run_id)[0]
    mpath.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(TrackingError, match="not an attrib-mlops manifest"):
        reader.manifest(run_id, refresh=True)


def test_malformed_step_entry_is_skipped_and_reported(written):
    client, run_id, art = written
    mpath = art / "attribution" / "manifest.json"
    man = json.loads(mpath.read_text())
    man["steps"][1]["files"] = "garbage"
    mpath.write_text(json.dumps(man))
    reader = AttributionReader(client=client)
    assert reader.steps(run_id) == [1, 3]
    assert any("malformed step entry" in p for p in reader.problems(run_id))


def test_corrupt_summary_names_the_file(written):
    client, run_id, art = written
    without_hashes(art)
    (art / "attribution" / "steps" / f"{1:010d}" / "summary.json").write_text("nope")
    reader = AttributionReader(client=client)
    with pytest.raises(TrackingError, match="0000000001/summary.json: not valid JSON"):
        reader.summary(run_id, 1)
    assert reader.summary(run_id, 2)["models"]["model"]["methods"]["saliency"]["n_samples"] == 3


def test_run_without_attribution(store):
    client, exp = store
    run_id = client.create_run(exp).info.run_id
    reader = AttributionReader(client=client)
    assert all(r.run_id != run_id for r in reader.list_runs())
    with pytest.raises(TrackingError, match="has no attribution manifest"):
        reader.manifest(run_id)
    with pytest.raises(TrackingError, match="cannot be read"):
        reader.manifest("0" * 32)


def test_unknown_step_model_method_sample(written):
    client, run_id, _ = written
    reader = AttributionReader(client=client)
    with pytest.raises(InputError, match=r"step 9 is not \(yet\) committed.*\[1, 2, 3\]"):
        reader.load(run_id, 9)
    with pytest.raises(InputError, match="no model 'other'; it has \\['model'\\]"):
        reader.load(run_id, 1, "other")
    with pytest.raises(InputError, match="no method 'ig'; it has \\['saliency'\\]"):
        reader.load(run_id, 1, "model", "ig")
    with pytest.raises(InputError, match="unknown sample id 'zz'"):
        reader.load_sample(run_id, 1, "model", "saliency", "zz")
    with pytest.raises(InputError, match="unknown sample id"):
        reader.load(run_id, 1, sample_ids=["s0", "zz"])


def test_bad_writer_input(store, tmp_path):
    client, exp = store
    run_id = client.create_run(exp).info.run_id
    w = AttributionWriter(client, run_id, spool_dir=tmp_path)
    with pytest.raises(InputError, match="step must be an integer"):
        w.log_step(-1, make_results(1))
    with pytest.raises(InputError, match="at least one"):
        w.log_step(1, [])
    dup = make_results(1)
    dup[1].sample_id = "s0"
    with pytest.raises(InputError, match="duplicated"):
        w.log_step(1, dup)
    with pytest.raises(InputError, match="unique"):
        w.log_probe_set([{"id": "a"}, {"id": "a"}])
    with pytest.raises(InputError, match="run_id"):
        AttributionWriter(client, None)
    assert w.pending() == []


def test_different_probe_set_after_steps_is_refused(written, tmp_path):
    client, run_id, _ = written
    w = AttributionWriter(client, run_id, spool_dir=tmp_path)  # a new process: nothing known locally
    with pytest.raises(TrackingError, match="different probe set"):
        w.log_probe_set([{"id": "x", "prompt": "other", "target": "y"}])
    assert w.pending() == []


def test_read_sample_without_index_uses_row_group_statistics(tmp_path):
    rs = make_results(1, n=70)
    p = write_results(rs, tmp_path / "x.parquet", row_group_size=8)
    t = pq.read_table(p)
    meta = {k: v for k, v in t.schema.metadata.items() if k != b"attrib_mlops.index"}
    sorted_t = t.replace_schema_metadata(meta)
    pq.write_table(sorted_t, p, row_group_size=8)
    assert read_sample(p, "s42").sample_id == "s42"


def test_safe_name_rules():
    assert safe_name("saliency") == "saliency"
    assert safe_name("integrated_gradients") == "integrated_gradients"
    a, b = safe_name("Model"), safe_name("model")
    assert a != b and a.startswith("model-")  # case-insensitive file systems cannot collide
    assert safe_name("a/b") != safe_name("a_b")
    assert safe_name("../etc") .startswith("_etc-") or "/" not in safe_name("../etc")
    assert safe_name("summary.json") != "summary.json"
    assert "/" not in safe_name("x" * 300) and len(safe_name("x" * 300)) <= 89
    with pytest.raises(InputError):
        safe_name("")
