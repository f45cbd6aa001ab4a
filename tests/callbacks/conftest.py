"""Fixtures of the callback tests: a real MLflow SQLite store and a tiny key-value model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from attrib_mlops.demo.tasks import make_keyvalue_dataset, keyvalue_vocab
from attrib_mlops.demo.tiny import build_tiny_model


@pytest.fixture()
def store(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("cb", artifact_location=str(tmp_path / "artifacts"))
    return SimpleNamespace(uri=uri, client=client, exp=exp, tmp=tmp_path)


@pytest.fixture(scope="module")
def kv():
    model, tok = build_tiny_model(keyvalue_vocab(), n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=0)
    train = make_keyvalue_dataset(24 * 8, n_pairs=3, seed=0)
    probe = make_keyvalue_dataset(3, n_pairs=3, seed=99)
    return model, tok, train, probe
