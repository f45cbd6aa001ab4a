"""Drift references: the previous and the first logged step of each (kind, model, method).

A step's drift metrics compare it with the step logged just before it and with the
first one. The writer finds them in an in-memory cache (steps it logged or read),
else in the spool (entries not committed yet), else in MLflow (files the manifest
lists), reading them with the kind's own reader. Drift is best effort: an
unreadable reference only costs its metrics (with a warning).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from attrib_mlops.errors import AttribError
from attrib_mlops.tracking import layout as L
from attrib_mlops.tracking.errors import is_tracking_failure
from attrib_mlops.tracking.kinds import DEFAULT_KIND, StorageKind
from attrib_mlops.tracking.spool import Spool

__all__ = ["References", "WHICH"]

logger = logging.getLogger("attrib_mlops.tracking.writer")

#: The reference points of drift, in the order the summary lists them.
WHICH = ("prev", "first")
_Ref = tuple[int | None, dict[str, Any] | None]


class References:
    """Reference results of one run for drift (see the module docstring)."""

    def __init__(self, client: Any, run_id: str, artifact_root: str, spool: Spool) -> None:
        self.client = client
        self.run_id = run_id
        self.artifact_root = artifact_root
        self.spool = spool
        self._cache: dict[tuple[str, str, str], dict[str, tuple[int, dict[str, Any]]]] = {}

    def remember(self, kind: StorageKind, step: int, model: str, method: str, by_sid: dict[str, Any]) -> None:
        """Keep ``by_sid`` (``{sample_id: result}``) as the last and/or first step of (kind, model, method)."""
        slot = self._cache.setdefault((kind.name, model, method), {})
        if "last" not in slot or step >= slot["last"][0]:
            slot["last"] = (step, by_sid)
        if "first" not in slot or step < slot["first"][0]:
            slot["first"] = (step, by_sid)

    def for_step(self, kind: StorageKind, manifest: dict[str, Any] | None, step: int, model: str,
                 methods: list[str], fetch: bool) -> dict[str, dict[str, _Ref]]:
        """``{method: {"prev": (step, results), "first": (step, results)}}`` for a step about to be logged.

        ``fetch=False`` never downloads (the server is known to be down).
        """
        return {m: {w: self._reference(kind, manifest, step, model, m, w, fetch) for w in WHICH} for m in methods}

    def _known_steps(self, kind: StorageKind, manifest: dict[str, Any] | None, model: str,
                     method: str) -> dict[int, Path | str]:
        """Steps of (model, method) -> where their file lives (spool path, artifact relpath or ``"cache"``)."""
        out: dict[int, Path | str] = {}
        for s in (manifest or {}).get("steps", []):
            rel = kind.files(s).get(model, {}).get(method)
            if rel:
                out[int(s["step"])] = rel
        for entry in self.spool.entries():
            try:
                info = self.spool.read(entry)
            except (OSError, ValueError):
                continue
            if (info.get("kind", DEFAULT_KIND) == kind.name and info.get("model") == model
                    and method in info.get("files", {})):
                out.setdefault(int(info["step"]), self.spool.files(entry) / info["files"][method])
        for which in ("last", "first"):
            if which in self._cache.get((kind.name, model, method), {}):
                out.setdefault(self._cache[(kind.name, model, method)][which][0], "cache")
        return out

    def _reference(self, kind: StorageKind, manifest: dict[str, Any] | None, step: int, model: str, method: str,
                   which: str, fetch: bool) -> _Ref:
        known = {s: w for s, w in self._known_steps(kind, manifest, model, method).items() if s < step}
        if not known:
            return None, None
        ref_step = max(known) if which == "prev" else min(known)
        for slot in self._cache.get((kind.name, model, method), {}).values():
            if slot[0] == ref_step:
                return ref_step, slot[1]
        where = known[ref_step]
        try:
            if isinstance(where, Path):
                rs = kind.read(where)
            elif where != "cache" and fetch:
                with tempfile.TemporaryDirectory(prefix="attrib-mlops-ref-") as tmp:
                    local = self.client.download_artifacts(self.run_id, L.join(self.artifact_root, where), tmp)
                    rs = kind.read(local)
            else:
                return ref_step, None
        except Exception as e:  # noqa: BLE001 - drift is best effort
            if not (is_tracking_failure(e) or isinstance(e, AttribError)):
                raise
            logger.warning("drift vs step %d of %s/%s skipped: %s", ref_step, model, method, e)
            return ref_step, None
        by_sid = {str(r.sample_id): r for r in rs}
        self.remember(kind, ref_step, model, method, by_sid)
        return ref_step, by_sid
