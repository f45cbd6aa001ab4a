"""A training-data index as an MLflow artifact: log, find, load (in place and downloaded), query by run id.

Real SQLite MLflow store with a local artifact root; nothing is mocked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attrib_mlops.tracking.errors import TrackingError
from attrib_mlops.tracking.training_index import (
    TAG,
    find_training_index,
    list_runs_with_index,
    load_training_index,
    log_training_index,
    looks_like_run_id,
    resolve_index,
)
from attrib_mlops.training_data.errors import NoTrainingIndexError

ROWS = [{"id": "a", "prompt": "w1 w2", "target": " w3"}, {"id": "b", "text": "w4 w5 w6"},
        {"id": "c", "prompt": "w7", "target": " w8 w9"}]


@pytest.fixture(scope="module")
def ckpt_dirs(tiny, tmp_path_factory):
    from attrib_mlops.demo.tiny import save_tiny

    root = tmp_path_factory.mktemp("ti-ckpts")
    return [str(save_tiny(*tiny, root / f"checkpoint-{s}")) for s in (1, 2)]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mlflow.tracking import MlflowClient

    tmp_path = tmp_path_factory.mktemp("ti-store")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("tda", artifact_location=str(tmp_path / "artifacts"))
    return uri, client, exp


def _index(ckpt_dirs, out, n=1):
    from attrib_mlops.training_data import build_training_index

    return build_training_index(ckpt_dirs[:n], None, ROWS, learning_rates=0.1, projection_dim=16, out_dir=str(out),
                                show_progress=False)


def test_log_find_load_and_query_by_run_id(store, ckpt_dirs, tmp_path):
    import attrib_mlops

    uri, client, exp = store
    run_id = client.create_run(exp).info.run_id
    other = client.create_run(exp).info.run_id
    idx = _index(ckpt_dirs, tmp_path / "index")
    assert log_training_index(idx, run_id, client=client) == "training_index"
    tags = client.get_run(run_id).data.tags
    assert tags[TAG] == "training_index" and tags[f"{TAG}.n_examples"] == "3" and tags[f"{TAG}.dim"] == "16"
    names = {a.path for a in client.list_artifacts(run_id, "training_index")}
    assert {"training_index/manifest.json", "training_index/examples.jsonl", "training_index/ckpt-000"} <= names
    assert find_training_index(run_id, client=client) == "training_index"
    assert find_training_index(other, client=client) is None
    from attrib_mlops.tracking import AttributionReader

    listed = {r["run_id"]: r for r in AttributionReader(client=client).training_index_runs()}
    assert run_id in listed and other not in listed
    assert (listed[run_id]["n_examples"], listed[run_id]["n_checkpoints"]) == (3, 1)
    assert run_id in list_runs_with_index([exp], client=client) and other not in list_runs_with_index([exp],
                                                                                                    client=client)

    loaded = load_training_index(run_id, client=client)
    assert loaded.manifest == idx.manifest and loaded.ids == ["a", "b", "c"]
    res = attrib_mlops.attribute_training_data(run_id, None, None, "w1 w2", " w3", tracking_uri=uri)
    ref = attrib_mlops.attribute_training_data(idx, None, None, "w1 w2", " w3")
    np.testing.assert_array_equal(res.scores, ref.scores)
    assert res.info["index"] == str(loaded.path)
    assert isinstance(resolve_index(f"runs:/{run_id}", client=client), type(idx))


def test_download_path_is_cached_until_the_manifest_changes(store, ckpt_dirs, tmp_path):
    _, client, exp = store
    run_id = client.create_run(exp).info.run_id
    out = tmp_path / "index"
    log_training_index(_index(ckpt_dirs, out, n=1), run_id, client=client)
    cache = tmp_path / "cache"
    a = load_training_index(run_id, client=client, cache_dir=cache, prefer_local=False)
    assert cache in a.path.parents and len(a.checkpoints) == 1
    (a.path / "examples.jsonl").touch()
    stamp = (a.path / "examples.jsonl").stat().st_mtime_ns
    b = load_training_index(run_id, client=client, cache_dir=cache, prefer_local=False)
    assert b.path == a.path and (b.path / "examples.jsonl").stat().st_mtime_ns == stamp  # not downloaded again
    # index one more checkpoint and log again: a new manifest, a new download with both checkpoints;
    # the first checkpoint's folder is not uploaded again
    stored = load_training_index(run_id, client=client).path / "ckpt-000" / "rows-00000.safetensors"
    first_upload = stored.stat().st_mtime_ns
    log_training_index(_index(ckpt_dirs, out, n=2), run_id, client=client)
    assert stored.stat().st_mtime_ns == first_upload
    c = load_training_index(run_id, client=client, cache_dir=cache, prefer_local=False)
    assert c.path != a.path and [ck["dir"] for ck in c.checkpoints] == ["ckpt-000", "ckpt-001"]
    assert json.loads((c.path / "manifest.json").read_text())["checkpoints"][1]["ref"] == ckpt_dirs[1]
    local = load_training_index(run_id, client=client)
    assert len(local.checkpoints) == 2
    # the reader (what the dashboard uses) downloads the manifest alone: the model to query is the last checkpoint
    from attrib_mlops.tracking import AttributionReader

    reader = AttributionReader(client=client, cache_dir=tmp_path / "reader")
    assert reader.training_index_manifest(run_id) == c.manifest
    assert reader.training_index_model(run_id) == ckpt_dirs[1]


def test_a_run_without_an_index_says_how_to_build_one(store):
    _, client, exp = store
    run_id = client.create_run(exp).info.run_id
    with pytest.raises(NoTrainingIndexError) as e:
        load_training_index(run_id, client=client)
    msg = str(e.value)
    assert f"run {run_id} has no training-data index" in msg
    assert f"attrib-mlops tda index --run {run_id} --checkpoints DIR --train-data FILE" in msg
    assert "build_training_index" in msg
    from attrib_mlops.tracking import AttributionReader

    assert AttributionReader(client=client).training_index_model(run_id) is None
    with pytest.raises(TrackingError, match="cannot be read"):
        load_training_index("f" * 32, client=client)
    with pytest.raises(NoTrainingIndexError, match="neither an index folder nor an MLflow run id"):
        resolve_index("not-a-run", client=client)
    assert looks_like_run_id(run_id) and looks_like_run_id(f"runs:/{run_id}/model") and not looks_like_run_id("x")


def test_checkpoints_given_as_mlflow_model_uris(store, ckpt_dirs, tmp_path, monkeypatch):
    import shutil
    import tempfile

    import mlflow

    from attrib_mlops.training_data import attribute_training_data, build_training_index

    uri, client, exp = store
    downloads = tmp_path / "downloads"  # the MLflow model loader downloads into tempfile.mkdtemp() folders
    downloads.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(downloads))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    run_id = client.create_run(exp).info.run_id
    for k, d in enumerate(ckpt_dirs):
        client.log_artifacts(run_id, d, f"checkpoint-{k}")
    refs = [f"runs:/{run_id}/checkpoint-{k}" for k in range(2)]
    idx = build_training_index(refs, None, ROWS, learning_rates=[0.1, 0.2], projection_dim=16,
                               out_dir=str(tmp_path / "from-uris"), show_progress=False)
    local = build_training_index(ckpt_dirs, None, ROWS, learning_rates=[0.1, 0.2], projection_dim=16,
                                 out_dir=str(tmp_path / "from-folders"), show_progress=False)
    assert [c["ref"] for c in idx.checkpoints] == refs and [c["name"] for c in idx.checkpoints] == refs
    a = attribute_training_data(idx, None, None, "w1 w2", " w3")
    b = attribute_training_data(local, None, None, "w1 w2", " w3")
    np.testing.assert_array_equal(a.scores, b.scores)
    # the downloaded copies are gone: the query downloads the checkpoints again from their URIs
    for c in idx.checkpoints:
        assert downloads in Path(c["folder"]).parents
        shutil.rmtree(c["folder"])
    again = attribute_training_data(idx, local.checkpoints[-1]["folder"], None, "w1 w2", " w3")
    np.testing.assert_array_equal(again.scores, a.scores)
    # logged to a run, the model to query it with is the last checkpoint's URI (its download is a temporary copy)
    from attrib_mlops.tracking import AttributionReader

    log_training_index(idx, run_id, client=client)
    assert AttributionReader(client=client).training_index_model(run_id) == refs[-1]
