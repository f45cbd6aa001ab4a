"""Reader methods about a run's training-data index: its manifest and the model it was built for.

Mixed into :class:`~attrib_mlops.tracking.AttributionReader` (the dashboard reads through the
reader only). Only ``training_index/manifest.json`` is downloaded, never the gradient shards;
the index itself is loaded by :func:`attrib_mlops.tracking.training_index.load_training_index`
(imported lazily here: it needs torch, the reader does not).

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

__all__ = ["TrainingIndexReading", "index_model"]

_MLFLOW_URIS = ("runs:/", "models:/")


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
        from attrib_mlops.tracking.training_index import find_training_index

        path = find_training_index(run_id, client=self.client)
        if path is None:
            return None
        with tempfile.TemporaryDirectory(prefix="attrib-index-manifest-") as tmp:
            local = self.client.download_artifacts(run_id, f"{path}/manifest.json", tmp)
            return json.loads(Path(os.fspath(local)).read_text(encoding="utf-8"))

    def training_index_model(self, run_id: str) -> str | None:
        """The model to query the run's index with (see :func:`index_model`), or None without an index."""
        manifest = self.training_index_manifest(run_id)
        return None if manifest is None else index_model(manifest)
