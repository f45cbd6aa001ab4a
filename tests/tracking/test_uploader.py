"""Issue 9 item 13: the background uploader. A step is staged in the spool first, committed by the
worker in order and exactly once; what the worker could not upload survives and is committed later
(its deferred view rendered from the staged files). Real SQLite stores; the unreachable server is a
closed port on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import time

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from attrib_mlops.result import AttributionResult, future_mask
from attrib_mlops.tracking import AttributionReader, AttributionWriter
from attrib_mlops.tracking.integrity import sha256_file


def make_results(step, n=3, method="saliency") -> list[AttributionResult]:
    out = []
    for i in range(n):
        m = np.random.default_rng(100 * step + i).random((6, 2)).astype(np.float32)
        m[future_mask(6, 2, 4)] = np.nan
        toks = [f"w{k}" for k in range(6)]
        out.append(AttributionResult(m, toks, toks[4:], method, "native", n_prompt=4, sample_id=f"s{i}"))
    return out


def closed_port_uri() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.create_experiment("bg", artifact_location=str(tmp_path / "artifacts"))
    return client, client.create_run(exp).info.run_id


def test_background_steps_are_committed_in_order_exactly_once(store, tmp_path):
    client, run_id = store
    w = AttributionWriter(client, run_id, spool_dir=tmp_path / "spool", background=True)
    for step in (1, 2, 3):
        s = w.log_step(step, make_results(step), extra_metrics={"attrib/cost_seconds": 0.5 + step})
        assert s.queued and not s.logged and s.spool_path is not None  # staged, not committed yet
    assert w.close(timeout=120) is True and w.pending() == []  # generous: the CI machine may be loaded
    up = w._uploader  # the worker reports its CPU time (start-up imports, then the passes) for the benchmark
    assert up.started >= 1 and 0 < up.startup_cpu_s <= up.worker_cpu_s
    reader = AttributionReader(client=client)
    assert reader.steps(run_id) == [1, 2, 3]
    assert reader.problems(run_id, deep=True) == []
    for key in ("attrib/saliency/topk_mass", "attrib/cost_seconds", "attrib/saliency/drift_prev_spearman"):
        assert sorted(m.step for m in client.get_metric_history(run_id, key)) == ([2, 3] if "drift" in key
                                                                                  else [1, 2, 3]), key
    art = client.get_run(run_id).info.artifact_uri
    view = reader.html_path(run_id, 2)  # rendered by the worker, hashed with the rest
    assert str(view).startswith(art) and "s1" in view.read_text()
    assert reader.manifest(run_id)["steps"][1]["sha256"]["steps/0000000002/view.html"] == sha256_file(view)


def test_unuploaded_steps_stay_staged_and_close_is_bounded(store, tmp_path, caplog):
    client, run_id = store
    down = MlflowClient(tracking_uri=closed_port_uri())
    w = AttributionWriter(down, run_id, spool_dir=tmp_path / "spool", background=True, flush_timeout_s=2)
    for step in (1, 2):
        assert w.log_step(step, make_results(step)).queued
    caplog.clear()
    t0 = time.monotonic()
    with caplog.at_level(logging.INFO, logger="attrib_mlops"):
        assert w.close() is False
    assert time.monotonic() - t0 < 2 + 5
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "attrib-mlops sync" in lines[0] and str(tmp_path / "spool") in lines[0]
    entries = w.pending()
    assert [e.parent.name for e in entries if e.name != "probe.json"] == ["0000000001", "0000000002"]
    for e in entries:
        if e.is_dir():  # the crash-safe copy: results and metrics; the view is rendered before the upload
            assert (e / "entry.json").is_file() and (e / "files" / "model" / "saliency.parquet").is_file()
            assert not (e / "files" / "view.html").exists()
    # the next writer on the run (here: a plain one on the real store) uploads them, view included
    w2 = AttributionWriter(client, run_id, spool_dir=tmp_path / "spool")
    assert w2.flush() is True and w2.pending() == []
    reader = AttributionReader(client=client)
    assert reader.steps(run_id) == [1, 2] and reader.problems(run_id, deep=True) == []
    assert "s2" in reader.html_path(run_id, 1).read_text()
    assert sorted(m.step for m in client.get_metric_history(run_id, "attrib/saliency/topk_mass")) == [1, 2]


def test_bad_flush_timeout_is_refused(store, tmp_path):
    from attrib_mlops.errors import InputError

    client, run_id = store
    with pytest.raises(InputError, match="flush_timeout_s"):
        AttributionWriter(client, run_id, spool_dir=tmp_path / "spool", flush_timeout_s=-1)


def test_close_commits_itself_when_the_worker_is_starved(store, tmp_path):
    """A worker that gets no CPU (here: stopped with SIGSTOP, as a busy machine starves a nice-19
    process) does not cost the run its steps: after one window without progress, close() ends
    it and commits from the training process, every metric once."""
    import os
    import signal

    client, run_id = store
    w = AttributionWriter(client, run_id, spool_dir=tmp_path / "spool", background=True)
    w.log_step(1, make_results(1), extra_metrics={"attrib/cost_seconds": 1.0})  # starts the worker
    deadline = time.monotonic() + 60
    while (child := w._uploader._child) is None:
        assert time.monotonic() < deadline, "the upload worker was not started"
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGSTOP)
    try:
        w.log_step(2, make_results(2), extra_metrics={"attrib/cost_seconds": 1.0})
        t0 = time.monotonic()
        assert w.close(timeout=10) is True and w.pending() == []  # 10 s: the default window
        assert time.monotonic() - t0 < 10 + 60  # one window for the worker, then the commit itself
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL  # ended by close(), not left stopped
    reader = AttributionReader(client=client)
    assert reader.steps(run_id) == [1, 2] and reader.problems(run_id, deep=True) == []
    assert sorted(m.step for m in client.get_metric_history(run_id, "attrib/cost_seconds")) == [1, 2]
