"""The attribution manifest (``attribution/manifest.json``): creating, validating and editing it.

The manifest's format is described in :mod:`attrib_mlops.tracking.layout`; this module
holds the operations the writer and the reader share on it, so both agree on what a
valid manifest, a step record and a kind entry are.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrib_mlops._util import dumps, library_versions, now_iso
from attrib_mlops.tracking import layout as L
from attrib_mlops.tracking.errors import TrackingError, newer_schema
from attrib_mlops.tracking.kinds import StorageKind

__all__ = [
    "new_manifest",
    "download",
    "upload",
    "is_manifest",
    "check_version",
    "find_step",
    "new_step_record",
    "record_kind",
    "listed_methods",
    "run_tags",
    "int_or",
]


def int_or(value: Any, default: Any) -> Any:
    """``int(value)``, or ``default`` when it is not a number."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def new_manifest(root: str) -> dict[str, Any]:
    """An empty manifest (no probe set, no steps) for the artifact root ``root``."""
    now = now_iso()
    return {
        "format": L.FORMAT_ID,
        "schema_version": L.SCHEMA_VERSION,
        "artifact_root": root,
        "created": now,
        "updated": now,
        "versions": library_versions(),
        "probe": None,
        "models": {},
        "methods": {},
        "steps": [],
    }


def download(client: Any, run_id: str, root: str) -> dict[str, Any]:
    """The run's manifest as the server has it (a new empty one when the run has none yet).

    Raises:
        TrackingError: the file is not valid JSON or not an attrib-mlops manifest (never overwritten then).
        SchemaVersionError: written by a newer schema than this writer understands.
    """
    names = {a.path for a in client.list_artifacts(run_id, root)}
    path = L.manifest_path(root)
    if path not in names:
        return new_manifest(root)
    with tempfile.TemporaryDirectory(prefix="attrib-mlops-manifest-") as tmp:
        local = client.download_artifacts(run_id, path, tmp)
        try:
            man = json.loads(Path(local).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TrackingError(f"{path} of run {run_id} is not valid JSON ({e}); refusing to overwrite it")
    if not is_manifest(man):
        raise TrackingError(f"{path} of run {run_id} is not an attrib-mlops manifest; refusing to overwrite it")
    check_version(man, run_id, "writer")
    return man


def upload(client: Any, run_id: str, root: str, man: dict[str, Any]) -> None:
    """Stamp ``man`` (``updated``, ``versions``) and upload it: the moment its steps become visible."""
    man["updated"] = now_iso()
    man["versions"] = library_versions()
    with tempfile.TemporaryDirectory(prefix="attrib-mlops-manifest-") as tmp:
        p = Path(tmp) / L.MANIFEST_NAME
        p.write_text(dumps(man), encoding="utf-8")
        client.log_artifact(run_id, str(p), root)


def is_manifest(man: Any) -> bool:
    """A JSON object with this package's ``format`` id."""
    return isinstance(man, dict) and man.get("format") == L.FORMAT_ID


def check_version(man: Mapping[str, Any], run_id: str, who: str) -> None:
    """Refuse a manifest of a newer storage schema (``who``: ``"reader"`` or ``"writer"``).

    Raises:
        SchemaVersionError: naming the run and both versions.
    """
    version = int_or(man.get("schema_version"), 0)
    if version > L.SCHEMA_VERSION:
        raise newer_schema(f"run {run_id}", man.get("schema_version"), who)


def find_step(man: Mapping[str, Any], step: int) -> dict[str, Any] | None:
    """The record of ``step`` in ``man["steps"]``, or None."""
    return next((s for s in man.get("steps", []) if int(s["step"]) == int(step)), None)


def new_step_record(step: int) -> dict[str, Any]:
    """A new step record. Every record carries the v1 keys (models, files, summary, view,
    n_samples): v1 readers require them, and the token kind keeps its entry there."""
    return {"step": step, "revision": 0, "models": {}, "files": {}, "summary": L.summary_relpath(step),
            "view": L.view_relpath(step), "n_samples": 0}


def record_kind(man: dict[str, Any], kind: StorageKind, run_id: str) -> None:
    """Note in ``man["kinds"]`` that the run holds ``kind`` (refusing a newer version of it)."""
    kind.check_version(man, f"run {run_id}")
    man.setdefault("kinds", {}).setdefault(kind.name, {"version": kind.version})


def listed_methods(man: Mapping[str, Any], step: int, model: str, kind: StorageKind) -> set[str]:
    """Methods of (step, model) that ``man`` lists for ``kind``."""
    record = find_step(man, step)
    return set(kind.files(record).get(model, {})) if record is not None else set()


def run_tags(man: Mapping[str, Any], root: str) -> dict[str, str]:
    """The run tags that let listings skip the manifest download (see :mod:`layout`)."""
    steps = [int(s["step"]) for s in man.get("steps", [])]
    probe = man.get("probe") or {}
    tags = {
        L.TAG_SCHEMA_VERSION: str(L.SCHEMA_VERSION),
        L.TAG_ARTIFACT_ROOT: root,
        L.TAG_STEPS: str(len(steps)),
        L.TAG_METHODS: json.dumps(sorted(man.get("methods", {}))),
        L.TAG_MODELS: json.dumps(sorted(man.get("models", {}))),
        L.TAG_N_PROBE: str(probe.get("n", 0)),
    }
    if steps:
        tags[L.TAG_LAST_STEP] = str(max(steps))
    return {k: v[:8000] for k, v in tags.items()}
