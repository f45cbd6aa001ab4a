"""Finding a run's training-data index without loading it: its artifact path, manifest, model, runs.

Mixed into :class:`~attrib_mlops.tracking.AttributionReader` as :class:`TrainingIndexReading`
(the dashboard reads through the reader only). Nothing here needs torch: only run tags,
artifact listings and ``training_index/manifest.json`` are read, never the gradient shards;
the index itself is loaded by :func:`attrib_mlops.tracking.training_index.load_training_index`,
which re-exports :data:`ARTIFACT_PATH`, :data:`TAG` and :func:`find_training_index`.

Example:
    >>> reader = AttributionReader("sqlite:///mlflow.db")                          # doctest: +SKIP
    >>> reader.training_index_model(run_id)                                         # doctest: +SKIP
    'runs:/0a1b.../checkpoint-40'
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from attrib_mlops.tracking.errors import TrackingError, is_unreachable

__all__ = ["ARTIFACT_PATH", "TAG", "TrainingIndexReading", "find_training_index", "index_model"]

#: Artifact folder of the index in its run.
ARTIFACT_PATH = "training_index"
#: Run tag naming that folder (set once the index is complete); ``TAG + ".n_examples"`` etc. describe it.
TAG = "attrib_mlops.training_index"
_MANIFEST = "manifest.json"  # attrib_mlops.training_data.storage.MANIFEST (that module needs torch)
_MLFLOW_URIS = ("runs:/", "models:/")


def _client(tracking_uri: str | None, client: Any) -> Any:
    if client is not None:
        return client
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _get_run(client: Any, run_id: str) -> Any:
    try:
        return client.get_run(run_id)
    except Exception as e:  # noqa: BLE001 - MLflow raises MlflowException for an unknown run
        from mlflow.exceptions import MlflowException

        if isinstance(e, MlflowException) and not is_unreachable(e):
            raise TrackingError(f"run {run_id} cannot be read: {str(e)[:200]}") from None
        raise


def find_training_index(run_id: str, *, tracking_uri: str | None = None, client: Any = None) -> str | None:
    """The artifact path of the run's index, or None when the run has none."""
    client = _client(tracking_uri, client)
    run = _get_run(client, run_id)
    path = run.data.tags.get(TAG) or ARTIFACT_PATH
    try:
        names = {os.path.basename(f.path) for f in client.list_artifacts(run_id, path)}
    except Exception as e:  # noqa: BLE001
        if is_unreachable(e):
            raise
        return None
    return path if _MANIFEST in names else None


def index_model(manifest: dict[str, Any]) -> str | None:
    """The model a query against this index should use: its last checkpoint.

    The checkpoint's MLflow URI when it was given as one (``runs:/``, ``models:/``), else its
    local folder (absolute, as the builder recorded it); None for an index without checkpoints.

    >>> index_model({"checkpoints": [{"ref": "ck-10", "folder": "/o/ck-10"}, {"ref": "models:/m-1", "folder": "/t"}]})
    'models:/m-1'
    >>> index_model({"checkpoints": [{"ref": "out/checkpoint-20", "folder": "/work/out/checkpoint-20"}]})
    '/work/out/checkpoint-20'
    """
    cks = [c for c in manifest.get("checkpoints") or [] if isinstance(c, dict)]
    if not cks:
        return None
    ref, folder = str(cks[-1].get("ref") or ""), str(cks[-1].get("folder") or "")
    return ref if ref.startswith(_MLFLOW_URIS) or not folder else folder


class TrainingIndexReading:
    """The training-data index of a run, as far as a reader needs it (``self.client`` is an ``MlflowClient``)."""

    client: Any

    def training_index_manifest(self, run_id: str) -> dict[str, Any] | None:
        """The manifest of the run's index (checkpoints, learning rates, parameters), or None without an index.

        Raises:
            TrackingError: the run cannot be read.
        """
        path = find_training_index(run_id, client=self.client)
        if path is None:
            return None
        with tempfile.TemporaryDirectory(prefix="attrib-index-manifest-") as tmp:
            local = self.client.download_artifacts(run_id, f"{path}/{_MANIFEST}", tmp)
            return json.loads(Path(os.fspath(local)).read_text(encoding="utf-8"))

    def training_index_model(self, run_id: str) -> str | None:
        """The model to query the run's index with (see :func:`index_model`), or None without an index."""
        manifest = self.training_index_manifest(run_id)
        return None if manifest is None else index_model(manifest)

    def training_index_runs(self, max_results: int = 1000) -> list[dict[str, Any]]:
        """Runs carrying an index (tag :data:`TAG`), newest first, from their tags alone (no download).

        Each: ``run_id``, ``run_name``, ``experiment_id``, ``n_examples`` and ``n_checkpoints``
        (None when the tag is missing).
        """
        exps = [e.experiment_id for e in self.client.search_experiments(max_results=1000)]
        runs = self.client.search_runs(exps, filter_string=f"tags.`{TAG}` LIKE '%'", max_results=max_results,
                                       order_by=["attributes.start_time DESC"]) if exps else []

        def num(run: Any, key: str) -> int | None:
            v = run.data.tags.get(f"{TAG}.{key}", "")
            return int(v) if v.isdigit() else None

        return [{"run_id": r.info.run_id, "run_name": r.info.run_name or r.info.run_id[:8],
                 "experiment_id": r.info.experiment_id, "n_examples": num(r, "n_examples"),
                 "n_checkpoints": num(r, "checkpoints")} for r in runs]
