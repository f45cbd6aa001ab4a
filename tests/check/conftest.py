"""Fixtures of the check tests: one real SQLite MLflow store for the whole session (creating one takes seconds)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


@pytest.fixture(scope="session")
def check_db(tmp_path_factory):
    """``uri``, ``client``, experiment ``exp`` and a folder ``tmp`` of one SQLite store; tests make their own runs."""
    from mlflow.tracking import MlflowClient

    tmp_path = tmp_path_factory.mktemp("check-store")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("check", artifact_location=(tmp_path / "artifacts").as_uri())
    return SimpleNamespace(uri=uri, client=client, exp=exp, tmp=tmp_path)
