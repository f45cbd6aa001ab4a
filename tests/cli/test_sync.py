"""``attrib-mlops sync``: uploads what a training left in its spool; bad input is one line and exit 2.

The spool is filled by a background writer whose tracking server is a closed port on
127.0.0.1 (nothing to mock); the upload goes to a real SQLite store. The end-to-end case
with a real ``mlflow server`` stopped at the end of training is in
tests/tracking/test_server_outage.py.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from attrib_mlops.cli import app
from attrib_mlops.result import AttributionResult, future_mask
from attrib_mlops.tracking import AttributionReader, AttributionWriter


def results(step: int) -> list[AttributionResult]:
    out = []
    for i in range(2):
        m = np.random.default_rng(10 * step + i).random((5, 2)).astype(np.float32)
        m[future_mask(5, 2, 3)] = np.nan
        toks = [f"t{k}" for k in range(5)]
        out.append(AttributionResult(m, toks, toks[3:], "saliency", "native", n_prompt=3, sample_id=f"s{i}"))
    return out


@pytest.fixture
def spooled(tmp_path, monkeypatch):
    """(sqlite uri, run id, spool dir) with steps 1 and 2 spooled, not uploaded."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("s", str(tmp_path / "art"))).info.run_id
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}"
    w = AttributionWriter(MlflowClient(down), run_id, spool_dir=tmp_path / "spool", background="thread",
                          flush_timeout_s=0.5)
    for step in (1, 2):
        w.log_step(step, results(step))
    assert w.close() is False
    w._uploader._thread.join(30)
    return uri, run_id, tmp_path / "spool"


def test_sync_uploads_the_spool_once(spooled):
    uri, run_id, spool = spooled
    out = CliRunner().invoke(app, ["sync", str(spool), "--tracking-uri", uri])
    assert out.exit_code == 0, out.output
    assert f"run {run_id}: uploaded 2 spooled step entries" in out.output
    reader = AttributionReader(uri)
    assert reader.steps(run_id) == [1, 2] and reader.problems(run_id, deep=True) == []
    hist = MlflowClient(uri).get_metric_history(run_id, "attrib/saliency/topk_mass")
    assert sorted(m.step for m in hist) == [1, 2]
    again = CliRunner().invoke(app, ["sync", str(spool), "--tracking-uri", uri])
    assert again.exit_code == 0 and "nothing to upload" in again.output


@pytest.mark.parametrize("case", ["no_dir", "unknown_run", "run_not_in_store", "server_down"])
def test_sync_bad_input_is_one_line_exit_2(spooled, tmp_path, case):
    uri, run_id, spool = spooled
    args = {
        "no_dir": ["sync", str(tmp_path / "nope"), "--tracking-uri", uri],
        "unknown_run": ["sync", str(spool), "--run-id", "0123abc", "--tracking-uri", uri],
        "run_not_in_store": ["sync", str(spool), "--tracking-uri", f"sqlite:///{tmp_path}/other.db"],
        "server_down": ["sync", str(spool), "--tracking-uri", "http://127.0.0.1:9"],
    }[case]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 2, out.output
    lines = [ln for ln in out.output.splitlines() if ln.strip() and " INFO mlflow" not in ln]  # MLflow's own
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in out.output
    assert {"no_dir": "does not exist", "unknown_run": "nothing spooled for run 0123abc",
            "run_not_in_store": "is not in the tracking store", "server_down": "unreachable"}[case] in lines[0]
