"""A step's documents: ``summary.json`` (metrics) and ``view.html`` (what the MLflow UI shows inline).

Each kind has one pair per step (the token kind at ``steps/<step>/``, others under
``steps/<step>/<kind>/``). The writer stages them with the step's files; when a later
call adds another model or method to a step, :func:`merge_into` rewrites both so they
cover everything the step lists (the Parquet files themselves never change).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrib_mlops.tracking import layout as L
from attrib_mlops.tracking.errors import is_unreachable
from attrib_mlops.tracking.kinds import StorageKind
from attrib_mlops.tracking.spool import write_json

__all__ = ["SUMMARY_FORMAT", "summary_doc", "view_title", "paths", "write_view", "write_documents", "merge_into"]

logger = logging.getLogger("attrib_mlops.tracking.writer")

SUMMARY_FORMAT = "attrib-mlops/step-summary"


def summary_doc(kind: StorageKind, step: int, k: int, models: dict[str, Any]) -> dict[str, Any]:
    """``summary.json`` of ``kind`` at ``step``: ``{"format", "schema_version", "step", "k", "models"}``."""
    return {"format": SUMMARY_FORMAT, "schema_version": L.SCHEMA_VERSION, "step": step, "k": k,
            **kind.summary_header(), "models": models}


def view_title(step: int) -> str:
    return f"Attribution · step {step}"


def paths(kind: StorageKind, files: Path, step: int) -> tuple[Path, Path]:
    """Local paths of the kind's summary and view inside a staged ``files/`` directory."""
    step_prefix = L.join(L.STEPS_DIR, L.step_dirname(step))
    rel = lambda p: p[len(step_prefix) + 1:]  # noqa: E731 - relative to the step directory
    return files / rel(kind.summary_relpath(step)), files / rel(kind.view_relpath(step))


def write_view(kind: StorageKind, view: Path, panels: Mapping[tuple[str, str], list[Any]], meta: dict[str, Any],
               step: int) -> None:
    """Render the kind's view of ``panels`` to ``view`` (through a temporary file, so it appears whole)."""
    tmp = view.with_name(f".{view.name}.tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(kind.render(panels, meta, view_title(step)), encoding="utf-8")
    os.replace(tmp, view)


def write_documents(kind: StorageKind, files: Path, step: int, k: int, model: str, section: dict[str, Any],
                    panels: Mapping[tuple[str, str], list[Any]], meta: dict[str, Any], *, view: bool = True) -> None:
    """Stage the summary (this model's ``section``) and, unless ``view=False``, the view (``panels``) of one
    ``log_step`` call (the background uploader renders a deferred view before the upload)."""
    summary, view_path = paths(kind, files, step)
    write_json(summary_doc(kind, step, k, {model: section}), summary)
    if view:
        write_view(kind, view_path, panels, meta, step)


def merge_into(client: Any, run_id: str, root: str, kind: StorageKind, step: int, k: int, model: str,
               info: dict[str, Any], files: Path, others: dict[tuple[str, str], str], meta: dict[str, Any]) -> None:
    """Rewrite a staged summary and view so they also cover what the step already lists.

    Args:
        client, run_id, root: where the step's listed files are.
        kind: the kind of the staged entry.
        info: the spool entry (``methods``, ``files``).
        files: the entry's ``files/`` directory.
        others: ``{(model, method): artifact relpath}`` already listed for this step and kind.
        meta: the view's metadata (step, run id, probe samples, sample cap).
    """
    summary_path, view_path = paths(kind, files, step)
    with tempfile.TemporaryDirectory(prefix="attrib-mlops-merge-") as tmp:
        try:
            local = client.download_artifacts(run_id, L.join(root, kind.summary_relpath(step)), tmp)
            doc = json.loads(Path(local).read_text(encoding="utf-8"))
        except Exception as e:  # noqa: BLE001
            if is_unreachable(e):
                raise
            logger.warning("summary.json of step %d unreadable (%s); rewriting it from this entry", step, e)
            doc = summary_doc(kind, step, k, {})
        mine = json.loads(summary_path.read_text(encoding="utf-8"))["models"][model]
        sec = doc.setdefault("models", {}).setdefault(model, {"methods": {}, "agreement": {}})
        for m in info["methods"]:
            if (model, m) not in others:
                sec["methods"][m] = mine["methods"][m]
        if mine.get("agreement"):
            sec["agreement"] = mine["agreement"]
        write_json(doc, summary_path)
        panels: dict[tuple[str, str], list[Any]] = {}
        for (mo, me), rel in sorted(others.items()):
            local = client.download_artifacts(run_id, L.join(root, rel), tmp)
            panels[(mo, me)] = kind.read(local)
        for m in info["methods"]:
            if (model, m) not in others:
                panels[(model, m)] = kind.read(files / info["files"][m])
        view_path.write_text(kind.render(panels, meta, view_title(step)), encoding="utf-8")
