"""Shared fixtures: one tiny CPU model per session, built locally (no hub)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
logging.getLogger("inseq").setLevel(logging.ERROR)

VOCAB = [f"w{i}" for i in range(40)]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two workers share two cores: one torch thread each (subprocesses inherit it) instead of 2 x 2
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

_TESTS = Path(__file__).parent
#: folders whose session fixtures train models: their files share one xdist worker, so each trains once
_FOLDER_GROUPS = ("sources", "training_data")
#: files that share the session's Ray cluster
_RAY_FILES = ("jobs/test_ray_executor.py", "service/test_app.py")


def pytest_collection_modifyitems(config, items):
    """Group tests for ``pytest -n 2 --dist loadgroup`` (the README's command).

    A file's tests stay on one worker (module fixtures are built once); the folders in
    ``_FOLDER_GROUPS`` and the Ray files each stay together. Without xdist the marks do nothing.
    """
    for item in items:
        try:
            rel = Path(str(item.path)).resolve().relative_to(_TESTS.resolve()).as_posix()
        except ValueError:
            continue
        top = rel.split("/", 1)[0]
        group = "ray" if rel in _RAY_FILES else top if top in _FOLDER_GROUPS else rel
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def tiny():
    """(model, tokenizer) of a random 2-layer GPT-2 over a 40-word vocabulary."""
    from attrib_mlops.demo.tiny import build_tiny_model

    return build_tiny_model(VOCAB, n_layer=2, n_embd=32, n_head=4, n_positions=64, seed=0)


@pytest.fixture(scope="session")
def tiny_dir(tiny, tmp_path_factory):
    """The tiny model saved as a local folder (safetensors + tokenizer files)."""
    from attrib_mlops.demo.tiny import save_tiny

    return save_tiny(*tiny, tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def samples():
    prompts = ["w1 w2 w3 w4", "w5 w6 w7", "w8 w9 w10 w11 w12 w13"]
    targets = [" w5 w6", " w1 w2 w3", " w0"]
    return prompts, targets


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path, monkeypatch):
    """Every test logs to its own SQLite store and spool unless it sets one itself."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/default-mlflow.db")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)  # mlflow.set_experiment() leaves both behind
    import mlflow
    import mlflow.tracking.fluent as fluent

    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    mlflow.set_tracking_uri(None)  # re-read the env var
    yield
    if mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture(scope="session")
def ray_cluster():
    """A Ray head node on 127.0.0.1 (2 CPUs, no dashboard, token auth), started once, stopped after.

    The test process gets the cluster's loopback and token variables for the session, so
    ``RayExecutor(address=ray_cluster.address)`` connects; it never calls ``ray stop``.
    """
    from attrib_mlops.jobs.ray_cluster import LocalRayCluster

    cluster = LocalRayCluster(num_cpus=2).start()
    saved = {k: os.environ.get(k) for k in cluster.driver_env({})}
    os.environ.update(cluster.driver_env({}))
    try:
        yield cluster
    finally:
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        finally:
            cluster.stop()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def chromium():
    """One headless Debian Chromium per test session (Playwright's sync API allows one driver per process)."""
    if not os.path.exists(CHROMIUM):
        # a missing browser must not turn the browser tests into silent skips
        pytest.fail(f"Debian's Chromium is not installed at {CHROMIUM}: run `bash scripts/install.sh test` "
                    "(it runs apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
