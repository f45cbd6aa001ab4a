"""A training-data index as an MLflow artifact of the training run: log, find, load.

The index folder (see :mod:`attrib_mlops.training_data.storage`) is uploaded
under ``training_index/`` of the run: every shard first, ``manifest.json``
last, then the run tags below, so a reader that trusts the manifest never sees
half a checkpoint. Logging again (after indexing more checkpoints) uploads
the new checkpoint folders and replaces the manifest.

Run tags: ``attrib_mlops.training_index`` (the artifact path),
``attrib_mlops.training_index.n_examples``, ``.checkpoints`` and ``.dim``.
List runs with an index with the filter
``tags.`attrib_mlops.training_index` LIKE '%'``.

Example:
    >>> from attrib_mlops.tracking.training_index import log_training_index, load_training_index
    >>> log_training_index(index, run_id, tracking_uri="sqlite:///mlflow.db")     # doctest: +SKIP
    >>> index = load_training_index(run_id, tracking_uri="sqlite:///mlflow.db")    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from attrib_mlops.tracking.errors import is_unreachable
from attrib_mlops.tracking.index_reading import ARTIFACT_PATH, TAG, _client, _get_run, find_training_index
from attrib_mlops.training_data.errors import NoTrainingIndexError
from attrib_mlops.training_data.storage import MANIFEST, TrainingIndex

__all__ = ["ARTIFACT_PATH", "TAG", "log_training_index", "find_training_index", "load_training_index",
           "list_runs_with_index", "resolve_index", "looks_like_run_id"]

HOW_TO_BUILD = ("build one with `attrib-mlops tda index --run {run} --checkpoints DIR --train-data FILE`, or in "
                "Python with attrib_mlops.build_training_index(...) then "
                "attrib_mlops.tracking.training_index.log_training_index(index, '{run}')")


def looks_like_run_id(ref: Any) -> bool:
    """True for a 32-hex MLflow run id or a ``runs:/<id>`` URI."""
    s = str(ref)
    if s.startswith("runs:/"):
        s = s[len("runs:/"):].split("/")[0]
    return len(s) == 32 and all(c in "0123456789abcdef" for c in s)


def log_training_index(index: TrainingIndex | str | os.PathLike, run_id: str, *, tracking_uri: str | None = None,
                       client: Any = None, artifact_path: str = ARTIFACT_PATH) -> str:
    """Upload an index folder as an artifact of ``run_id``; returns the artifact path.

    Shards go first and ``manifest.json`` last, then the run tags are set.
    Checkpoint folders already in the run (an index logged before and extended
    since) are not uploaded again.
    """
    idx = index if isinstance(index, TrainingIndex) else TrainingIndex(index)
    client = _client(tracking_uri, client)
    _get_run(client, run_id)
    root = idx.path
    try:  # checkpoint folders and examples never change once written: upload only what is new
        present = {os.path.basename(f.path) for f in client.list_artifacts(run_id, artifact_path)}
    except Exception as e:  # noqa: BLE001
        if is_unreachable(e):
            raise
        present = set()
    listed = {c["dir"] for c in idx.checkpoints}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name in listed and p.name not in present):
        client.log_artifacts(run_id, str(sub), f"{artifact_path}/{sub.name}")
    for f in sorted(p for p in root.iterdir() if p.is_file() and p.name != MANIFEST and not p.name.endswith(".tmp")):
        if f.name not in present:
            client.log_artifact(run_id, str(f), artifact_path)
    client.log_artifact(run_id, str(root / MANIFEST), artifact_path)
    client.set_tag(run_id, TAG, artifact_path)
    client.set_tag(run_id, f"{TAG}.n_examples", str(idx.n_examples))
    client.set_tag(run_id, f"{TAG}.checkpoints", str(len(idx.checkpoints)))
    client.set_tag(run_id, f"{TAG}.dim", str(idx.dim))
    return artifact_path


def _local_artifacts(run: Any) -> Path | None:
    uri = run.info.artifact_uri or ""
    parsed = urlparse(uri)
    if uri and parsed.scheme in ("", "file"):
        p = Path(unquote(parsed.path) if parsed.scheme == "file" else uri)
        return p if p.is_absolute() and p.is_dir() else None
    return None


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "attrib-mlops" / "training-index"


def load_training_index(run_id: str, *, tracking_uri: str | None = None, client: Any = None,
                        cache_dir: str | os.PathLike | None = None, prefer_local: bool = True) -> TrainingIndex:
    """The run's index: read in place from a local artifact store, else downloaded (cached by manifest).

    Args:
        run_id: the training run.
        tracking_uri / client: which MLflow server.
        cache_dir: download cache (default ``$XDG_CACHE_HOME/attrib-mlops/training-index``); a
            download is reused while the run's manifest is unchanged.
        prefer_local: read a local artifact store in place instead of downloading.

    Raises:
        NoTrainingIndexError: the run has no index (the message says how to build one).
        TrackingError: the run cannot be read.
    """
    client = _client(tracking_uri, client)
    run = _get_run(client, run_id)
    path = find_training_index(run_id, client=client)
    if path is None:
        raise NoTrainingIndexError(f"run {run_id} has no training-data index (no {ARTIFACT_PATH}/{MANIFEST} "
                                   "artifact); " + HOW_TO_BUILD.format(run=run_id))
    local = _local_artifacts(run) if prefer_local else None
    if local is not None and (local / path / MANIFEST).is_file():
        return TrainingIndex(local / path)
    cache = Path(cache_dir) if cache_dir else _cache_root()
    tmp = cache / f".dl-{uuid.uuid4().hex[:8]}"
    try:
        manifest = Path(client.download_artifacts(run_id, f"{path}/{MANIFEST}", str(tmp)))
        digest = hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
        target = cache / run_id / digest
        if not (target / MANIFEST).is_file():
            full = Path(client.download_artifacts(run_id, path, str(tmp / "full")))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(full, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return TrainingIndex(target)


def list_runs_with_index(experiment_ids: list[str] | None = None, *, tracking_uri: str | None = None,
                         client: Any = None, max_results: int = 1000) -> list[str]:
    """Run ids that carry a training-data index (tag ``attrib_mlops.training_index``), newest first."""
    client = _client(tracking_uri, client)
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiment_ids, filter_string=f"tags.`{TAG}` LIKE '%'", max_results=max_results,
                              order_by=["attributes.start_time DESC"])
    return [r.info.run_id for r in runs]


def resolve_index(index: Any, *, tracking_uri: str | None = None, client: Any = None) -> Any:
    """An index object, an index folder, or a run id (``<32 hex>`` or ``runs:/<id>``) -> what queries accept."""
    if isinstance(index, TrainingIndex):
        return index
    if isinstance(index, (str, os.PathLike)) and Path(index).is_dir():
        return TrainingIndex(index)
    if isinstance(index, str) and looks_like_run_id(index):
        run_id = index[len("runs:/"):].split("/")[0] if index.startswith("runs:/") else index
        return load_training_index(run_id, tracking_uri=tracking_uri, client=client)
    raise NoTrainingIndexError(f"'{index}' is neither an index folder nor an MLflow run id; give a TrainingIndex, "
                               "the folder build_training_index wrote, or the id of a run with a logged index")
