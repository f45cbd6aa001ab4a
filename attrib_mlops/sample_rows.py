"""Rows to :class:`Sample`\ s: the one normalisation of probe samples, and reading rows from files.

Two row shapes come in, and both end as :class:`Sample`:

* source rows (files, datasets, records; :func:`make_sample`): a field mapping,
  a non-empty prompt, ids ``sample-<row>`` when missing, ground truth as a list,
  a JSON list string or space-separated ints;
* stored rows (:func:`stored_sample`): the shape of the ``probe`` section of an
  attribution manifest, which :meth:`AttributionWriter.log_probe_set` accepts:
  ``id`` (or ``sample_id``, default the position), ``prompt`` (may be empty),
  ``target`` (``""`` = none), ``ground_truth``.

:meth:`Sample.stored_record` is the way back to the stored shape, so a sample
read from a run and written again keeps its id, text and fingerprint.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "Sample",
    "make_sample",
    "stored_sample",
    "parse_ground_truth",
    "check_unique_ids",
    "columns",
    "require_prompt",
    "select",
    "jsonable",
    "read_rows",
    "FILE_SUFFIXES",
]

FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


@dataclass
class Sample:
    """One probe: a prompt, an optional teacher-forced target and optional ground truth.

    Attributes:
        id: unique within its probe set.
        prompt: non-empty prompt text.
        target: continuation text (include the leading space the tokenizer needs), or None.
        ground_truth: prompt token positions that hold the evidence, or None.
        meta: the row's other fields (JSON-friendly).
    """

    id: str
    prompt: str
    target: str | None = None
    ground_truth: list[int] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prompt": self.prompt,
            "target": self.target,
            "ground_truth": None if self.ground_truth is None else list(self.ground_truth),
            "meta": dict(self.meta),
        }

    def stored_record(self) -> dict[str, Any]:
        """The stored shape (manifest ``probe.samples``): ``id``, ``prompt``, ``target`` (``""`` = none),
        ``ground_truth``."""
        return {
            "id": self.id,
            "prompt": self.prompt,
            "target": self.target or "",
            "ground_truth": None if self.ground_truth is None else list(self.ground_truth),
        }


def columns(records: Sequence[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        for k in r:
            seen.setdefault(str(k), None)
    return list(seen)


def require_prompt(prompt_field: str, columns: Sequence[str], source: str) -> None:
    if prompt_field not in columns:
        avail = ", ".join(columns) if columns else "(none)"
        raise InputError(
            f"{source}: prompt field {prompt_field!r} not found; available columns: {avail}. "
            "Set samples.prompt_field (prompt_field=...) to the column that holds the prompts."
        )


def select(n: int, limit: int | None, seed: int | None) -> list[int]:
    if limit is not None and limit < 1:
        raise InputError(f"limit must be >= 1, got {limit}")
    if limit is None or limit >= n:
        return list(range(n))
    if seed is None:
        return list(range(limit))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n, size=limit, replace=False))


def jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    if v is None or isinstance(v, (str, int)):
        return v
    return str(v)


def parse_ground_truth(v: Any, where: str) -> list[int] | None:
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return None
        if s.startswith("["):
            try:
                v = json.loads(s)
            except json.JSONDecodeError as e:
                raise InputError(f"{where}: ground truth {s!r} is not a JSON list of ints ({e.msg})") from None
        else:
            parts = s.replace(",", " ").split()
            try:
                return [int(p) for p in parts]
            except ValueError:
                raise InputError(
                    f"{where}: ground truth {s!r} must be a JSON list like '[2, 5]' or space-separated ints like '2 5'"
                ) from None
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return [int(v)]
    if not isinstance(v, (list, tuple)):
        raise InputError(f"{where}: ground truth must be a list of token positions, got {type(v).__name__}")
    out = []
    for x in v:
        if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
            if isinstance(x, float) and x.is_integer():
                x = int(x)
            else:
                raise InputError(f"{where}: ground truth must hold ints (token positions), got {x!r}")
        if int(x) < 0:
            raise InputError(f"{where}: ground truth position {int(x)} is negative")
        out.append(int(x))
    return out


def make_sample(
    row: dict[str, Any],
    index: int,
    prompt_field: str,
    target_field: str | None,
    gt_field: str | None,
    id_field: str | None,
    source: str,
) -> Sample:
    where = f"{source}: row {index}"
    prompt = row.get(prompt_field)
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(f"{where}: field {prompt_field!r} must be a non-empty string, got {prompt!r}")
    target = row.get(target_field) if target_field else None
    if isinstance(target, float) and math.isnan(target):
        target = None
    if target is not None and not isinstance(target, str):
        raise InputError(f"{where}: field {target_field!r} must be a string, got {type(target).__name__}")
    if target == "":
        target = None  # an empty cell (CSV) means "no target"
    gt = parse_ground_truth(row.get(gt_field), where) if gt_field else None
    raw_id = row.get(id_field) if id_field else None
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        sid = f"sample-{index}"
    else:
        sid = str(jsonable(raw_id))
    used = {prompt_field, target_field, gt_field, id_field}
    meta = {str(k): jsonable(v) for k, v in row.items() if k not in used}
    return Sample(id=sid, prompt=prompt, target=target, ground_truth=gt, meta=meta)


def check_unique_ids(samples: Sequence[Sample], source: str) -> None:
    seen: set[str] = set()
    dups: list[str] = []
    for s in samples:
        if s.id in seen and s.id not in dups:
            dups.append(s.id)
        seen.add(s.id)
    if dups:
        shown = ", ".join(repr(d) for d in dups[:5]) + (" ..." if len(dups) > 5 else "")
        raise InputError(f"{source}: duplicate sample ids {shown}; every sample needs a unique id")

def stored_sample(row: Any, index: int) -> Sample:
    """A :class:`Sample` from a row of the stored shape (see the module docstring)."""
    if not isinstance(row, Mapping):
        raise InputError(f"probe sample {index} must be a dict with id/prompt/target, got {type(row).__name__}")
    sid = str(row.get("id", row.get("sample_id", index)))
    gt = parse_ground_truth(row.get("ground_truth"), f"probe sample {sid!r}")
    return Sample(id=sid, prompt=str(row.get("prompt", "")), target=str(row.get("target", "") or "") or None,
                  ground_truth=gt)


def read_rows(p: Path) -> list[dict[str, Any]]:
    """Rows of a ``.json`` (list of objects), ``.jsonl``, ``.csv`` or ``.parquet`` file.

    Raises:
        InputError: one line naming the file: an unsupported type, an empty file, text that is
            not UTF-8, a CSV field over the csv module's size limit, an unreadable Parquet file.
    """
    suffix = p.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise InputError(
            f"samples file '{p}' has an unsupported type {suffix or '(no suffix)'}; "
            f"supported: {', '.join(FILE_SUFFIXES)} or a save_to_disk folder"
        )
    if p.is_file() and p.stat().st_size == 0:
        raise InputError(f"samples file '{p}' is empty; it needs at least one sample row")
    try:
        rows = _READERS[suffix](p)
    except UnicodeDecodeError as e:
        raise InputError(f"samples file '{p}' is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                         f"{e.start}); save it as UTF-8") from None
    except csv.Error as e:
        if "field limit" in str(e):
            raise InputError(f"samples file '{p}' has a CSV field longer than the csv module's limit of "
                             f"{csv.field_size_limit():,} characters; shorten it or use JSONL") from None
        raise InputError(f"samples file '{p}' is not valid CSV ({e})") from None
    if not rows:
        raise InputError(f"samples file '{p}' is empty (no sample rows); it needs at least one")
    return rows


def _read_parquet(p: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(p).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"samples file '{p}' is not a readable Parquet file ({e}); write it again") from None


def _read_json(p: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"samples file '{p}' is not valid JSON: {e.msg} at line {e.lineno}") from None
    if not isinstance(data, list):
        raise InputError(f"samples file '{p}' must hold a JSON list of objects, got {type(data).__name__}")
    return data


def _read_jsonl(p: Path) -> list[dict[str, Any]]:
    out = []
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(f"samples file '{p}', line {lineno}: not valid JSON ({e.msg})") from None
    return out


def _read_csv(p: Path) -> list[dict[str, Any]]:
    with p.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise InputError(f"samples file '{p}' has no header row")
        return [dict(r) for r in reader]


_READERS = {".json": _read_json, ".jsonl": _read_jsonl, ".csv": _read_csv, ".parquet": _read_parquet}
