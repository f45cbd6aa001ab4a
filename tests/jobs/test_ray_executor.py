"""The Ray executor on a real Ray cluster (``ray start --head`` on 127.0.0.1, see ``ray_cluster`` in conftest).

The reference is the local executor on the same job: results must be identical cell for
cell (the local run uses one torch thread, as each Ray actor does), must land in the same
content-keyed cache, and must survive a worker process killed mid-job.
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

import numpy as np
import pytest

from attrib_mlops.jobs import LocalFolderSink, ResultCache, load_local_results, run_job

REPO = Path(__file__).resolve().parents[2]
METHODS = ["saliency", "integrated_gradients"]


def _write_samples(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with path.open("w") as f:
        for i in range(n):
            prompt = " ".join(f"w{rng.randrange(40)}" for _ in range(rng.randint(3, 9)))
            target = " " + " ".join(f"w{rng.randrange(40)}" for _ in range(rng.randint(1, 3)))
            f.write(json.dumps({"id": f"s{i}", "prompt": prompt, "target": target}) + "\n")
    return path


def _spec(tiny_dir: Path, samples: Path, cache: Path, **options) -> dict:
    return {"name": "ray-check", "models": [{"name": "tiny", "ref": str(tiny_dir)}], "methods": METHODS,
            "samples": {"source": str(samples)}, "options": {"batch_size": 3, "n_steps": 16, **options},
            "cache_dir": str(cache)}


def _assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert [r.sample_id for r in a[key]] == [r.sample_id for r in b[key]]
        for x, y in zip(a[key], b[key]):
            assert x.source_tokens == y.source_tokens and x.target_tokens == y.target_tokens
            np.testing.assert_array_equal(x.matrix, y.matrix, err_msg=f"{key} {x.sample_id}")
            assert sorted(x.step_scores) == sorted(y.step_scores)
            for k in x.step_scores:
                np.testing.assert_array_equal(x.step_scores[k], y.step_scores[k])


@pytest.fixture(scope="module")
def job_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-job")
    return root, _write_samples(root / "samples.jsonl", 12)


@pytest.fixture(scope="module")
def local_reference(tiny_dir, job_files):
    """The job on the local executor, one torch thread (as a Ray actor with <= 1 CPU has)."""
    import torch

    root, samples = job_files
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = run_job(_spec(tiny_dir, samples, root / "cache-local"), sinks=[LocalFolderSink(root / "out-local")],
                      progress=False)
    finally:
        torch.set_num_threads(threads)
    assert out.computed == 12 * len(METHODS)
    return load_local_results(root / "out-local")


@pytest.fixture(scope="module")
def executor(ray_cluster):
    """Two actors of half a CPU each on the test cluster (kept for the module: actors start once)."""
    from attrib_mlops.jobs.ray_executor import RayExecutor

    ex = RayExecutor(ray_cluster.address, workers=2, cpus_per_worker=0.5, max_restarts=2, max_task_retries=2)
    yield ex
    ex.close()


@pytest.mark.slow
def test_ray_job_is_identical_to_local_and_shares_the_cache(tiny_dir, job_files, local_reference, executor):
    root, samples = job_files
    spec = _spec(tiny_dir, samples, root / "cache-ray")
    executor.cache = ResultCache(spec["cache_dir"])
    before = {s["pid"]: s for s in executor.worker_stats()}
    out = run_job(spec, sinks=[LocalFolderSink(root / "out-ray")], progress=False, executor=executor)
    assert out.status == "FINISHED" and out.computed == 12 * len(METHODS) and out.cached == 0
    _assert_same(load_local_results(root / "out-ray"), local_reference)

    stats = executor.worker_stats()
    assert sorted(s["pid"] for s in stats) == sorted(before)  # same two processes
    assert all(s["units_done"] > 0 for s in stats), stats  # both actors got work
    assert sum(s["units_done"] for s in stats) == 2 * 4  # 4 units of 3 samples per method, none computed twice
    assert all(s["loads"] == 1 for s in stats), stats  # each actor loaded the model once for both methods
    assert all(s["models"] == [] for s in stats)  # released after the job

    # the same content-keyed cache: the local executor finds every Ray result there
    again = run_job(spec, sinks=[LocalFolderSink(root / "out-again")], progress=False)
    assert again.computed == 0 and again.cached == 12 * len(METHODS)

    # the model kind (engine auto's choice for lime/kernel_shap) comes from a worker
    from attrib_mlops.jobs.spec import ModelSpec
    from attrib_mlops.options import AttributeOptions

    executor.open(ModelSpec(name="tiny", ref=str(tiny_dir)), AttributeOptions())
    assert executor.model_kind("tiny") == "causal_lm"
    executor.release("tiny")


@pytest.mark.slow
def test_worker_killed_mid_job_loses_nothing(tiny_dir, job_files, local_reference, executor, tmp_path):
    root, samples = job_files
    spec = _spec(tiny_dir, samples, tmp_path / "cache")  # same batches as the reference: same sums
    cache = executor.cache = ResultCache(spec["cache_dir"])
    pids = executor.worker_pids()
    victim, survivor = pids
    survivor_units = {s["pid"]: s["units_done"] for s in executor.worker_stats()}[survivor]
    killed = {}

    def on_event(ev):
        if not killed and ev.progress > 0:  # the first unit is back; both actors hold units in flight
            killed["cached"] = sum(1 for _ in (tmp_path / "cache" / "results").rglob("*.json"))
            os.kill(victim, signal.SIGKILL)
            killed["at"] = ev.progress

    out = run_job(spec, sinks=[LocalFolderSink(tmp_path / "out")], progress=False, executor=executor,
                  on_event=on_event)
    assert killed and 0 < killed["at"] < 1 and killed["cached"] >= 3
    assert out.status == "FINISHED" and out.computed == 12 * len(METHODS)
    _assert_same(load_local_results(tmp_path / "out"), local_reference)
    assert all(cache.get(k) is not None for k in _keys(tmp_path / "cache"))

    stats = {s["pid"]: s for s in executor.worker_stats()}
    assert victim not in stats and survivor in stats  # Ray restarted the killed actor in a new process
    assert stats[survivor]["units_done"] > survivor_units  # the other worker kept its count: it was never restarted


@pytest.mark.slow
def test_generated_targets_on_ray_match_local(tiny_dir, job_files, executor, tmp_path):
    """targets: generate: the continuations are written on the actors, identical to the local ones."""
    import torch

    root, samples = job_files
    spec = {**_spec(tiny_dir, samples, tmp_path / "cache-ray", max_new_tokens=3), "methods": ["saliency"],
            "targets": "generate", "samples": {"source": str(samples), "limit": 4, "seed": 0}}
    executor.cache = ResultCache(spec["cache_dir"])
    run_job(spec, sinks=[LocalFolderSink(tmp_path / "ray")], progress=False, executor=executor)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_job({**spec, "cache_dir": str(tmp_path / "cache-local")}, sinks=[LocalFolderSink(tmp_path / "local")],
                progress=False)
    finally:
        torch.set_num_threads(threads)
    ray_r, local_r = load_local_results(tmp_path / "ray"), load_local_results(tmp_path / "local")
    assert [r.target for r in ray_r[("tiny", "saliency")]] == [r.target for r in local_r[("tiny", "saliency")]]
    assert all(r.info["target_source"] == "generated:tiny" for r in ray_r[("tiny", "saliency")])
    _assert_same(ray_r, local_r)


def _keys(cache_dir: Path) -> list[str]:
    return [p.stem for p in (cache_dir / "results").rglob("*.json")]


@pytest.mark.slow
def test_backfill_on_ray_matches_local(tmp_path, executor):
    from attrib_mlops.backfill import backfill
    from attrib_mlops.demo.tiny import build_tiny_model, save_tiny
    from attrib_mlops.tracking import AttributionReader

    vocab = [f"w{i}" for i in range(40)]
    for step, seed in ((10, 1), (20, 2)):
        save_tiny(*build_tiny_model(vocab, n_layer=1, n_embd=16, n_head=2, n_positions=32, seed=seed),
                  tmp_path / "ckpts" / f"checkpoint-{step}")
    probe = [{"id": f"p{i}", "prompt": f"w{i} w{i + 1} w{i + 2}", "target": f" w{i + 3}"} for i in range(4)]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    runs = {}
    for name, ex in (("ray", executor), ("local", None)):
        out = backfill(tmp_path / "ckpts", tracking_uri=uri, probe=probe, methods=["saliency"], progress=False,
                       options={"batch_size": 2}, executor=ex, spool_dir=tmp_path / f"spool-{name}")
        assert out["logged"] == [10, 20]
        runs[name] = out["run_id"]
    reader = AttributionReader(uri)
    for step in (10, 20):
        ray_r = reader.load(runs["ray"], step, "model", "saliency")
        loc_r = reader.load(runs["local"], step, "model", "saliency")
        assert [r.sample_id for r in ray_r] == [r.sample_id for r in loc_r] == [p["id"] for p in probe]
        for x, y in zip(ray_r, loc_r):
            np.testing.assert_allclose(x.matrix, y.matrix, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_cli_run_on_ray_writes_the_same_results(tiny_dir, job_files, local_reference, ray_cluster, tmp_path):
    root, samples = job_files
    job = tmp_path / "job.json"
    job.write_text(json.dumps(_spec(tiny_dir, samples, tmp_path / "cache")))
    env = ray_cluster.driver_env()
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "attrib_mlops.cli", "run", str(job), "-o", str(tmp_path / "out"), "--no-progress",
         "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--executor", "ray", "--ray-address",
         ray_cluster.address, "--ray-workers", "2", "--cpus-per-worker", "0.5"],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "24 results computed" in proc.stdout
    _assert_same(load_local_results(tmp_path / "out"), local_reference)


_PRIVATE_RAY = r"""
import json, os, sys
import psutil
from attrib_mlops.jobs.ray_executor import RayExecutor
ex = RayExecutor(workers=1, cpus_per_worker=0.5, num_cpus=1)  # no address: a private Ray in this process
pids = ex.worker_pids()
import ray
procs = [psutil.Process()] + psutil.Process().children(recursive=True)
socks = [c.laddr for p in procs for c in p.net_connections("tcp") if c.status == "LISTEN"]
listening, ports = sorted({a.ip for a in socks}), sorted({a.port for a in socks})
out = {"node_ip": ray.util.get_node_ip_address(), "listening": listening, "ports": ports, "pids": pids,
       "usage_stats": os.environ.get("RAY_USAGE_STATS_ENABLED"), "auth": os.environ.get("RAY_AUTH_MODE")}
ex.close()
def running(p):
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
_gone, alive = psutil.wait_procs(procs[1:], timeout=30)
out["after_close"] = [p.pid for p in alive if running(p)]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_without_an_address_a_private_ray_stays_on_loopback(tmp_path):
    import shutil
    import tempfile

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    ray_tmp = tempfile.mkdtemp(prefix="rayp-", dir="/tmp")  # Ray's session logs; short: socket paths are limited
    env.update(HOME=str(tmp_path), RAY_TMPDIR=ray_tmp,
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run([sys.executable, "-c", _PRIVATE_RAY], capture_output=True, text=True, env=env,
                              timeout=400)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["node_ip"] == "127.0.0.1" and len(out["pids"]) == 1
    assert out["listening"] and all(ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for ip in out["listening"]), out
    assert 8265 not in out["ports"]  # no dashboard
    assert out["usage_stats"] == "0" and out["auth"] == "token"
    assert not (tmp_path / ".ray").exists()  # the private token lives in the environment, not in ~/.ray
    assert out["after_close"] == []  # close() stopped every process it started


def test_unreachable_ray_address_fails_fast_and_writes_nothing(tiny_dir, tmp_path):
    from attrib_mlops.jobs.ray_cluster import free_port, loopback_env

    samples = _write_samples(tmp_path / "s.jsonl", 2)
    job = tmp_path / "job.json"
    job.write_text(json.dumps(_spec(tiny_dir, samples, tmp_path / "cache")))
    env = loopback_env()
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    db = tmp_path / "mlflow.db"
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    proc = subprocess.run(
        [sys.executable, "-m", "attrib_mlops.cli", "run", str(job), "-o", str(tmp_path / "out"),
         "--tracking-uri", f"sqlite:///{db}", "--executor", "ray", "--ray-address", address],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"no Ray cluster answers at {address}" in proc.stderr and "Traceback" not in proc.stderr
    assert "nothing was computed or written" in proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()
    if db.exists():  # MLflow may have created the store, but no run
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{db}")
        exps = [e.experiment_id for e in client.search_experiments()]
        assert not exps or not client.search_runs(exps)


def test_silent_ray_address_fails_within_the_timeout():
    import socket

    from attrib_mlops.jobs.ray_executor import ExecutorError, RayExecutor, import_ray

    import_ray()  # import time is not connect time
    silent = socket.socket()  # accepts connections, never answers: not a Ray head
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        t0 = time.monotonic()
        with pytest.raises(ExecutorError, match="no Ray cluster answers at 127.0.0.1"):
            RayExecutor(f"127.0.0.1:{silent.getsockname()[1]}", connect_timeout=2)
        assert time.monotonic() - t0 < 60  # Ray alone would retry for minutes; slack for a loaded machine
    finally:
        silent.close()


def test_missing_ray_names_the_extra(tiny_dir, tmp_path):
    samples = _write_samples(tmp_path / "s.jsonl", 2)
    job = tmp_path / "job.json"
    job.write_text(json.dumps(_spec(tiny_dir, samples, tmp_path / "cache")))
    code = ("import sys; sys.modules['ray'] = None  # Ray not installed: importing it fails\n"
            "from attrib_mlops.cli import app; app()")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code, "run", str(job), "--no-mlflow", "--executor", "ray"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "attrib-mlops[ray]" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "cache").exists()


def test_ray_options_need_the_ray_executor(tiny_dir, tmp_path):
    from attrib_mlops.errors import InputError
    from attrib_mlops.jobs.executor_choice import ExecutorChoice

    with pytest.raises(InputError, match="need --executor ray"):
        ExecutorChoice("local", address="127.0.0.1:1")
    with pytest.raises(InputError, match="unknown executor 'dask'"):
        ExecutorChoice("dask")
