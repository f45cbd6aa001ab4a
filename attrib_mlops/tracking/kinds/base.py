"""What a kind of attribution result is to storage, and the registry the writer and reader dispatch through.

A *kind* is one shape of result: the token matrix (:mod:`.token_matrix`, storage schema
v1), and the kinds to come (per-source scores of a target span, per-training-example
scores of a query). Each kind is one module in this package holding one
:class:`StorageKind` subclass; the subclass joins the registry by naming itself
(``name = "sources"``), and the package imports every module in it on first use,
so adding a kind is adding one file.

A kind owns, for its results:

* its files (``write`` / ``read`` / ``read_one`` / ``check``: the format's two sides);
* its place in a step: a directory ``steps/<step>/<kind>/`` holding
  ``<model>/<method><suffix>``, ``summary.json`` and ``view.html``, and an entry in the
  manifest's step record, ``step["kinds"][<kind>] = {"models", "files", "summary",
  "view", "n_samples"}`` (the token kind keeps the v1 places: the step directory
  itself and the step record's own keys, see :class:`~.token_matrix.TokenMatrixKind`);
* its metrics (``compute``: a summary section ``{"methods": {method: {"metrics",
  "samples", ...}}, "agreement": {...}}``) and its HTML view (``render``);
* a version, recorded in the manifest as ``"kinds": {<kind>: {"version": n}}``;
  readers and writers refuse a kind written by a newer version of itself.

Everything else (spool, commit protocol, manifest, MLflow metrics and tags, drift
references) is the same for every kind and lives in the writer and reader, which
never branch on the kind.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from attrib_mlops.analysis.registry import TOKEN_MATRIX
from attrib_mlops.errors import InputError
from attrib_mlops.tracking import layout as L
from attrib_mlops.tracking.errors import SchemaVersionError, TrackingError

#: prefixes of the per-step drift aggregates a kind computes against the previous / first step
DRIFT_PREFIXES = ("drift_prev_", "drift_first_")

__all__ = ["StorageKind", "get_kind", "kind_names", "kind_of", "open_parquet", "write_parquet", "drift_by_id",
           "aggregate_samples", "DEFAULT_KIND"]

#: The kind of a call that names none, and of everything schema v1 wrote (the token matrix; the
#: kinds of every layer share their names, see :mod:`attrib_mlops.analysis.registry`).
DEFAULT_KIND = TOKEN_MATRIX

_REGISTRY: dict[str, StorageKind] = {}
_discovered = False


class StorageKind:
    """One kind of attribution result in storage (subclass it in a module of this package).

    Class attributes:
        name: registry name and directory name (``"sources"``); the kind's name in every layer.
        version: storage version of this kind; bump it when a reader of the previous one would misread.
        result_type: the result class the kind stores (``log_step`` dispatches on it).
        suffix: file suffix of one (model, method) file (``".parquet"``).
        step_subdir: directory of the kind inside a step directory (default: ``name``).
    """

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    result_type: ClassVar[type] = object
    suffix: ClassVar[str] = ".parquet"
    step_subdir: ClassVar[str | None] = None

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.name:
            if cls.name in _REGISTRY and type(_REGISTRY[cls.name]) is not cls:
                raise ValueError(f"storage kind {cls.name!r} is registered twice "
                                 f"({type(_REGISTRY[cls.name]).__module__} and {cls.__module__})")
            L.safe_name(cls.name)
            _REGISTRY[cls.name] = cls()

    # ------------------------------------------------------------ placement
    @property
    def subdir(self) -> str:
        return self.name if self.step_subdir is None else self.step_subdir

    def file_relpath(self, model: str, method: str) -> str:
        """Path of a (model, method) file relative to the step directory."""
        return L.join(self.subdir, L.safe_name(model), L.safe_name(method) + self.suffix)

    def summary_relpath(self, step: int) -> str:
        """Path of the kind's ``summary.json`` relative to the artifact root."""
        return L.join(L.STEPS_DIR, L.step_dirname(step), self.subdir, L.SUMMARY_NAME)

    def view_relpath(self, step: int) -> str:
        """Path of the kind's ``view.html`` relative to the artifact root."""
        return L.join(L.STEPS_DIR, L.step_dirname(step), self.subdir, L.VIEW_NAME)

    def new_entry(self, step: int) -> dict[str, Any]:
        return {"models": {}, "files": {}, "summary": self.summary_relpath(step), "view": self.view_relpath(step),
                "n_samples": 0}

    def entry(self, step_record: Mapping[str, Any], create: bool = False) -> dict[str, Any] | None:
        """The kind's part of a manifest step record (``None`` when the step has none and ``create`` is off)."""
        kinds = step_record.get("kinds")
        if not isinstance(kinds, dict):
            if not create:
                return None
            kinds = step_record["kinds"] = {}  # type: ignore[index]
        if self.name not in kinds and create:
            kinds[self.name] = self.new_entry(int(step_record["step"]))
        entry = kinds.get(self.name)
        return entry if isinstance(entry, dict) else None

    def files(self, step_record: Mapping[str, Any]) -> dict[str, dict[str, str]]:
        """``{model: {method: path relative to the artifact root}}`` of a step (empty when absent)."""
        entry = self.entry(step_record) or {}
        files = entry.get("files")
        return files if isinstance(files, dict) else {}

    def check_version(self, manifest: Mapping[str, Any], where: str) -> None:
        """Refuse a manifest whose entry for this kind was written by a newer version.

        Raises:
            SchemaVersionError: naming ``where`` (the run), the kind and both versions.
        """
        rec = (manifest.get("kinds") or {}).get(self.name) or {}
        version = rec.get("version", 0) if isinstance(rec, dict) else 0
        if isinstance(version, int) and version > self.version:
            raise SchemaVersionError(
                f"{where}: attribution kind {self.name!r} was written with version {version}; this "
                f"attrib-mlops understands up to version {self.version}; upgrade attrib-mlops")

    def summary_header(self) -> dict[str, Any]:
        """Keys a kind adds to its ``summary.json`` next to the common ones."""
        return {"kind": self.name, "kind_version": self.version}

    def on_commit(self, manifest: dict[str, Any], model: str, local_file: Path) -> None:
        """Called when a step of ``model`` is listed, with one of its committed files (default: nothing)."""

    # ------------------------------------------------------------ files (the format's two sides)
    def write(self, results: Sequence[Any], path: Path, *, metadata: dict[str, Any], row_group_size: int,
              keep_float32: bool) -> None:
        raise NotImplementedError

    def read(self, path: str | Path, sample_ids: Sequence[str] | None = None) -> list[Any]:
        raise NotImplementedError

    def read_one(self, path: str | Path, sample_id: str) -> Any:
        return self.read(path, [sample_id])[0]

    def check(self, path: str | Path) -> None:
        """Open and validate a file cheaply (raise :class:`TrackingError` when it is corrupt or foreign)."""
        self.read(path)

    # ------------------------------------------------------------ metrics and view
    def compute(self, groups: Mapping[str, list[Any]], ground_truth: Mapping[str, list[int]],
                references: Mapping[str, Mapping[str, tuple[int | None, dict[str, Any] | None]]],
                k: int) -> dict[str, Any]:
        """The kind's section of ``summary.json`` for one model and step.

        Args:
            groups: ``{method: results}``, sample ids set and unique.
            ground_truth: ``{sample_id: positions}``.
            references: ``{method: {"prev" | "first": (step, {sample_id: result}) }}`` for drift
                (``(None, None)`` when there is no earlier step, ``(step, None)`` when it is unreadable).
            k: top-k size.

        Returns:
            ``{"methods": {method: {"metrics": {name: mean}, "samples": {sid: {name: value}}, ...}},
            "agreement": {name: value}}``; the finite ``metrics`` values :meth:`logged` accepts and
            every finite ``agreement`` value go to MLflow.
        """
        raise NotImplementedError

    def metric_key(self, method: str, name: str, model: str = L.DEFAULT_MODEL) -> str:
        """MLflow key of an aggregate ``name`` of ``method`` (default: :func:`~attrib_mlops.tracking.layout.metric_key`,
        ``attrib/<method>/<name>``; a kind may put its name in the key, e.g. ``attrib/sources/...``)."""
        return L.metric_key(method, name, model)

    def logged(self, name: str) -> bool:
        """Whether the aggregate ``name`` of a section's ``metrics`` goes to MLflow.

        As the kind's metric registry says (``drift_prev_kendall``: a drift metric registered
        with ``logged=False``: no); names the registry does not know are logged.
        """
        from attrib_mlops.analysis.registry import list_metrics

        scope = "sample"
        for prefix in DRIFT_PREFIXES:
            if name.startswith(prefix):
                name, scope = name[len(prefix):], "drift"
        return all(m.logged for m in list_metrics(scope, self.name) if name in (m.name, m.summary_name))

    def render(self, panels: Mapping[tuple[str, str], list[Any]], meta: dict[str, Any], title: str) -> str:
        """The kind's self-contained ``view.html`` for ``{(model, method): results}``."""
        raise NotImplementedError


# ------------------------------------------------------------------ registry
def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    import attrib_mlops.tracking.kinds as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name != "base":
            importlib.import_module(f"{pkg.__name__}.{mod.name}")


def kind_names() -> list[str]:
    """Names of the registered kinds (the default first)."""
    _discover()
    return sorted(_REGISTRY, key=lambda n: (n != DEFAULT_KIND, n))


def get_kind(name: str | StorageKind = DEFAULT_KIND) -> StorageKind:
    """The registered kind ``name``.

    >>> get_kind("token_matrix").suffix
    '.parquet'

    Raises:
        InputError: no such kind (the message lists the registered ones).
    """
    if isinstance(name, StorageKind):
        return name
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown attribution kind {name!r}; registered kinds: {', '.join(kind_names())}") from None


def kind_of(results: Sequence[Any]) -> StorageKind:
    """The one kind whose ``result_type`` every item of ``results`` is.

    Raises:
        InputError: an item no registered kind stores, or items of several kinds.
    """
    _discover()
    found: dict[str, StorageKind] = {}
    for r in results:
        kind = next((k for k in _REGISTRY.values() if isinstance(r, k.result_type)), None)
        if kind is None:
            types = ", ".join(sorted({k.result_type.__name__ for k in _REGISTRY.values()}))
            raise InputError(f"log_step needs {types} items, got {type(r).__name__}")
        found[kind.name] = kind
    if len(found) > 1:
        raise InputError(f"log_step takes results of one kind per call, got {', '.join(sorted(found))}")
    return next(iter(found.values()))


def open_parquet(path: str | Path, fmt: str, what: str, version: int) -> Any:
    """Open one Parquet file of a kind, checking its ``format`` tag and ``kind_version`` metadata.

    Args:
        path: the file.
        fmt: the kind's format tag (``b"format"`` in the schema metadata).
        what: how errors name the file's kind (``"sources"``).
        version: the newest kind version this code reads.

    Returns:
        The ``pyarrow.parquet.ParquetFile``.

    Raises:
        TrackingError: not Parquet, or another format (one line).
        SchemaVersionError: written by a newer version of the kind.
    """
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - any decoding failure is a corrupt file
        raise TrackingError(f"corrupt Parquet data ({e})") from None
    meta = pf.schema_arrow.metadata or {}
    if meta.get(b"format") != fmt.encode():
        raise TrackingError(f"not a {what} file (format {meta.get(b'format', b'?').decode(errors='replace')!r})")
    written = int(meta.get(b"kind_version", b"1"))
    if written > version:
        raise SchemaVersionError(f"{what} file written with version {written}; this attrib-mlops reads up to "
                                 f"{version}; upgrade attrib-mlops")
    return pf


def write_parquet(table: Any, path: Path, row_group_size: int) -> None:
    """Write one kind's ``pyarrow.Table`` to ``path`` (parents created), the counterpart of :func:`open_parquet`."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=max(1, int(row_group_size)))


def drift_by_id(results: Sequence[Any], references: Mapping[str, tuple[int, Any]], per_sample: dict[str, dict],
                kind: str, pair_context: Callable[[Any, Any], Any | None]) -> dict[str, Any]:
    """Per-sample drift against each reference step, samples paired by id; returns the ``drift`` section.

    Adds ``drift_<which>_<metric>`` to ``per_sample[id]`` for every registered drift metric of
    ``kind``. ``references`` is ``{which: (step, {sample_id: result} or None)}``;
    ``pair_context(reference, result)`` builds the metrics' context, or None when the two are
    not comparable (that sample is skipped).
    """
    from attrib_mlops.analysis.registry import compute

    info: dict[str, Any] = {}
    for which, (ref_step, ref) in references.items():
        info[f"{which}_step"] = ref_step
        if ref is None:
            continue
        n_used = 0
        for r in results:
            other = ref.get(str(r.sample_id))
            ctx = None if other is None else pair_context(other, r)
            if ctx is None:
                continue
            n_used += 1
            for name, v in compute("drift", ctx, kind=kind).items():
                per_sample[str(r.sample_id)][f"drift_{which}_{name}"] = float(v)
        info[f"{which}_n_samples"] = n_used
    return info


def aggregate_samples(per_sample: Mapping[str, Mapping[str, float]], kind: str) -> dict[str, float | None]:
    """A method's logged aggregates: each registered sample metric of ``kind`` reduced, each drift key averaged."""
    import math

    from attrib_mlops._util import nanmean
    from attrib_mlops.analysis.registry import list_metrics

    agg: dict[str, float | None] = {}
    for m in list_metrics("sample", kind):
        vals = [s[m.name] for s in per_sample.values() if m.name in s]
        if vals:
            agg[m.summary_name] = m.reduce(vals)
    for key in sorted({key for s in per_sample.values() for key in s if key.startswith(DRIFT_PREFIXES)}):
        agg[key] = nanmean([s.get(key, math.nan) for s in per_sample.values()])
    return agg
