"""The local results folder of a job: its writer (:class:`LocalFolderSink`) and its reader.

Layout (what ``attrib-mlops run`` writes by default)::

    <output_dir>/manifest.json                  job spec, probe set, models, versions, status
    <output_dir>/results/<model>/<method>.jsonl one AttributionResult.to_dict() a line
    <output_dir>/summary.json                   mean metrics per (model, method)

Every file is rewritten atomically (temporary file, fsync, ``os.replace``) after
each (model, method) pair, so the folder is consistent at any moment;
``manifest.json``'s ``status`` is ``RUNNING`` until the job ends. Nothing is
pickled: results are JSON.

Example:
    >>> from attrib_mlops.tracking.folder import load_local_results    # doctest: +SKIP
    >>> load_local_results("attrib-results/keyvalue-tiny")[("tiny", "saliency")][0].shape  # doctest: +SKIP
    (12, 1)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from .._util import library_versions, now_iso
from ..errors import InputError
from ..result import AttributionResult

logger = logging.getLogger(__name__)

__all__ = ["FORMAT", "atomic_write_text", "LocalFolderSink", "read_manifest", "load_local_results"]

#: Version of the folder format (``manifest.json``'s ``format``).
FORMAT = 1


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temporary file in the same folder, fsync it, then ``os.replace`` it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def summarize_logged(results: list[AttributionResult], ground_truth: dict[str, Any], k: int) -> dict[str, Any]:
    """:func:`~attrib_mlops.analysis.summary.summarize_results`, logging the samples whose ground truth is unusable."""
    from ..analysis.summary import summarize_results

    if results and getattr(results[0], "kind", None) == "training_data":  # one score per training example
        from ..analysis.kinds.training_data import summarize_training_data

        return summarize_training_data(results, k=k)
    problems: list[tuple[str | None, str]] = []
    out = summarize_results(results, ground_truth, k=k, problems=problems)
    for sid, msg in problems:
        logger.warning("sample %s: ground truth not usable (%s); alignment metrics skipped", sid, msg)
    return out


class LocalFolderSink:
    """A job sink writing ``manifest.json``, ``results/<model>/<method>.jsonl`` and ``summary.json``.

    Every file is rewritten atomically after each pair, so the folder is consistent at any
    moment; ``manifest.json``'s ``status`` is ``RUNNING`` until :meth:`end`.

    Args:
        output_dir: the folder (created when missing).
        k: top-k size of the summaries' metrics.
    """

    def __init__(self, output_dir: str | os.PathLike, k: int = 3):
        self.output_dir = Path(output_dir)
        self.k = k
        self._manifest: dict[str, Any] = {}
        self._summary: dict[tuple[str, str], dict[str, Any]] = {}
        self._order: dict[tuple[str, str], tuple[int, int]] = {}
        self._gt: dict[str, list[int] | None] = {}

    def begin(self, job: Any, probe_set: Any) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._gt = {s.id: s.ground_truth for s in probe_set}
        self._order = {
            (m.name, meth): (i, j) for i, m in enumerate(job.models) for j, meth in enumerate(job.methods)
        }
        self._summary = {}
        self._manifest = {
            "format": FORMAT,
            "name": job.name,
            "status": "RUNNING",
            "started": now_iso(),
            "finished": None,
            "job": job.to_dict(),
            "models": [{**m.model_dump(mode="json"), "fingerprint": None} for m in job.models],
            "methods": list(job.methods),
            "versions": library_versions(),
            "probe_set": {
                "source": probe_set.source,
                "fingerprint": probe_set.fingerprint,
                "n": len(probe_set),
                "samples": probe_set.to_records(),
            },
            "pairs": [],
        }
        self._write_manifest()

    def write(self, model_name: str, method: str, results: list[AttributionResult]) -> None:
        rel = Path("results") / model_name / f"{method}.jsonl"
        lines = [json.dumps(r.to_dict(), ensure_ascii=False, allow_nan=False) for r in results]
        atomic_write_text(self.output_dir / rel, "".join(line + "\n" for line in lines))
        engine = results[0].engine if results else None
        fp = results[0].info.get("model_fingerprint") if results else None
        for m in self._manifest.get("models", []):
            if m["name"] == model_name and fp:
                m["fingerprint"] = fp
        pairs = [p for p in self._manifest["pairs"] if (p["model"], p["method"]) != (model_name, method)]
        pairs.append({"model": model_name, "method": method, "engine": engine, "n": len(results),
                      "path": rel.as_posix()})
        pairs.sort(key=lambda p: self._order.get((p["model"], p["method"]), (1 << 30, 0)))
        self._manifest["pairs"] = pairs
        self._summary[(model_name, method)] = {
            "model": model_name,
            "method": method,
            "engine": engine,
            "n": len(results),
            "metrics": summarize_logged(results, self._gt, k=self.k),
        }
        self._write_summary()
        self._write_manifest()

    def end(self, status: Literal["FINISHED", "FAILED", "KILLED"]) -> None:
        self._manifest["status"] = status
        self._manifest["finished"] = now_iso()
        self._write_manifest()

    def _write_manifest(self) -> None:
        atomic_write_text(self.output_dir / "manifest.json", json.dumps(self._manifest, indent=2, ensure_ascii=False))

    def _write_summary(self) -> None:
        rows = sorted(self._summary.values(), key=lambda r: self._order.get((r["model"], r["method"]), (1 << 30, 0)))
        doc = {"name": self._manifest.get("name"), "k": self.k, "pairs": rows}
        atomic_write_text(self.output_dir / "summary.json", json.dumps(doc, indent=2, allow_nan=False))


def read_manifest(output_dir: str | os.PathLike) -> dict[str, Any]:
    """The folder's ``manifest.json``.

    Raises:
        InputError: the folder holds no manifest (not the output folder of a job).
    """
    out_dir = Path(output_dir)
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.exists():
        raise InputError(f"'{out_dir}' holds no manifest.json; is it the output folder of a job?")
    return json.loads(manifest_path.read_text(encoding="utf-8"))


def _decode(d: dict[str, Any]) -> Any:
    """A result from its ``to_dict`` form: the kind it names (context sources, ...), else a token matrix."""
    from ..analysis.registry import get_kind

    kind = d.get("kind")
    return get_kind(kind).result_type.from_dict(d) if isinstance(kind, str) else AttributionResult.from_dict(d)


def load_local_results(output_dir: str | os.PathLike) -> dict[tuple[str, str], list[AttributionResult]]:
    """Read what a :class:`LocalFolderSink` wrote: ``{(model, method): [results in sample order]}``."""
    out_dir = Path(output_dir)
    manifest = read_manifest(out_dir)
    out: dict[tuple[str, str], list[AttributionResult]] = {}
    for pair in manifest.get("pairs", []):
        path = out_dir / pair["path"]
        with path.open(encoding="utf-8") as f:
            out[(pair["model"], pair["method"])] = [_decode(json.loads(line)) for line in f if line.strip()]
    return out
