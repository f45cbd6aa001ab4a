"""`attrib-mlops run` killed and re-run (issue 9 item 5): one job is one MLflow run, never left RUNNING.

A real subprocess per attempt, real signals, a real SQLite store.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _job(tmp_path, tiny_dir, n=30):
    rng = random.Random(0)
    rows = [{"id": f"s{i}", "prompt": " ".join(f"w{rng.randrange(40)}" for _ in range(rng.randrange(3, 9))),
             "target": f" w{rng.randrange(40)}"} for i in range(n)]
    (tmp_path / "samples.json").write_text(json.dumps(rows))
    job = {"name": "sig-job", "models": [{"name": "tiny", "ref": str(tiny_dir)}],
           "methods": ["saliency", "input_x_gradient"], "samples": {"source": str(tmp_path / "samples.json")},
           "options": {"batch_size": 1}, "output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache")}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def _start(job, uri, log):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "attrib_mlops.cli", "run", str(job), "--no-progress",
                             "--tracking-uri", uri], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def _cached(tmp_path):
    d = tmp_path / "cache" / "results"
    return sum(1 for _ in d.rglob("*.json")) if d.exists() else 0


def _kill_midway(proc, tmp_path, sig, log):
    """Wait until some (not all) results are cached, then send ``sig``."""
    start, before = time.time(), _cached(tmp_path)
    while _cached(tmp_path) <= before + 1:
        assert proc.poll() is None, f"the job ended before it could be killed:\n{log.read_text()}"
        assert time.time() - start < 240, "no progress"
        time.sleep(0.05)
    proc.send_signal(sig)
    return proc.wait(timeout=120)


def _runs(client):
    exp = client.get_experiment_by_name("sig-job")
    return client.search_runs([exp.experiment_id]) if exp else []


def test_sigterm_kills_cleanly_and_reruns_continue_the_same_run(tmp_path, tiny_dir):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    job = _job(tmp_path, tiny_dir)
    client = MlflowClient(tracking_uri=uri)

    log1 = tmp_path / "run1.log"
    with open(log1, "w") as f:
        rc = _kill_midway(_start(job, uri, f), tmp_path, signal.SIGTERM, log1)
    assert rc == 130, log1.read_text()  # handled like Ctrl-C
    assert "Traceback" not in log1.read_text() and "interrupted" in log1.read_text()
    (run,) = _runs(client)
    assert run.info.status == "KILLED"
    n1 = _cached(tmp_path)
    assert 0 < n1 < 60

    log2 = tmp_path / "run2.log"
    with open(log2, "w") as f:
        rc = _kill_midway(_start(job, uri, f), tmp_path, signal.SIGKILL, log2)
    assert rc == -signal.SIGKILL
    (again,) = _runs(client)  # the same run was continued, and SIGKILL left it RUNNING
    assert again.info.run_id == run.info.run_id and again.info.status == "RUNNING"
    assert _cached(tmp_path) > n1  # it resumed from the cache, then computed more

    log3 = tmp_path / "run3.log"
    with open(log3, "w") as f:
        rc = _start(job, uri, f).wait(timeout=600)
    assert rc == 0, log3.read_text()
    (final,) = _runs(client)  # the stale RUNNING run was adopted: still one run for the job
    assert final.info.run_id == run.info.run_id and final.info.status == "FINISHED"
    assert _cached(tmp_path) == 60
    metrics = client.get_run(run.info.run_id).data.metrics
    assert metrics
    for name in metrics:  # every metric was logged once, at step 0: nothing duplicated by the re-runs
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [0], name


def test_stale_running_runs_of_the_same_job_are_marked_killed(tmp_path, tiny_dir):
    from typer.testing import CliRunner

    from attrib_mlops.cli import app
    from attrib_mlops.jobs import load_job
    from attrib_mlops.samples import ProbeSet
    from attrib_mlops.tracking.job_sink import JOB_KEY_TAG, job_run_key

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    job = _job(tmp_path, tiny_dir, n=4)
    spec = load_job(job)
    key = job_run_key(spec.to_dict(), ProbeSet.from_spec(spec.samples).fingerprint)
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("sig-job", artifact_location=str(tmp_path / "art"))
    older = client.create_run(exp, tags={JOB_KEY_TAG: key}).info.run_id
    time.sleep(0.01)
    newer = client.create_run(exp, tags={JOB_KEY_TAG: key}).info.run_id
    other = client.create_run(exp, tags={JOB_KEY_TAG: "another job"}).info.run_id
    res = CliRunner().invoke(app, ["run", str(job), "--no-progress", "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    assert newer in res.output.replace("\n", "")
    status = {r.info.run_id: r.info.status for r in _runs(client)}
    assert status == {older: "KILLED", newer: "FINISHED", other: "RUNNING"}
