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
  (:mod:`attrib_mlops.demo.tasks`, parameters ``n`` and ``seed``), and ``demo:sentiment``
  (:mod:`attrib_mlops.demo.sentiment`: reviews with their label as ``target`` and the
  rationale words' character spans in ``meta["rationale_spans"]``, for classifiers).

Selection: ``limit`` rows; with a ``seed`` a deterministic random subset drawn with
``numpy.random.default_rng(seed)`` (never the global RNG), kept in source order;
without a seed the first ``limit`` rows.

Example:
    >>> ps = ProbeSet.from_records([{"prompt": "a b", "target": " c", "ground_truth": "1"}])
    >>> ps[0].id, ps[0].ground_truth
    ('sample-0', [1])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ._util import content_hash
from .errors import InputError
from .sample_rows import (
    FILE_SUFFIXES,
    Sample,
    check_unique_ids,
    columns,
    make_sample,
    read_rows,
    require_prompt,
    select,
    stored_sample,
)

__all__ = ["Sample", "ProbeSet", "SamplesSpec", "BUILTIN_SOURCES", "register_builtin_source", "FILE_SUFFIXES"]
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


def _demo_sentiment(n: int, seed: int) -> Any:
    from datasets import Dataset

    from .demo import sentiment  # lazy: the demo package is optional at import time

    rows = sentiment.to_probe_records(sentiment.make_sentiment_records(n, seed))
    return Dataset.from_list([{k: v for k, v in r.items() if k != "ground_truth"} for r in rows])


#: Built-in sources: name -> ``f(n, seed) -> datasets.Dataset``.
BUILTIN_SOURCES: dict[str, Callable[[int, int], Any]] = {
    "demo:keyvalue": _demo_keyvalue(False),
    "demo:keyvalue-shortcut": _demo_keyvalue(True),
    "demo:sentiment": _demo_sentiment,
}
DEMO_DEFAULT_N = 16
DEMO_DEFAULT_SEED = 1234


def register_builtin_source(name: str, factory: Callable[[int, int], Any]) -> None:
    """Add a built-in source ``name`` (e.g. ``"demo:mytask"``): ``factory(n, seed) -> Dataset``."""
    if not name.startswith(DEMO_PREFIX):
        raise ValueError(f"built-in source names start with {DEMO_PREFIX!r}, got {name!r}")
    BUILTIN_SOURCES[name] = factory


# --------------------------------------------------------------------------- probe set
@dataclass
class ProbeSet:
    """Ordered samples with unique ids, a content fingerprint and a source description."""

    samples: list[Sample]
    fingerprint: str
    source: str

    def __post_init__(self) -> None:
        check_unique_ids(self.samples, self.source)

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

    def stored_records(self) -> list[dict[str, Any]]:
        """The samples in the stored shape of an attribution manifest (see :meth:`Sample.stored_record`)."""
        return [s.stored_record() for s in self.samples]

    def storage_section(self) -> dict[str, Any]:
        """The ``probe`` section of an attribution manifest (storage schema v1).

        ``{"n", "fingerprint", "samples", "tokens": {}}``; the fingerprint is the sha256 of the
        canonical JSON of :meth:`stored_records` (it tells a writer whether a run already holds
        steps on another probe set).

        >>> ProbeSet.from_stored([{"id": "s0", "prompt": "a b"}]).storage_section()["samples"]
        [{'id': 's0', 'prompt': 'a b', 'target': '', 'ground_truth': None}]
        """
        records = self.stored_records()
        return {"n": len(records), "fingerprint": content_hash(records), "samples": records, "tokens": {}}

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
        require_prompt(prompt_field, columns(records), source)
        idx = select(len(records), limit, seed)
        samples = [
            make_sample(records[i], i, prompt_field, target_field, ground_truth_field, id_field, source) for i in idx
        ]
        return cls(samples, _content_fingerprint(samples), source)

    @classmethod
    def from_stored(cls, records: Sequence[Mapping[str, Any]] | Any, *, source: str = "probe") -> ProbeSet:
        """Samples from rows of the stored shape (what a manifest holds, what ``log_probe_set`` takes).

        Rows: ``id`` (or ``sample_id``; default the row position), ``prompt`` (may be empty),
        ``target`` (``""`` or missing = none), ``ground_truth``. A ``datasets.Dataset`` is read
        row by row. The fingerprint is the content fingerprint, as for :meth:`from_records`.

        Raises:
            InputError: no rows, a row that is not a dict, duplicated ids or a bad ground truth.
        """
        if hasattr(records, "to_list") and not isinstance(records, (list, tuple)):  # datasets.Dataset
            records = records.to_list()
        samples = [stored_sample(row, i) for i, row in enumerate(records)]
        if not samples:
            raise InputError("the probe set is empty; expected at least one sample")
        return cls(samples, _content_fingerprint(samples), source)

    @classmethod
    def coerce(cls, probe: Any, *, source: str = "probe") -> ProbeSet:
        """A probe set from a ``ProbeSet`` (as is), a ``datasets.Dataset``, records or a list of prompts.

        >>> ProbeSet.coerce(["a b", "c"]).ids
        ['sample-0', 'sample-1']
        """
        if isinstance(probe, ProbeSet):
            return probe
        if hasattr(probe, "column_names") and hasattr(probe, "select"):
            return cls.from_dataset(probe)
        if isinstance(probe, str):
            raise InputError("probe must be a list of prompts or samples, a datasets.Dataset or a ProbeSet, not a str")
        items = list(probe)
        if not items:
            raise InputError("the probe set is empty; give at least one sample")
        if all(isinstance(x, str) for x in items):
            items = [{"prompt": p} for p in items]
        return cls.from_records(items, source=source)

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
        names = list(getattr(ds, "column_names", None) or [])
        source = source or f"dataset {getattr(ds, 'info', None) and ds.info.dataset_name or type(ds).__name__}"
        require_prompt(prompt_field, names, source)
        n = len(ds)
        idx = select(n, limit, seed)
        rows = ds.select(idx) if len(idx) != n else ds
        samples = [
            make_sample(row, i, prompt_field, target_field, ground_truth_field, id_field, source)
            for i, row in zip(idx, rows)
        ]
        base = getattr(ds, "_fingerprint", None)
        if base:
            payload = {
                "dataset": base,
                "rows": idx,
                "fields": [prompt_field, target_field, ground_truth_field, id_field],
            }
            fp = content_hash(payload)
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
        return cls.from_records(read_rows(p), **kw, source=str(p))

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
def _content_fingerprint(samples: Sequence[Sample]) -> str:
    return content_hash([s.to_record() for s in samples])
