"""The writer's local spool: steps wait here until MLflow has them.

Layout under ``<spool_dir>/<run_id>/``::

    probe.json                       # a probe set not yet in the manifest
    0000000010/                      # one directory per step
      001-<model>/                   # one entry per log_step call, in call order
        files/                       # exactly what goes to attribution/steps/<step>/
        entry.json                   # step, model, kind, methods, files, metrics (written last)

An entry directory appears by an atomic rename of a finished temporary directory,
so a crash never leaves a half-written entry that looks complete; temporary
directories start with ``.`` and are ignored. Staging and dropping entries are
serialised in the process (the background uploader drops what training stages), so a
drop never removes a directory an entry is being staged into.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attrib_mlops._util import dumps
from attrib_mlops.tracking import layout as L

__all__ = ["Spool", "default_spool_dir", "write_json", "PROBE_FILE", "ENTRY_FILE"]

PROBE_FILE = "probe.json"
ENTRY_FILE = "entry.json"
_DIRS = threading.RLock()  # creating and removing spool directories


def default_spool_dir() -> Path:
    """``$XDG_CACHE_HOME/attrib-mlops/spool`` (``~/.cache/attrib-mlops/spool`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "attrib-mlops" / "spool"


def write_json(obj: Any, path: Path) -> None:
    """Write ``obj`` as compact JSON (NaN as null) through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(dumps(obj), encoding="utf-8")
    os.replace(tmp, path)


class Spool:
    """The spool of one run (``<root>/<run_id>``).

    Example:
        >>> sp = Spool("/tmp/spool", "run1")                                   # doctest: +SKIP
        >>> entry = sp.stage(10, "model", lambda files: {"methods": []})       # doctest: +SKIP
        >>> sp.entries() == [entry]                                            # doctest: +SKIP
        True
    """

    def __init__(self, root: str | os.PathLike, run_id: str) -> None:
        self.root = Path(root)
        self.dir = self.root / run_id

    # ------------------------------------------------------------ probe set
    @property
    def probe_path(self) -> Path:
        return self.dir / PROBE_FILE

    def save_probe(self, section: dict[str, Any]) -> None:
        write_json(section, self.probe_path)

    def load_probe(self) -> dict[str, Any] | None:
        """The spooled probe section, or None when there is none (or it is unreadable)."""
        if not self.probe_path.exists():
            return None
        try:
            return json.loads(self.probe_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def drop_probe(self) -> None:
        self.probe_path.unlink(missing_ok=True)

    # ------------------------------------------------------------ entries
    def stage(self, step: int, model: str, build: Callable[[Path], dict[str, Any]]) -> Path:
        """Create the next entry of ``step``: ``build(files_dir)`` writes the files and returns the entry info.

        Returns:
            The entry directory (complete: ``entry.json`` is written last, then the directory is renamed).
        """
        with _DIRS:
            step_dir = self.dir / L.step_dirname(step)
            tmp = step_dir / f".{L.safe_name(model)}.{uuid.uuid4().hex[:8]}.tmp"
            tmp.mkdir(parents=True)  # from now on no drop (of another process too) removes step_dir
            info = build(tmp / "files")
            write_json(info, tmp / ENTRY_FILE)
            seq = 1 + max([int(p.name.split("-", 1)[0]) for p in step_dir.iterdir()
                           if p.is_dir() and p.name[:3].isdigit()] or [0])
            final = step_dir / f"{seq:03d}-{L.safe_name(model)}"
            os.replace(tmp, final)
            return final

    def entries(self) -> list[Path]:
        """Complete entries, in commit order (step, then call order)."""
        if not self.dir.is_dir():
            return []
        with _DIRS:
            if not self.dir.is_dir():
                return []
            out = []
            for step_dir in sorted(p for p in self.dir.iterdir() if p.is_dir() and p.name.isdigit()):
                out.extend(sorted(p for p in step_dir.iterdir()
                                  if p.is_dir() and not p.name.startswith(".") and (p / ENTRY_FILE).exists()))
            return out

    @staticmethod
    def read(entry: Path) -> dict[str, Any]:
        return json.loads((entry / ENTRY_FILE).read_text(encoding="utf-8"))

    @staticmethod
    def files(entry: Path) -> Path:
        return entry / "files"

    def drop(self, entry: Path) -> None:
        """Delete a committed entry, and its step and run directories once empty."""
        with _DIRS:
            shutil.rmtree(entry, ignore_errors=True)
            for d in (entry.parent, self.dir):
                try:
                    for p in d.iterdir():  # temporaries of a crashed stage (a live one is younger)
                        if p.name.startswith(".") and p.name.endswith(".tmp") and time.time() - p.stat().st_mtime > 3600:  # noqa: E501
                            shutil.rmtree(p, ignore_errors=True)
                    d.rmdir()  # only when empty: a stage in progress (any process) keeps it
                except OSError:
                    pass

    def pending(self) -> list[Path]:
        """A pending probe set and the pending entries, in commit order."""
        return ([self.probe_path] if self.probe_path.exists() else []) + self.entries()
