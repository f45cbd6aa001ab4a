"""Probe samples: the prompts a job attributes, loaded from files, datasets or built-in tasks.

A :class:`Sample` is one prompt with an optional teacher-forced ``target``, optional
``ground_truth`` (token positions in the prompt that hold the evidence) and free-form
``meta``. A :class:`ProbeSet` is an ordered list of samples with unique ids, a
``fingerprint`` that changes whenever the selected content changes, and a ``source``
description for provenance.

Sources (see :meth:`ProbeSet.from_spec`):

* ``.json`` (a list of objects), ``.jsonl`` (one object a line), ``.csv`` (header row;
  ``ground_truth`` as a JSON list string ``"[2, 5]"`` or space-separated ints ``"2 5"``),
  ``.parquet``, or a folder written by ``datasets.Dataset.save_to_disk``;
* a ``datasets.Dataset`` (:meth:`ProbeSet.from_dataset`);
* built-in synthetic tasks: ``demo:keyvalue`` and ``demo:keyvalue-shortcut``
  (:mod:`attrib_mlops.demo.tasks`, parameters ``n`` and ``seed``).

Selection: ``limit`` rows; with a ``seed`` a deterministic random subset drawn with
``numpy.random.default_rng(seed)`` (never the global RNG), kept in source order;
without a seed the first ``limit`` rows.

Example:
    >>> ps = ProbeSet.from_records([{"prompt": "a b", "target": " c", "ground_truth": "1"}])
    >>> ps[0].id, ps[0].ground_truth
    ('sample-0', [1])
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import InputError

__all__ = ["Sample", "ProbeSet", "SamplesSpec", "BUILTIN_SOURCES", "register_builtin_source", "FILE_SUFFIXES"]

FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
DEMO_PREFIX = "demo:"


# --------------------------------------------------------------------------- spec
class SamplesSpec(BaseModel):
    """Where a job's samples come from (the ``samples:`` section of a job spec).

    Attributes:
        source: a file path (``.json``/``.jsonl``/``.csv``/``.parquet``), a folder saved
            with ``Dataset.save_to_disk``, or a built-in source such as ``demo:keyvalue``.
            Relative paths are relative to the current working directory.
        prompt_field / target_field / ground_truth_field / id_field: column names.
            A missing target, ground-truth or id column is allowed (targets can be
            generated; ids are generated as ``sample-<row index>``); a missing prompt
            column is an error.
        limit: keep at most this many rows.
        seed: with ``limit``, pick a deterministic random subset; for ``demo:`` sources
            it is also the seed of the generated data (default 1234, held out from
            the small seeds used for training).
        n: number of rows a ``demo:`` source generates (default 16).
    """

    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1)
    prompt_field: str = "prompt"
    target_field: str | None = "target"
    ground_truth_field: str | None = "ground_truth"
    id_field: str | None = "id"
    limit: int | None = Field(None, ge=1)
    seed: int | None = None
    n: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _n_only_for_demo(self) -> SamplesSpec:
        if self.n is not None and not self.source.startswith(DEMO_PREFIX):
            raise ValueError(
                f"'samples.n' only applies to built-in '{DEMO_PREFIX}...' sources, not {self.source!r}; "
                "use 'samples.limit' to keep fewer rows of a file"
            )
        return self


# --------------------------------------------------------------------------- builtins
def _demo_keyvalue(shortcut: bool) -> Callable[[int, int], Any]:
    def make(n: int, seed: int):
        from .demo import tasks  # lazy: the demo package is optional at import time

        return tasks.make_keyvalue_dataset(n, seed=seed, shortcut=shortcut)

    return make


#: Built-in sources: name -> ``f(n, seed) -> datasets.Dataset``.
BUILTIN_SOURCES: dict[str, Callable[[int, int], Any]] = {
    "demo:keyvalue": _demo_keyvalue(False),
    "demo:keyvalue-shortcut": _demo_keyvalue(True),
}
DEMO_DEFAULT_N = 16
DEMO_DEFAULT_SEED = 1234


def register_builtin_source(name: str, factory: Callable[[int, int], Any]) -> None:
    """Add a built-in source ``name`` (e.g. ``"demo:mytask"``): ``factory(n, seed) -> Dataset``."""
    if not name.startswith(DEMO_PREFIX):
        raise ValueError(f"built-in source names start with {DEMO_PREFIX!r}, got {name!r}")
    BUILTIN_SOURCES[name] = factory


# --------------------------------------------------------------------------- sample
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


# --------------------------------------------------------------------------- probe set
@dataclass
class ProbeSet:
    """Ordered samples with unique ids, a content fingerprint and a source description."""

    samples: list[Sample]
    fingerprint: str
    source: str

    def __post_init__(self) -> None:
        _check_unique_ids(self.samples, self.source)

    # sequence protocol
    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.samples]

    @property
    def prompts(self) -> list[str]:
        return [s.prompt for s in self.samples]

    @property
    def targets(self) -> list[str | None]:
        return [s.target for s in self.samples]

    def by_id(self) -> dict[str, Sample]:
        return {s.id: s for s in self.samples}

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-friendly list of dicts (``id``, ``prompt``, ``target``, ``ground_truth``, ``meta``)."""
        return [s.to_record() for s in self.samples]

    def __repr__(self) -> str:
        return f"ProbeSet({len(self.samples)} samples from {self.source!r}, fingerprint={self.fingerprint[:12]})"

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_records(
        cls,
        records: Sequence[dict[str, Any]],
        *,
        prompt_field: str = "prompt",
        target_field: str | None = "target",
        ground_truth_field: str | None = "ground_truth",
        id_field: str | None = "id",
        limit: int | None = None,
        seed: int | None = None,
        source: str = "records",
    ) -> ProbeSet:
        """Samples from a list of dicts; the fingerprint is a sha256 of the normalized content."""
        records = list(records)
        for k, r in enumerate(records):
            if not isinstance(r, dict):
                raise InputError(f"{source}: row {k} is a {type(r).__name__}, expected an object with a "
                                 f"{prompt_field!r} field")
        columns = _columns(records)
        _require_prompt(prompt_field, columns, source)
        idx = _select(len(records), limit, seed)
        samples = [
            _make_sample(records[i], i, prompt_field, target_field, ground_truth_field, id_field, source) for i in idx
        ]
        return cls(samples, _content_fingerprint(samples), source)

    @classmethod
    def from_dataset(
        cls,
        ds: Any,
        prompt_field: str = "prompt",
        target_field: str | None = "target",
        ground_truth_field: str | None = "ground_truth",
        id_field: str | None = "id",
        limit: int | None = None,
        seed: int | None = None,
        *,
        source: str | None = None,
    ) -> ProbeSet:
        """Samples from a ``datasets.Dataset`` (or anything with ``column_names`` and ``select``).

        The fingerprint combines ``ds._fingerprint`` with the selected row indices and the
        field mapping (content hash when the dataset has no fingerprint).
        """
        columns = list(getattr(ds, "column_names", None) or [])
        source = source or f"dataset {getattr(ds, 'info', None) and ds.info.dataset_name or type(ds).__name__}"
        _require_prompt(prompt_field, columns, source)
        n = len(ds)
        idx = _select(n, limit, seed)
        rows = ds.select(idx) if len(idx) != n else ds
        samples = [
            _make_sample(row, i, prompt_field, target_field, ground_truth_field, id_field, source)
            for i, row in zip(idx, rows)
        ]
        base = getattr(ds, "_fingerprint", None)
        if base:
            payload = {
                "dataset": base,
                "rows": idx,
                "fields": [prompt_field, target_field, ground_truth_field, id_field],
            }
            fp = hashlib.sha256(_dumps(payload).encode()).hexdigest()
        else:
            fp = _content_fingerprint(samples)
        return cls(samples, fp, source)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        prompt_field: str = "prompt",
        target_field: str | None = "target",
        ground_truth_field: str | None = "ground_truth",
        id_field: str | None = "id",
        limit: int | None = None,
        seed: int | None = None,
    ) -> ProbeSet:
        """Samples from ``.json`` (list of objects), ``.jsonl``, ``.csv``, ``.parquet`` or a
        ``save_to_disk`` folder. The fingerprint is a sha256 of the normalized sample content."""
        p = Path(path)
        if not p.exists():
            raise InputError(f"samples file '{p}' not found (working directory: {Path.cwd()})")
        kw = dict(
            prompt_field=prompt_field,
            target_field=target_field,
            ground_truth_field=ground_truth_field,
            id_field=id_field,
            limit=limit,
            seed=seed,
        )
        if p.is_dir():
            if not (p / "dataset_info.json").exists() and not (p / "state.json").exists():
                raise InputError(f"samples folder '{p}' is not a dataset saved with Dataset.save_to_disk")
            import datasets

            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                raise InputError(f"'{p}' holds a DatasetDict with splits {list(ds)}; point at one split's folder")
            ps = cls.from_dataset(ds, **kw, source=str(p))
            ps.fingerprint = _content_fingerprint(ps.samples)
            return ps
        suffix = p.suffix.lower()
        if suffix == ".json":
            records = _read_json(p)
        elif suffix == ".jsonl":
            records = _read_jsonl(p)
        elif suffix == ".csv":
            records = _read_csv(p)
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            records = pq.read_table(p).to_pylist()
        else:
            raise InputError(
                f"samples file '{p}' has an unsupported type {suffix or '(no suffix)'}; "
                f"supported: {', '.join(FILE_SUFFIXES)} or a save_to_disk folder"
            )
        return cls.from_records(records, **kw, source=str(p))

    @classmethod
    def from_spec(cls, spec: SamplesSpec | dict[str, Any] | str) -> ProbeSet:
        """Samples from a :class:`SamplesSpec`, its dict form, or a bare source string.

        ``demo:keyvalue`` / ``demo:keyvalue-shortcut`` generate ``n`` rows (default 16) with
        ``seed`` (default 1234) via :mod:`attrib_mlops.demo.tasks`; ``limit`` then keeps the
        first rows.
        """
        if isinstance(spec, str):
            spec = SamplesSpec(source=spec)
        elif isinstance(spec, dict):
            spec = SamplesSpec(**spec)
        fields = dict(
            prompt_field=spec.prompt_field,
            target_field=spec.target_field,
            ground_truth_field=spec.ground_truth_field,
            id_field=spec.id_field,
        )
        if spec.source.startswith(DEMO_PREFIX):
            factory = BUILTIN_SOURCES.get(spec.source)
            if factory is None:
                raise InputError(
                    f"unknown built-in samples source {spec.source!r}; available: {', '.join(sorted(BUILTIN_SOURCES))}"
                )
            n = spec.n if spec.n is not None else DEMO_DEFAULT_N
            seed = spec.seed if spec.seed is not None else DEMO_DEFAULT_SEED
            ds = factory(n, seed)
            ps = cls.from_dataset(ds, **fields, limit=spec.limit, seed=None, source=f"{spec.source}(n={n}, seed={seed})")
            # generated data: the content is the identity (stable across datasets versions)
            ps.fingerprint = _content_fingerprint(ps.samples)
            return ps
        return cls.from_file(spec.source, **fields, limit=spec.limit, seed=spec.seed)


# --------------------------------------------------------------------------- helpers
def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _content_fingerprint(samples: Sequence[Sample]) -> str:
    return hashlib.sha256(_dumps([s.to_record() for s in samples]).encode()).hexdigest()


def _columns(records: Sequence[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        for k in r:
            seen.setdefault(str(k), None)
    return list(seen)


def _require_prompt(prompt_field: str, columns: Sequence[str], source: str) -> None:
    if prompt_field not in columns:
        avail = ", ".join(columns) if columns else "(none)"
        raise InputError(
            f"{source}: prompt field {prompt_field!r} not found; available columns: {avail}. "
            "Set samples.prompt_field (prompt_field=...) to the column that holds the prompts."
        )


def _select(n: int, limit: int | None, seed: int | None) -> list[int]:
    if limit is not None and limit < 1:
        raise InputError(f"limit must be >= 1, got {limit}")
    if limit is None or limit >= n:
        return list(range(n))
    if seed is None:
        return list(range(limit))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n, size=limit, replace=False))


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
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


def _parse_ground_truth(v: Any, where: str) -> list[int] | None:
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


def _make_sample(
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
    gt = _parse_ground_truth(row.get(gt_field), where) if gt_field else None
    raw_id = row.get(id_field) if id_field else None
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        sid = f"sample-{index}"
    else:
        sid = str(_jsonable(raw_id))
    used = {prompt_field, target_field, gt_field, id_field}
    meta = {str(k): _jsonable(v) for k, v in row.items() if k not in used}
    return Sample(id=sid, prompt=prompt, target=target, ground_truth=gt, meta=meta)


def _check_unique_ids(samples: Sequence[Sample], source: str) -> None:
    seen: set[str] = set()
    dups: list[str] = []
    for s in samples:
        if s.id in seen and s.id not in dups:
            dups.append(s.id)
        seen.add(s.id)
    if dups:
        shown = ", ".join(repr(d) for d in dups[:5]) + (" ..." if len(dups) > 5 else "")
        raise InputError(f"{source}: duplicate sample ids {shown}; every sample needs a unique id")


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
