"""Recipes a user copies must run as written (shortened where they take a parameter)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mlflow.tracking import MlflowClient

from attrib_mlops.tracking import AttributionReader

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "recipes" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_plain_loop_recipe(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the recipe logs to MLflow's default store in the working folder: a fresh one
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _load("plain_pytorch_loop").main(steps=20, log_every=10)
    out = capsys.readouterr().out
    assert "steps [10, 20]" in out
    import mlflow

    client = MlflowClient(mlflow.get_tracking_uri())
    exp = client.get_experiment_by_name("plain-loop")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert AttributionReader(mlflow.get_tracking_uri()).steps(run.info.run_id) == [10, 20]
