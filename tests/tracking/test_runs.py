"""get_or_create_run: the one way entry points find or create their MLflow run (real SQLite store)."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from attrib_mlops.errors import InputError
from attrib_mlops.tracking.runs import DEFAULT_EXPERIMENT, get_or_create_experiment, get_or_create_run


@pytest.fixture
def uri(tmp_path):
    return f"sqlite:///{tmp_path}/runs.db"


def test_creates_experiment_once_and_a_run_with_name_and_tags(uri, tmp_path):
    h1 = get_or_create_run(tracking_uri=uri, experiment="exp-a", run_name="first", tags={"k": "v"},
                           artifact_location=(tmp_path / "art").as_uri())
    h2 = get_or_create_run(tracking_uri=uri, experiment="exp-a", run_name="second")
    assert h1.created and h2.created and h1.run_id != h2.run_id
    assert h1.experiment_id == h2.experiment_id
    client = MlflowClient(uri)
    assert client.get_experiment(h1.experiment_id).artifact_location == (tmp_path / "art").as_uri()
    run = client.get_run(h1.run_id)
    assert run.info.run_name == "first" and run.data.tags["k"] == "v"
    assert "mlflow.user" not in run.data.tags  # no context tags unless asked
    assert get_or_create_experiment(client, "exp-a") == h1.experiment_id


def test_explicit_run_id_is_resumed_and_verified(uri):
    h = get_or_create_run(tracking_uri=uri, experiment="exp-b")
    again = get_or_create_run(tracking_uri=uri, run_id=h.run_id, verify=True)
    assert again.run_id == h.run_id and not again.created and again.tracking_uri == uri
    # without verify an unknown id is taken as given (a resumed training trusts its state)
    assert get_or_create_run(tracking_uri=uri, run_id="nope").run_id == "nope"
    with pytest.raises(InputError, match="MLflow run 'nope' not found at sqlite"):
        get_or_create_run(tracking_uri=uri, run_id="nope", verify=True)


def test_default_experiment_from_env_then_builtin(uri, monkeypatch):
    client = MlflowClient(uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    h = get_or_create_run(client=client)
    assert client.get_experiment(h.experiment_id).name == "from-env" and h.tracking_uri == uri
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    h = get_or_create_run(client=client)
    assert client.get_experiment(h.experiment_id).name == DEFAULT_EXPERIMENT


def test_active_run_only_on_the_same_uri(uri, tmp_path):
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run() as active:
        h = get_or_create_run(tracking_uri=uri, use_active_run=True)
        assert h.run_id == active.info.run_id and not h.created
        other = get_or_create_run(tracking_uri=f"sqlite:///{tmp_path}/other.db", use_active_run=True)
        assert other.created and other.run_id != active.info.run_id
        fresh = get_or_create_run(tracking_uri=uri)  # not asked to use the active run
        assert fresh.created and fresh.run_id != active.info.run_id


def test_context_tags_like_start_run(uri):
    h = get_or_create_run(tracking_uri=uri, experiment="exp-c", run_name="ctx", tags={"mine": "1"},
                          context_tags=True)
    tags = MlflowClient(uri).get_run(h.run_id).data.tags
    assert tags["mlflow.runName"] == "ctx" and tags["mine"] == "1"
    assert "mlflow.user" in tags and "mlflow.source.type" in tags


def test_sqlite_experiments_keep_artifacts_beside_the_database(tmp_path, monkeypatch, tiny_dir):
    """Issue 9 item 10: a SQLite store is self-contained, wherever the process started."""
    import json

    import yaml
    from typer.testing import CliRunner

    from attrib_mlops.cli import app

    store, elsewhere = tmp_path / "store", tmp_path / "elsewhere"
    store.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    uri = f"sqlite:///{store}/mlflow.db"
    h = get_or_create_run(tracking_uri=uri, experiment="a/b c")
    exp = h.client.get_experiment(h.experiment_id)
    assert exp.artifact_location.startswith(str(store / "mlartifacts"))
    given = get_or_create_experiment(MlflowClient(tracking_uri=uri), "given", artifact_location=str(tmp_path / "x"))
    assert MlflowClient(tracking_uri=uri).get_experiment(given).artifact_location.endswith(str(tmp_path / "x"))

    samples = tmp_path / "s.json"
    samples.write_text(json.dumps([{"id": "a", "prompt": "w1 w2", "target": " w3"}]))
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"name": "selfcontained", "models": [{"name": "tiny", "ref": str(tiny_dir)}],
                                   "methods": ["saliency"], "samples": {"source": str(samples)},
                                   "output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache")}))
    res = CliRunner().invoke(app, ["run", str(job), "--no-progress", "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    assert not (elsewhere / "mlruns").exists() and not (elsewhere / "mlartifacts").exists()
    stored = list((store / "mlartifacts" / "selfcontained").rglob("*.parquet"))
    assert stored, "the job's artifacts are beside the database"
