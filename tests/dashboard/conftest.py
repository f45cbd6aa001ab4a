"""Fixtures of the dashboard tests: SQLite MLflow stores written with AttributionWriter, free ports, Chromium.

Panel is never imported in the main test process: once it is, Bokeh lists Panel's module shim
among its inline resources and the tracking writer's ``view.html`` rendering refuses to run, which
would break every later test that logs a step. The app therefore runs in subprocesses: the browser
tests serve it with ``attrib-mlops dashboard``, and the in-process app checks run in a child pytest.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from attrib_mlops.result import AttributionResult, future_mask

METHODS = ("saliency", "attention")
STEPS = (10, 20, 30)
N_SAMPLES = 4

# float16 storage: every stored value lies within 2.5e-4 * max|A| of the float32 one (see columnar.py)
REL_TOL = 1e-3



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_result(sid: str, method: str, seed: int, prompt: list[str], target: list[str]) -> AttributionResult:
    """A synthetic result: random positive matrix with the decoder-only future mask (NaN)."""
    rng = np.random.default_rng(seed)
    src = prompt + target
    ns, nt = len(src), len(target)
    m = rng.random((ns, nt)).astype(np.float32) * (1.0 if method == "saliency" else 0.3)
    m[future_mask(ns, nt, len(prompt))] = np.nan
    return AttributionResult(
        m, src, target, method, "native",
        step_scores={"probability": rng.random(nt).astype(np.float32),
                     "entropy": (rng.random(nt) * 3).astype(np.float32)},
        info={"synthetic": True}, n_prompt=len(prompt), prompt=" ".join(prompt),
        target=" " + " ".join(target), sample_id=sid,
    )


def sample_tokens(k: int, variant: str = "a") -> tuple[list[str], list[str]]:
    prompt = [f"w{(3 * k + i) % 40}" for i in range(4 + k % 3)]
    target = [f"w{(7 * k + i) % 40}" for i in range(2 + k % 2)]
    if variant == "b" and k == 2:  # run B generated a different continuation for s2
        target = [target[0], "w39", "w38"]
    return prompt, target


def step_results(step: int, variant: str = "a", methods=METHODS, model_seed: int = 0) -> list[AttributionResult]:
    out = []
    for j, method in enumerate(methods):
        for k in range(N_SAMPLES):
            prompt, target = sample_tokens(k, variant)
            seed = 100_000 * model_seed + 1000 * step + 10 * k + j + (500 if variant == "b" else 0)
            out.append(make_result(f"s{k}", method, seed, prompt, target))
    return out


def probe(variant: str = "a") -> list[dict]:
    out = []
    for k in range(N_SAMPLES):
        p, t = sample_tokens(k, variant)
        out.append({"id": f"s{k}", "prompt": " ".join(p), "target": " " + " ".join(t)})
    return out


@dataclass
class Store:
    """A tracking store built for the tests (constants and helpers ride along: test modules cannot import
    this conftest under pytest's importlib import mode)."""

    uri: str
    root: Path
    runs: dict[str, str] = field(default_factory=dict)  # label -> run_id
    spool: Path | None = None
    methods: tuple[str, ...] = METHODS
    steps: tuple[int, ...] = STEPS
    rel_tol: float = REL_TOL

    def to_json(self) -> str:
        return json.dumps({"uri": self.uri, "root": str(self.root), "runs": self.runs,
                           "spool": str(self.spool) if self.spool else None})

    @classmethod
    def from_json(cls, text: str) -> Store:
        d = json.loads(text)
        return cls(uri=d["uri"], root=Path(d["root"]), runs=d["runs"], spool=Path(d["spool"]) if d["spool"] else None)

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def log_step(self, label: str, step: int, model: str = "model") -> None:
        """Write one more synthetic step into a run (what a training run does while the page is open)."""
        self.writer(label).log_step(step, step_results(step), model=model)

    def add_twin_run(self, label: str, name: str, steps: tuple[int, ...] = (10, 20), rel_change: float = 1e-7) -> str:
        """A finished run whose steps all hold step 10's results of run ``a``, the matrices of the k-th step
        scaled by ``1 + k * rel_change`` (differences far below what float16 storage resolves)."""
        from attrib_mlops.tracking import AttributionWriter

        client = self.client()
        exp = client.get_experiment_by_name("dashboard-tests").experiment_id
        run_id = client.create_run(exp, run_name=name).info.run_id
        self.runs[label] = run_id
        w = AttributionWriter(client, run_id=run_id, spool_dir=self.spool)
        w.log_probe_set(probe("a"))
        for k, step in enumerate(steps):
            results = step_results(10)
            for r in results:
                r.matrix = (r.matrix.astype(np.float64) * (1.0 + k * rel_change)).astype(np.float32)
            w.log_step(step, results)
        client.set_terminated(run_id, "FINISHED")
        return run_id

    def writer(self, label: str):
        from attrib_mlops.tracking import AttributionWriter

        return AttributionWriter(self.client(), run_id=self.runs[label], spool_dir=self.spool)


def build_store(root: Path) -> Store:
    """Runs (newest first in the overview): ``b`` (finished, 3 steps), ``a`` (running, 3 steps, 2 models at
    step 30), ``corrupt`` (finished, its step-20 saliency Parquet overwritten with garbage)."""
    from mlflow.tracking import MlflowClient

    from attrib_mlops.tracking import AttributionWriter

    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("dashboard-tests", artifact_location=str(root / "artifacts"))
    store = Store(uri=uri, root=root, spool=root / "spool")

    bad = client.create_run(exp, run_name="corrupt-run")
    store.runs["corrupt"] = bad.info.run_id
    w = AttributionWriter(client, run_id=bad.info.run_id, spool_dir=store.spool)
    w.log_probe_set(probe("a"))
    for step in (10, 20):
        w.log_step(step, step_results(step))
    client.set_terminated(bad.info.run_id, "FINISHED")
    art = Path(client.get_run(bad.info.run_id).info.artifact_uri)
    (art / "attribution/steps/0000000020/model/saliency.parquet").write_bytes(b"this is not parquet" * 10)

    run_a = client.create_run(exp, run_name="run-a")
    store.runs["a"] = run_a.info.run_id
    w = AttributionWriter(client, run_id=run_a.info.run_id, spool_dir=store.spool)
    w.log_probe_set(probe("a"))
    for step in STEPS:
        w.log_step(step, step_results(step))
        client.log_metric(run_a.info.run_id, "loss", 2.0 / (1 + step / 10), step=step)
    w.log_step(30, step_results(30, model_seed=7), model="other")
    from attrib_mlops.tracking.logged_models import create_checkpoint_model

    create_checkpoint_model(client, run_a.info.run_id, 30, str(root / "checkpoint-30"))  # New job's checkpoint list

    run_b = client.create_run(exp, run_name="run-b")
    store.runs["b"] = run_b.info.run_id
    w = AttributionWriter(client, run_id=run_b.info.run_id, spool_dir=store.spool)
    w.log_probe_set(probe("b"))
    for step in STEPS:
        w.log_step(step, step_results(step, "b"))
    client.set_terminated(run_b.info.run_id, "FINISHED")
    return store


@pytest.fixture(autouse=True)
def _panel_stays_out_of_this_process():
    """Fail a dashboard test that imports Panel into the main test process (see the module docstring)."""
    import sys

    before = "panel" in sys.modules
    yield
    if not before and "panel" in sys.modules and not os.environ.get("ATTRIB_DASH_TEST_STORE"):
        pytest.fail("this test imported Panel into the main test process; run app code in a subprocess")


@pytest.fixture(scope="module")
def dash_store(tmp_path_factory) -> Store:
    """A fresh store per test module (browser tests write into theirs); ``ATTRIB_DASH_TEST_STORE`` (JSON of
    :meth:`Store.to_json`) reuses one built by a parent test process."""
    if os.environ.get("ATTRIB_DASH_TEST_STORE"):
        yield Store.from_json(os.environ["ATTRIB_DASH_TEST_STORE"])
        return
    # kept until pytest prunes it: MLflow caches its SQLAlchemy store per URI, so a path must never be reused
    yield build_store(tmp_path_factory.mktemp("dash-store"))


@pytest.fixture
def port():
    """A free TCP port on 127.0.0.1."""
    return free_port()


def exe(name: str) -> str:
    """The console script ``name`` installed beside this Python (else found on PATH)."""
    path = Path(sys.executable).with_name(name)
    return str(path) if path.exists() else name


@contextmanager
def _serve(uri: str, log: Path, *extra: str, port: int | None = None, cmd: list[str] | None = None,
           refresh: str = "1", **env: str):
    """``attrib-mlops dashboard`` (or ``cmd`` on ``port``) in a subprocess; yields its URL once ``/`` answers."""
    port = port or free_port()
    cmd = cmd or [exe("attrib-mlops"), "dashboard", "--tracking-uri", uri, "--port", str(port), "--refresh", refresh,
                  *extra]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, **env))
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the dashboard exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                        if r.status == 200:
                            break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the dashboard did not answer:\n{log.read_text()[-3000:]}") from None
                    time.sleep(0.2)  # polling a socket, not waiting for the page
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="session")
def serve_dashboard():
    """The dashboard server as a context manager: ``with serve_dashboard(uri, log) as url: ...``.

    Options: ``*extra`` CLI arguments, ``port=`` (default: a free one), ``cmd=`` (another server
    command on that port), ``refresh=`` and environment variables as keywords.
    """
    return _serve


@pytest.fixture(scope="session")
def console_script():
    """:func:`exe`, for tests that start other console scripts."""
    return exe


@pytest.fixture
def fast_fail_http(monkeypatch):
    """MLflow gives up on an unreachable server at once."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
