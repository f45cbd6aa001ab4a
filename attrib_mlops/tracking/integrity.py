"""Content hashes of a step's artifact files: recorded by the writer, verified by the reader.

A byte overwritten inside a Parquet page can still decode to valid-looking numbers, so
the reader cannot rely on the format to notice. The writer therefore records, when it
lists a step in the manifest, the SHA-256 of every file it uploaded for that step, in
the step record (additive to schema v1; paths relative to the artifact root)::

    {"step": 10, ..., "sha256": {"steps/0000000010/model/saliency.parquet": "<64 hex>",
                                 "steps/0000000010/summary.json": "...",
                                 "steps/0000000010/view.html": "..."}}

and ``"integrity": {"sha256": 1}`` at the top of the manifest (the version of this
record). The reader compares a file with its hash before decoding it and raises
:class:`~attrib_mlops.tracking.errors.IntegrityError` naming the file on a mismatch.
Steps written before hashes existed (no ``sha256`` key, or a file not in it) are read
as before, without a check and without a warning.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = p.write_bytes(b"abc")
    >>> sha256_file(p)[:12]
    'ba7816bf8f01'
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from attrib_mlops.tracking.errors import IntegrityError

__all__ = ["HASH_KEY", "INTEGRITY_KEY", "INTEGRITY_VERSION", "sha256_file", "hash_tree", "record_hashes",
           "expected_hash", "Verifier"]

#: Step-record key of ``{artifact relpath: sha256 hex}``.
HASH_KEY = "sha256"
#: Manifest key recording that (and in which version) steps carry content hashes.
INTEGRITY_KEY = "integrity"
INTEGRITY_VERSION = 1
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def hash_tree(files: Path, prefix: str) -> dict[str, str]:
    """``{prefix/relpath: sha256}`` of every file under ``files`` (a staged step directory)."""
    out = {}
    for p in sorted(files.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            out[f"{prefix}/{p.relative_to(files).as_posix()}"] = sha256_file(p)
    return out


def record_hashes(manifest: dict[str, Any], step_record: dict[str, Any], hashes: Mapping[str, str]) -> None:
    """Add ``hashes`` to a step record (replacing the hashes of rewritten files) and mark the manifest."""
    step_record.setdefault(HASH_KEY, {}).update(hashes)
    manifest[INTEGRITY_KEY] = {HASH_KEY: INTEGRITY_VERSION}


def expected_hash(step_records: Iterable[Mapping[str, Any]], relpath: str) -> str | None:
    """The recorded hash of ``relpath`` (relative to the artifact root), or None when none was recorded."""
    for rec in step_records:
        hashes = rec.get(HASH_KEY)
        if isinstance(hashes, dict) and isinstance(hashes.get(relpath), str):
            return hashes[relpath]
    return None


class Verifier:
    """Checks local files against recorded hashes, once per file version (path, size, mtime).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> _ = p.write_bytes(b"abc")
        >>> Verifier().check(p, sha256_file(p), "run r: a.txt")  # matches: returns None
    """

    def __init__(self) -> None:
        self._ok: set[tuple[str, int, int, str]] = set()

    def check(self, local: str | os.PathLike, expected: str | None, where: str) -> None:
        """Raise :class:`IntegrityError` when ``local``'s bytes do not hash to ``expected`` (None: no check).

        Args:
            local: the file on disk.
            expected: the recorded hex SHA-256.
            where: how the message names the file (``run <id>: <artifact path>``).
        """
        if not expected:
            return
        st = os.stat(local)
        key = (os.fspath(local), st.st_size, st.st_mtime_ns, expected)
        if key in self._ok:
            return
        got = sha256_file(local)
        if got != expected:
            raise IntegrityError(
                f"{where}: content does not match the SHA-256 recorded when it was logged (expected "
                f"{expected[:12]}…, got {got[:12]}…): the file was modified or corrupted in the artifact store; "
                "restore it from a backup or log the step again in a new run")
        self._ok.add(key)
