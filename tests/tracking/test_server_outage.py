"""A real `mlflow server` on 127.0.0.1 is stopped mid-training and started again.

Training goes on through the outage; the steps that could not be logged are
kept locally and uploaded at the next successful log; nothing is lost and
nothing is duplicated.
"""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from attrib_mlops.callbacks import AttributionMonitor
from attrib_mlops.tracking import AttributionReader

pytestmark = pytest.mark.server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_health(port: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError as e:
            last = e
        time.sleep(0.2)
    raise RuntimeError(f"mlflow server on port {port} did not become healthy: {last}")


class Server:
    def __init__(self, root, port):
        self.root, self.port, self.proc = root, port, None

    def start(self):
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{self.root}/server.db",
            "--artifacts-destination", str(self.root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]
        self.log = open(self.root / f"server-{time.time_ns()}.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_health(self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=30)
        self.log.close()
        # the port is closed once the server is gone
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", self.port)) != 0


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    srv = Server(tmp_path, _free_port())
    srv.start()
    yield srv
    srv.stop() if srv.proc and srv.proc.poll() is None else None


def test_training_survives_server_outage(server, tiny, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"http://127.0.0.1:{server.port}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("outage")
    run_id = client.create_run(exp).info.run_id
    model, tok = tiny
    model = copy.deepcopy(model)
    probe = [{"id": "a", "prompt": "w1 w2 w3", "target": " w4"}, {"id": "b", "prompt": "w5 w6", "target": " w7 w8"}]
    mon = AttributionMonitor(probe, tok, ["saliency"], tracking_uri=uri, run_id=run_id,
                             spool_dir=tmp_path / "spool", flush_timeout_s=120)  # the outage is mid-training here
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ids = torch.randint(4, 40, (4, 8), generator=torch.Generator().manual_seed(0))
    losses = []
    for step in range(1, 7):
        model.train()
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step == 3:
            server.stop()  # outage: steps 4 and 5 cannot reach the server
        if step == 6:
            server.start()  # back: step 6 logs and uploads what was kept
        if step in (2, 4, 5, 6):
            assert mon.log(model, step) is True  # training is never interrupted
            if step in (4, 5):
                assert list((tmp_path / "spool" / run_id).glob("*")), "the step must be kept locally"
    mon.close()
    assert len(losses) == 6 and all(l == l for l in losses)
    reader = AttributionReader(uri)
    assert reader.steps(run_id) == [2, 4, 5, 6]
    for step in (2, 4, 5, 6):
        res = reader.load(run_id, step, method="saliency")
        assert [r.sample_id for r in res] == ["a", "b"]
    hist = client.get_metric_history(run_id, "attrib/saliency/mean_probability")
    assert sorted(m.step for m in hist) == [2, 4, 5, 6]  # no duplicates
    # issue 9 item 8: every metric of a spooled step arrives exactly once, the cost included
    cost = client.get_metric_history(run_id, "attrib/cost_seconds")
    assert sorted(m.step for m in cost) == [2, 4, 5, 6]
    assert all(m.value > 0 for m in cost)
    logged = client.get_run(run_id).data.metrics
    for key in logged:  # no metric twice at a step (drift metrics start at the second step)
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert len(steps) == len(set(steps)) and set(steps) <= {2, 4, 5, 6}, key
    leftover = [p for p in (tmp_path / "spool" / run_id).rglob("entry.json")]
    assert leftover == [], "the spool is empty once everything is uploaded"


def test_server_down_at_start(tmp_path, tiny, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    srv = Server(tmp_path, _free_port())
    uri = f"http://127.0.0.1:{srv.port}"
    model, tok = tiny
    probe = [{"id": "a", "prompt": "w1 w2 w3", "target": " w4"}]
    mon = AttributionMonitor(probe, tok, ["attention"], tracking_uri=uri, experiment_name="late",
                             spool_dir=tmp_path / "spool", flush_timeout_s=120)  # not about the bound
    assert mon.log(model, 1) is True  # nothing to talk to: kept, training goes on
    assert mon.run_id is None
    srv.start()
    try:
        assert mon.log(model, 2) is True
        mon.close()
        assert AttributionReader(uri).steps(mon.run_id) == [1, 2]
    finally:
        srv.stop()


def test_train_end_is_bounded_then_sync_uploads_everything_once(server, tiny, tmp_path, caplog):
    """Issue 9 item 12: the server is down at the end of training: close() returns within flush_timeout_s
    (+ slack) with ONE log line naming ``attrib-mlops sync``; once the server is back, the command uploads
    every spooled step exactly once (and a second call finds nothing to do)."""
    import logging

    from mlflow.tracking import MlflowClient

    uri = f"http://127.0.0.1:{server.port}"
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("end")).info.run_id
    model, tok = tiny
    probe = [{"id": "a", "prompt": "w1 w2 w3", "target": " w4"}]
    mon = AttributionMonitor(probe, tok, ["saliency"], tracking_uri=uri, run_id=run_id,
                             spool_dir=tmp_path / "spool", flush_timeout_s=3)
    assert mon.log(model, 1) is True
    assert mon._writer.flush(timeout=120), "step 1 is uploaded while the server is up"
    server.stop()
    for step in (2, 3):
        assert mon.log(model, step) is True  # staged; the upload fails in the background
    caplog.clear()
    t0 = time.monotonic()
    with caplog.at_level(logging.INFO, logger="attrib_mlops"):
        mon.close()
    assert time.monotonic() - t0 < 3 + 10  # the bound, plus slack for a loaded machine (was ~58 s)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "attrib-mlops sync" in lines[0] and run_id in lines[0], lines
    mon._writer._uploader._thread.join(60)  # its worker process has ended: only sync uploads from now on
    spooled = sorted(p.parent.parent.name for p in (tmp_path / "spool" / run_id).rglob("entry.json"))
    assert spooled == ["0000000002", "0000000003"]

    server.start()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "attrib_mlops.cli", "sync", str(tmp_path / "spool"), "--run-id", run_id,
           "--tracking-uri", uri]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "uploaded 2 spooled step entries" in done.stdout
    assert AttributionReader(uri).steps(run_id) == [1, 2, 3]
    for key in ("attrib/saliency/mean_probability", "attrib/cost_seconds"):
        assert sorted(m.step for m in client.get_metric_history(run_id, key)) == [1, 2, 3], key
    again = subprocess.run(cmd[:5], capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and "nothing to upload" in again.stdout


def test_close_retries_while_the_server_comes_back(server, tmp_path):
    """The server is down when training ends and back a few seconds later: close() keeps trying
    within its window instead of giving up after the first failed pass."""
    import threading

    import numpy as np
    from mlflow.tracking import MlflowClient

    from attrib_mlops.result import AttributionResult
    from attrib_mlops.tracking import AttributionWriter

    uri = f"http://127.0.0.1:{server.port}"
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("back")).info.run_id
    w = AttributionWriter(client, run_id, spool_dir=tmp_path / "spool", flush_timeout_s=60, background=True)
    server.stop()
    res = [AttributionResult(np.ones((4, 1), np.float32), ["w1", "w2", "w3", "w4"], ["w4"], "saliency", "native",
                             n_prompt=3, sample_id="a")]
    assert w.log_step(1, res).queued
    back = threading.Thread(target=server.start)  # healthy again after a few seconds
    back.start()
    try:
        assert w.close() is True and w.pending() == []
    finally:
        back.join()
    assert AttributionReader(uri).steps(run_id) == [1]
