"""Issue 9 item 9: a byte overwritten in a stored Parquet page is a named error, not wrong numbers.

One real SQLite-store run (steps 1, 2, 3); one byte of step 2's Parquet file is
overwritten at a place where the Parquet decoder still returns numbers (different
ones). The reader, ``attrib-mlops check`` and the dashboard's store must name the
file; a manifest without hashes (written before them) must still read, silently.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from attrib_mlops.result import AttributionResult, future_mask
from attrib_mlops.tracking import AttributionReader, AttributionWriter, read_results
from attrib_mlops.tracking.errors import IntegrityError
from attrib_mlops.tracking.integrity import HASH_KEY, INTEGRITY_KEY, sha256_file

ROOT = Path(__file__).resolve().parents[2]
REL = "attribution/steps/0000000002/model/saliency.parquet"


def make_results(step, n=3, method="saliency") -> list[AttributionResult]:
    out = []
    for i in range(n):
        rng = np.random.default_rng(100 * step + i)
        m = rng.random((6, 2)).astype(np.float32)
        m[future_mask(6, 2, 4)] = np.nan
        toks = [f"w{k}" for k in range(6)]
        out.append(AttributionResult(m, toks, toks[4:], method, "native", n_prompt=4, sample_id=f"s{i}"))
    return out


@pytest.fixture
def run(tmp_path):
    """(tracking uri, client, run_id, artifact dir) of a run with steps 1, 2, 3 of saliency."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("integrity", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(exp).info.run_id
    w = AttributionWriter(client, run_id, spool_dir=tmp_path / "spool")
    for step in (1, 2, 3):
        assert w.log_step(step, make_results(step)).logged
    return uri, client, run_id, Path(client.get_run(run_id).info.artifact_uri)


def overwrite_one_byte_silently(path: Path) -> int:
    """Overwrite one byte inside the matrix column's pages such that Parquet still decodes (other numbers)."""
    good = read_results(path)
    data = path.read_bytes()
    col = next(c for c in (pq.ParquetFile(path).metadata.row_group(0).column(i) for i in range(13))
               if c.path_in_schema.startswith("matrix.list"))
    start = col.dictionary_page_offset or col.data_page_offset
    for off in range(start, start + col.total_compressed_size):
        bad = bytearray(data)
        bad[off] ^= 0x10
        path.write_bytes(bytes(bad))
        try:
            got = read_results(path)
        except Exception:  # noqa: BLE001 - this byte breaks decoding: try the next one
            continue
        if any(not np.array_equal(g.matrix, w.matrix, equal_nan=True) for g, w in zip(got, good)):
            return off  # the decoder returns numbers, wrong ones: what the hash must catch
    path.write_bytes(data)
    raise AssertionError("no byte of the matrix pages decodes to other numbers")


def test_writer_records_a_hash_per_file(run):
    _, client, run_id, art = run
    man = json.loads((art / "attribution" / "manifest.json").read_text())
    assert man[INTEGRITY_KEY] == {HASH_KEY: 1}
    for s in man["steps"]:
        step_dir = f"steps/{int(s['step']):010d}"
        assert sorted(s[HASH_KEY]) == sorted([f"{step_dir}/model/saliency.parquet", f"{step_dir}/summary.json",
                                              f"{step_dir}/view.html"])
        for rel, digest in s[HASH_KEY].items():
            assert sha256_file(art / "attribution" / rel) == digest


def test_one_byte_overwritten_in_a_parquet_page_is_a_named_error(run):
    uri, client, run_id, art = run
    overwrite_one_byte_silently(art / REL)
    reader = AttributionReader(client=client)
    with pytest.raises(IntegrityError) as e:
        reader.load(run_id, 2, "model", "saliency")
    msg = str(e.value)
    assert run_id in msg and REL in msg and "SHA-256" in msg and "\n" not in msg
    with pytest.raises(IntegrityError, match="0000000002/model/saliency.parquet"):
        reader.load_sample(run_id, 2, "model", "saliency", "s1")
    assert len(reader.load(run_id, 1)) == 3 and len(reader.load(run_id, 3)) == 3  # the rest stays readable
    problems = AttributionReader(client=client).problems(run_id, deep=True)
    assert len(problems) == 1 and problems[0].startswith(f"{REL}: content does not match")


def test_check_cli_exits_2_naming_the_corrupt_file(run):
    uri, client, run_id, art = run
    overwrite_one_byte_silently(art / REL)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "attrib_mlops.cli", "check", "-b", f"runs:/{run_id}@1",
                           "-c", f"runs:/{run_id}@2", "--tracking-uri", uri, "--no-log"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert REL in proc.stderr and "SHA-256" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_dashboard_store_shows_the_error_as_text(run):
    from panel_app.store import DashboardStore

    uri, client, run_id, art = run
    overwrite_one_byte_silently(art / REL)
    store = DashboardStore(uri)
    got = store.sample(run_id, 2, "model", "saliency", "s0")
    assert got.value is None and REL in got.error and "SHA-256" in got.error
    assert store.sample(run_id, 3, "model", "saliency", "s0").ok
    store.close()


def test_manifest_without_hashes_reads_fine_and_silently(run, caplog):
    _, client, run_id, art = run
    mpath = art / "attribution" / "manifest.json"
    man = json.loads(mpath.read_text())
    man.pop(INTEGRITY_KEY)
    for s in man["steps"]:
        s.pop(HASH_KEY)
    mpath.write_text(json.dumps(man))
    with caplog.at_level(logging.DEBUG, logger="attrib_mlops"):
        reader = AttributionReader(client=client)
        for step in (1, 2, 3):
            got = reader.load(run_id, step)
            np.testing.assert_allclose(got[0].matrix, make_results(step)[0].matrix, rtol=2e-3, equal_nan=True)
            assert reader.summary(run_id, step)["step"] == step
            assert reader.html_path(run_id, step).is_file()
        assert reader.problems(run_id, deep=True) == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_rewritten_summary_gets_its_new_hash(run):
    _, client, run_id, art = run
    w = AttributionWriter(client, run_id, spool_dir=art.parent / "spool2")
    assert w.log_step(2, make_results(2, method="attention")).logged  # step 2 gets a second method
    man = AttributionReader(client=client).manifest(run_id)
    rec = next(s for s in man["steps"] if s["step"] == 2)
    assert rec["revision"] == 2
    assert rec[HASH_KEY]["steps/0000000002/summary.json"] == sha256_file(
        art / "attribution/steps/0000000002/summary.json")
    reader = AttributionReader(client=client)
    assert set(reader.summary(run_id, 2)["models"]["model"]["methods"]) == {"saliency", "attention"}
    assert reader.problems(run_id, deep=True) == []
