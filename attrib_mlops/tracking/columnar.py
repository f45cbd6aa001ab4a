"""Columnar (Parquet) storage of attribution results: one row per probe sample.

Columns (schema version 1)::

    sample_id      string          probe sample id (unique in the file)
    method         string          attribution method
    engine         string          engine that computed it
    n_prompt       int32           prompt rows among the source rows
    n_source       int32           matrix rows
    n_target       int32           matrix columns
    source_tokens  list<string>    row tokens (prompt then target for decoder-only models)
    target_tokens  list<string>    column tokens
    matrix         list<float16>   A / matrix_scale, row-major (n_source * n_target values);
                                   NaN = undefined (future) cell, kept as NaN
    matrix_scale   float32         max |A| over the finite cells (1.0 if none or all zero)
    matrix_f32     list<float32>   optional: A itself, row-major, when the writer keeps float32
    score_<name>   list<float32>   step scores per target token (e.g. score_probability); null if absent
    info           string          JSON provenance (model, options, library versions, ...)
    prompt         string
    target         string

Rebuilding a matrix needs only pyarrow and numpy::

    import numpy as np, pyarrow.parquet as pq
    row = pq.read_table(path).slice(i, 1).to_pylist()[0]
    A = np.array(row["matrix"], dtype=np.float32).reshape(row["n_source"], row["n_target"]) * row["matrix_scale"]

Why the scale: float16 covers about 6e-8 .. 65504, while raw attribution values
can be far outside that (gradient norms of large models, sums over many
layers). Dividing by the largest finite value maps every matrix to [-1, 1], where
float16 keeps an absolute error of at most 2**-12 (half an ulp at 1), i.e.
``|A - A16| <= 2.5e-4 * max|A|`` after rescaling. Metrics are always computed
from the float32 matrices before they are written.

Files are written with small row groups (32 rows by default) and a JSON index
``{sample_id: [row_group, row_in_group]}`` in the file's key-value metadata
(key ``attrib_mlops.index``), so :func:`read_sample` decodes one row group only.
Other metadata keys: ``attrib_mlops.kind`` = ``attribution-results``,
``attrib_mlops.schema_version``, and optionally ``attrib_mlops.step``,
``attrib_mlops.model``, ``attrib_mlops.method``. Compression is zstd.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from attrib_mlops.errors import InputError
from attrib_mlops.result import AttributionResult, _jsonable
from attrib_mlops.tracking.errors import TrackingError, newer_schema
from attrib_mlops.tracking.layout import SCHEMA_VERSION

__all__ = [
    "KIND",
    "REQUIRED_COLUMNS",
    "results_to_table",
    "table_to_results",
    "write_results",
    "read_results",
    "read_sample",
    "file_sample_ids",
]

KIND = "attribution-results"
META_KIND = b"attrib_mlops.kind"
META_SCHEMA = b"attrib_mlops.schema_version"
META_INDEX = b"attrib_mlops.index"
SCORE_PREFIX = "score_"
DEFAULT_ROW_GROUP_SIZE = 32

REQUIRED_COLUMNS = (
    "sample_id",
    "method",
    "engine",
    "n_prompt",
    "n_source",
    "n_target",
    "source_tokens",
    "target_tokens",
    "matrix",
    "matrix_scale",
    "info",
    "prompt",
    "target",
)

_F16_MAX = float(np.finfo(np.float16).max)


# ------------------------------------------------------------------ encode
def _scale_of(m: np.ndarray) -> float:
    finite = m[np.isfinite(m)]
    if finite.size == 0:
        return 1.0
    s = float(np.max(np.abs(finite)))
    return s if s > 0 and np.isfinite(s) else 1.0


def _list_array(chunks: Sequence[np.ndarray], value_type: pa.DataType) -> pa.Array:
    """A list array from numpy chunks (no Python-level per-value work)."""
    sizes = np.fromiter((c.size for c in chunks), dtype=np.int64, count=len(chunks))
    offsets = np.zeros(len(chunks) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    values = np.concatenate(chunks) if chunks else np.zeros(0)
    if offsets[-1] >= 2**31:
        return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), pa.array(values, type=value_type))
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32), pa.int32()), pa.array(values, type=value_type))


def _sample_ids(results: Sequence[AttributionResult]) -> list[str]:
    ids = [str(r.sample_id) if r.sample_id is not None else str(i) for i, r in enumerate(results)]
    seen: set[str] = set()
    dups = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
    if dups:
        raise InputError(f"sample ids must be unique within one (model, method) file; duplicated: {dups[:5]}")
    return ids


def results_to_table(results: Iterable[AttributionResult], *, include_f32: bool = False) -> pa.Table:
    """One row per result (see the module docstring for the columns).

    Args:
        results: attribution results, typically all samples of one (model, method, step).
        include_f32: also store the float32 matrix in ``matrix_f32``.

    Returns:
        A ``pyarrow.Table``; sample ids default to the row position (``"0"``, ``"1"``, ...).

    Raises:
        InputError: a non-result item or duplicated sample ids.
    """
    results = list(results)
    for r in results:
        if not isinstance(r, AttributionResult):
            raise InputError(f"results_to_table needs AttributionResult items, got {type(r).__name__}")
    ids = _sample_ids(results)
    scales = [_scale_of(r.matrix) for r in results]
    f16 = []
    with np.errstate(over="ignore", invalid="ignore"):
        for r, s in zip(results, scales):
            f16.append((r.matrix.astype(np.float32).ravel() / np.float32(s)).astype(np.float16))
    cols: dict[str, pa.Array] = {
        "sample_id": pa.array(ids, pa.string()),
        "method": pa.array([r.method for r in results], pa.string()),
        "engine": pa.array([r.engine for r in results], pa.string()),
        "n_prompt": pa.array([int(r.n_prompt) for r in results], pa.int32()),
        "n_source": pa.array([r.shape[0] for r in results], pa.int32()),
        "n_target": pa.array([r.shape[1] for r in results], pa.int32()),
        "source_tokens": pa.array([r.source_tokens for r in results], pa.list_(pa.string())),
        "target_tokens": pa.array([r.target_tokens for r in results], pa.list_(pa.string())),
        "matrix": _list_array(f16, pa.float16()),
        "matrix_scale": pa.array(scales, pa.float32()),
    }
    if include_f32:
        cols["matrix_f32"] = _list_array([r.matrix.astype(np.float32).ravel() for r in results], pa.float32())
    names = sorted({k for r in results for k in r.step_scores})
    for name in names:
        cols[SCORE_PREFIX + name] = pa.array(
            [r.step_scores[name].astype(np.float32) if name in r.step_scores else None for r in results],
            pa.list_(pa.float32()),
        )
    cols["info"] = pa.array([json.dumps(_jsonable(r.info), sort_keys=True) for r in results], pa.string())
    cols["prompt"] = pa.array([r.prompt for r in results], pa.string())
    cols["target"] = pa.array([r.target for r in results], pa.string())
    return pa.table(cols)


# ------------------------------------------------------------------ decode
def _check_columns(table: pa.Table) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise TrackingError(
            f"not an attribution results table: missing column(s) {', '.join(missing)} "
            f"(has {', '.join(table.column_names[:12])})"
        )


def _flat(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets, values, is_null) of a list column."""
    col = table.column(name)
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
        raise TrackingError(f"column {name!r} has type {arr.type}, expected a list")
    nulls = arr.is_null().to_numpy(zero_copy_only=False)
    return arr.offsets.to_numpy(), arr.values.to_numpy(zero_copy_only=False), nulls


def table_to_results(
    table: pa.Table, *, sample_ids: Sequence[str] | None = None, use_f32: bool = True
) -> list[AttributionResult]:
    """Rebuild :class:`AttributionResult` objects from a table made by :func:`results_to_table`.

    Args:
        table: the table (or a slice / row group of it).
        sample_ids: keep only these ids, in this order (``None`` = every row, in file order).
        use_f32: take ``matrix_f32`` when present instead of the float16 matrix.

    Raises:
        TrackingError: the table is not an attribution table or is inconsistent.
        InputError: an unknown sample id was asked for.
    """
    _check_columns(table)
    ids = [str(x) for x in table.column("sample_id").to_pylist()]
    if sample_ids is not None:
        pos = {sid: i for i, sid in enumerate(ids)}
        unknown = [s for s in sample_ids if str(s) not in pos]
        if unknown:
            raise InputError(f"unknown sample id(s) {unknown[:5]}; this file has {len(ids)} samples, e.g. {ids[:5]}")
        rows = [pos[str(s)] for s in sample_ids]
    else:
        rows = list(range(table.num_rows))
    if not rows:
        return []
    py = {
        c: table.column(c).to_pylist()
        for c in ("method", "engine", "n_prompt", "n_source", "n_target", "source_tokens", "target_tokens",
                  "matrix_scale", "info", "prompt", "target")
    }
    f32 = use_f32 and "matrix_f32" in table.column_names
    moff, mval, mnull = _flat(table, "matrix_f32" if f32 else "matrix")
    if f32 and mnull[rows].any():  # fall back to float16 when some rows lack float32
        f32 = False
        moff, mval, mnull = _flat(table, "matrix")
    scores = {c[len(SCORE_PREFIX):]: _flat(table, c) for c in table.column_names if c.startswith(SCORE_PREFIX)}
    out = []
    for i in rows:
        ns, nt = py["n_source"][i], py["n_target"][i]
        if mnull[i] or ns is None or nt is None:
            raise TrackingError(f"row {i} (sample {ids[i]!r}) has no matrix")
        flat = mval[moff[i]: moff[i + 1]]
        if flat.size != ns * nt:
            raise TrackingError(f"row {i} (sample {ids[i]!r}): matrix has {flat.size} values, expected {ns}x{nt}")
        m = flat.astype(np.float32).reshape(ns, nt)
        if not f32:
            m = m * np.float32(py["matrix_scale"][i] if py["matrix_scale"][i] is not None else 1.0)
        src, tgt = py["source_tokens"][i] or [], py["target_tokens"][i] or []
        if len(src) != ns or len(tgt) != nt:
            raise TrackingError(
                f"row {i} (sample {ids[i]!r}): {len(src)} source / {len(tgt)} target tokens for a {ns}x{nt} matrix"
            )
        step_scores = {
            name: v[o[i]: o[i + 1]].astype(np.float32) for name, (o, v, nl) in scores.items() if not nl[i]
        }
        try:
            info = json.loads(py["info"][i]) if py["info"][i] else {}
        except json.JSONDecodeError as e:
            raise TrackingError(f"row {i} (sample {ids[i]!r}): info is not JSON ({e})") from None
        out.append(
            AttributionResult(
                matrix=m,
                source_tokens=src,
                target_tokens=tgt,
                method=py["method"][i],
                engine=py["engine"][i],
                step_scores=step_scores,
                info=info,
                n_prompt=py["n_prompt"][i],
                prompt=py["prompt"][i] or "",
                target=py["target"][i] or "",
                sample_id=ids[i],
            )
        )
    return out


# ------------------------------------------------------------------- files
def write_results(
    results: Iterable[AttributionResult] | pa.Table,
    path: str | os.PathLike,
    *,
    row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    include_f32: bool = False,
    metadata: dict[str, Any] | None = None,
    compression: str = "zstd",
) -> Path:
    """Write results (or a table from :func:`results_to_table`) to a Parquet file.

    The file's key-value metadata gets the kind, the schema version, the
    ``sample_id -> [row_group, row]`` index and ``metadata`` (values JSON-encoded).
    """
    if row_group_size < 1:
        raise InputError(f"row_group_size must be >= 1, got {row_group_size}")
    table = results if isinstance(results, pa.Table) else results_to_table(results, include_f32=include_f32)
    _check_columns(table)
    ids = [str(x) for x in table.column("sample_id").to_pylist()]
    index = {sid: [i // row_group_size, i % row_group_size] for i, sid in enumerate(ids)}
    meta = dict(table.schema.metadata or {})
    meta.update({
        META_KIND: KIND.encode(),
        META_SCHEMA: str(SCHEMA_VERSION).encode(),
        META_INDEX: json.dumps(index, separators=(",", ":")).encode(),
        b"attrib_mlops.row_group_size": str(row_group_size).encode(),
    })
    for k, v in (metadata or {}).items():
        meta[f"attrib_mlops.{k}".encode()] = json.dumps(v).encode()
    table = table.replace_schema_metadata(meta)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size, compression=compression)
    return path


def _open(path: str | os.PathLike) -> pq.ParquetFile:
    """Open and validate a results file; every error names the file."""
    p = Path(path)
    try:
        pf = pq.ParquetFile(p)
    except FileNotFoundError:
        raise TrackingError(f"{p}: file not found") from None
    except (pa.ArrowException, OSError, ValueError) as e:
        raise TrackingError(f"{p}: not a readable Parquet file ({e})") from None
    meta = pf.schema_arrow.metadata or {}
    if meta.get(META_KIND) != KIND.encode():
        raise TrackingError(f"{p}: not an attrib-mlops results file (metadata attrib_mlops.kind is missing)")
    try:
        version = int(meta.get(META_SCHEMA, b"0"))
    except ValueError:
        raise TrackingError(f"{p}: bad attrib_mlops.schema_version {meta.get(META_SCHEMA)!r}") from None
    if version > SCHEMA_VERSION:
        raise newer_schema(str(p), version)
    missing = [c for c in REQUIRED_COLUMNS if c not in pf.schema_arrow.names]
    if missing:
        raise TrackingError(f"{p}: not an attribution results file: missing column(s) {', '.join(missing)}")
    return pf


def _index(pf: pq.ParquetFile) -> dict[str, list[int]] | None:
    raw = (pf.schema_arrow.metadata or {}).get(META_INDEX)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return None


def file_sample_ids(path: str | os.PathLike) -> list[str]:
    """Sample ids of a results file, in file order (reads only the footer when indexed)."""
    pf = _open(path)
    idx = _index(pf)
    if idx is not None:
        return list(idx)
    return [str(x) for x in pf.read(columns=["sample_id"]).column("sample_id").to_pylist()]


def read_results(
    path: str | os.PathLike, sample_ids: Sequence[str] | None = None, *, use_f32: bool = True
) -> list[AttributionResult]:
    """Results of a file, all or only ``sample_ids`` (then only their row groups are decoded).

    Raises:
        TrackingError: the file is missing, corrupt or not an attribution file (the message names it).
        SchemaVersionError: the file is newer than this reader.
        InputError: an unknown sample id.
    """
    pf = _open(path)
    with _named_errors(path):
        if sample_ids is None:
            return table_to_results(pf.read(), use_f32=use_f32)
        sample_ids = [str(s) for s in sample_ids]
        idx = _index(pf)
        if idx is None or any(s not in idx for s in sample_ids):
            table = pf.read()
        else:
            groups = sorted({idx[s][0] for s in sample_ids})
            table = pf.read_row_groups(groups)
        return table_to_results(table, sample_ids=sample_ids, use_f32=use_f32)


@contextlib.contextmanager
def _named_errors(path: str | os.PathLike):
    """Errors while decoding ``path`` as :class:`TrackingError` naming it (unknown sample ids stay InputError)."""
    try:
        yield
    except InputError:
        raise
    except TrackingError as e:
        raise TrackingError(f"{path}: {e}") from None
    except (pa.ArrowException, OSError, ValueError) as e:
        raise TrackingError(f"{path}: corrupt Parquet data ({e})") from None


def _row_groups_by_stats(pf: pq.ParquetFile, sample_id: str) -> list[int]:
    """Row groups whose sample_id min/max statistics may contain ``sample_id`` (fallback without index)."""
    col = pf.schema_arrow.get_field_index("sample_id")
    out = []
    for g in range(pf.num_row_groups):
        st = pf.metadata.row_group(g).column(col).statistics
        if st is None or not st.has_min_max or st.min <= sample_id <= st.max:
            out.append(g)
    return out


def read_sample(path: str | os.PathLike, sample_id: str, *, use_f32: bool = True) -> AttributionResult:
    """One sample of a results file, decoding only the row group that holds it.

    Uses the ``attrib_mlops.index`` metadata, or the ``sample_id`` column
    statistics of each row group when a file has no index.
    """
    pf = _open(path)
    sample_id = str(sample_id)
    with _named_errors(path):
        idx = _index(pf)
        if idx is not None:
            if sample_id not in idx:
                raise InputError(
                    f"unknown sample id {sample_id!r}; {path} has {len(idx)} samples, e.g. {list(idx)[:5]}"
                )
            groups = [idx[sample_id][0]]
        else:
            groups = _row_groups_by_stats(pf, sample_id)
        for g in groups:
            table = pf.read_row_group(g)
            if sample_id in set(map(str, table.column("sample_id").to_pylist())):
                return table_to_results(table, sample_ids=[sample_id], use_f32=use_f32)[0]
        raise InputError(f"unknown sample id {sample_id!r} in {path}")
