"""The writer's commit of spooled work: a step's files, THEN the manifest listing them, THEN its metrics.

:func:`commit_pending` commits, in order, a pending probe set and every spool entry of a
run (see :mod:`attrib_mlops.tracking.writer` for the protocol and :mod:`.spool` for the
entries). Per entry:

1. a view the caller deferred (``entry["view_pending"]``, the background uploader's
   case) is rendered now, from the results handed over in memory or, after a restart,
   read back from the entry's files;
2. ``files/`` is uploaded to ``attribution/steps/<step>/``;
3. the manifest is rewritten listing the step, with the SHA-256 of every uploaded file
   (:mod:`.integrity`);
4. the scalar metrics and run tags go out in ``log_batch`` calls; the entry is dropped.

Every stage is idempotent on retry: methods the manifest already lists are not uploaded
again, metrics already present at the step are not logged again.
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

from attrib_mlops._util import now_iso
from attrib_mlops.tracking import documents
from attrib_mlops.tracking import layout as L
from attrib_mlops.tracking import manifest as M
from attrib_mlops.tracking.datasets import log_probe_input
from attrib_mlops.tracking.integrity import hash_tree, record_hashes
from attrib_mlops.tracking.kinds import DEFAULT_KIND, get_kind

__all__ = ["commit_pending", "commit_probe", "commit_entry", "render_pending_view"]

logger = logging.getLogger("attrib_mlops.tracking.writer")


def commit_pending(w: Any) -> None:
    """Commit the pending probe set and every spool entry of writer ``w``, in order (raises on failure)."""
    if w.spool.probe_path.exists():
        commit_probe(w)
    for entry in w.spool.entries():
        commit_entry(w, entry)


def commit_probe(w: Any) -> None:
    from mlflow.entities import RunTag

    section = json.loads(w.spool.probe_path.read_text(encoding="utf-8"))
    man = copy.deepcopy(w._server_manifest())
    old = man.get("probe")
    if old and old.get("fingerprint") == section["fingerprint"]:
        w.spool.drop_probe()
        return
    if old and man.get("steps"):
        logger.warning("run %s already has steps on probe set %s; the new probe set is not recorded",
                       w.run_id, old.get("fingerprint", "")[:12])
        w.spool.drop_probe()
        return
    man["probe"] = section
    w._upload_manifest(man)
    w.client.log_batch(w.run_id, tags=[RunTag(k, v) for k, v in M.run_tags(man, w.artifact_root).items()])
    log_probe_input(w.client, w.run_id, section, L.manifest_path(w.artifact_root))
    w.spool.drop_probe()


def render_pending_view(w: Any, entry: Path, info: dict[str, Any]) -> None:
    """Write the ``view.html`` a background ``log_step`` deferred (no-op when it is there)."""
    if not info.get("view_pending"):
        return
    kind = get_kind(info.get("kind", DEFAULT_KIND))
    files = w.spool.files(entry)
    step, model = int(info["step"]), info["model"]
    _, view = documents.paths(kind, files, step)
    if view.exists():
        return
    panels = w._view_inputs.pop(str(entry), None)
    if panels is None:  # after a restart: the results are in the entry's own files
        panels = {(model, m): kind.read(files / rel) for m, rel in info["files"].items()}
    documents.write_view(kind, view, panels, w._view_meta(step), step)


def commit_entry(w: Any, entry: Path) -> None:
    """Commit one spool entry of writer ``w`` (see the module docstring)."""
    info = w.spool.read(entry)
    step, model = int(info["step"]), info["model"]
    kind = get_kind(info.get("kind", DEFAULT_KIND))  # entries spooled before kinds existed are token matrices
    man = copy.deepcopy(w._server_manifest())
    steps = man.setdefault("steps", [])
    record = M.find_step(man, step)
    listed_files = kind.files(record) if record is not None else {}
    listed = set(listed_files.get(model, {}))
    new_methods = [m for m in info["methods"] if m not in listed]
    if not new_methods:  # committed before (retry after a crash, or a duplicate call)
        if not metrics_present(w, info["metrics"]):
            log_metrics(w, info["metrics"], man)
        w._view_inputs.pop(str(entry), None)
        w.spool.drop(entry)
        return
    render_pending_view(w, entry, info)
    files = w.spool.files(entry)
    for m in info["methods"]:
        if m in listed:
            (files / info["files"][m]).unlink(missing_ok=True)
    others = {(mo, me): rel for mo, d in listed_files.items() for me, rel in d.items()}
    if others:
        documents.merge_into(w.client, w.run_id, w.artifact_root, kind, step, w.k, model, info,
                             files, others, w._view_meta(step))
    step_prefix = L.join(L.STEPS_DIR, L.step_dirname(step))
    hashes = hash_tree(files, step_prefix)  # exactly the bytes about to be uploaded

    w.client.log_artifacts(w.run_id, str(files), L.step_path(step, w.artifact_root))

    # --- the step's files exist: now (and only now) list it in the manifest
    M.record_kind(man, kind, w.run_id)
    if record is None:
        record = M.new_step_record(step)
        steps.append(record)
        steps.sort(key=lambda s: int(s["step"]))
    record["revision"] = int(record.get("revision", 0)) + 1
    record["logged"] = now_iso()
    kentry = kind.entry(record, create=True)
    mlist = kentry["models"].setdefault(model, [])
    fmap = kentry["files"].setdefault(model, {})
    for m in new_methods:
        mlist.append(m)
        fmap[m] = L.join(step_prefix, info["files"][m])
        man.setdefault("methods", {}).setdefault(m, {"path": L.safe_name(m)})
        kentry["n_samples"] = max(int(kentry.get("n_samples", 0)), int(info["n_samples"][m]))
    man.setdefault("models", {}).setdefault(model, {"path": L.safe_name(model)})
    if man.get("probe") is None and w._probe:
        man["probe"] = copy.deepcopy(w._probe)
    record_hashes(man, record, hashes)
    kind.on_commit(man, model, files / info["files"][new_methods[0]])
    w._upload_manifest(man)

    log_metrics(w, [r for r in info["metrics"] if r.get("method") is None or r["method"] in new_methods], man)
    w.spool.drop(entry)


def log_metrics(w: Any, recs: list[dict], man: dict[str, Any]) -> None:
    """Log metric records (and the run tags of ``man``) with ``log_batch``, 900 metrics per call."""
    from mlflow.entities import Metric, RunTag

    ms = []
    for r in recs:
        mid = w._model_ids.check(r.get("model_id"))
        kw = {"model_id": mid} if mid else {}
        ms.append(Metric(r["key"], r["value"], int(r["timestamp"]), int(r["step"]), **kw))
    tags = [RunTag(k, v) for k, v in M.run_tags(man, w.artifact_root).items()]
    chunks = [ms[i: i + 900] for i in range(0, len(ms), 900)] or [[]]
    for i, chunk in enumerate(chunks):
        w.client.log_batch(w.run_id, metrics=chunk, tags=tags if i == len(chunks) - 1 else [])


def metrics_present(w: Any, recs: list[dict]) -> bool:
    """Whether the first record's metric already has a point at its step (the batch went out before)."""
    if not recs:
        return True
    step = int(recs[0]["step"])
    hist = w.client.get_metric_history(w.run_id, recs[0]["key"])
    return any(int(m.step) == step for m in hist)
