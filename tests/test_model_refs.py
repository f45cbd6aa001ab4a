"""model_refs: MLflow model URIs resolved to local folders from a real SQLite store (no hub)."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from attrib_mlops.errors import ModelLoadError
from attrib_mlops.model_refs import is_mlflow_ref, load_model, resolve_model_ref


def test_runs_uri_is_downloaded_and_loaded(tiny_dir, tmp_path):
    uri = f"sqlite:///{tmp_path}/refs.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("refs", artifact_location=str(tmp_path / "art"))
    run_id = client.create_run(exp).info.run_id
    client.log_artifacts(run_id, str(tiny_dir), "model")
    ref = f"runs:/{run_id}/model"
    assert is_mlflow_ref(ref) and not is_mlflow_ref(str(tiny_dir)) and not is_mlflow_ref(None)
    local = resolve_model_ref(ref, tracking_uri=uri, dst_dir=tmp_path)
    assert (tmp_path / local).joinpath("config.json").is_file() and str(local).startswith(str(tmp_path))
    assert resolve_model_ref(str(tiny_dir)) == str(tiny_dir)
    import mlflow

    mlflow.set_tracking_uri(uri)
    model, tok, name = load_model(ref)
    assert name == ref and model.config.vocab_size == len(tok)
    client.log_text(run_id, "no model here", "notes/readme.txt")
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model_ref(f"runs:/{run_id}/notes", tracking_uri=uri, dst_dir=tmp_path)
