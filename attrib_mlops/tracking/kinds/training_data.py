"""The training-data kind: :class:`~attrib_mlops.training_data.result.TrainingDataAttribution` in storage.

Files: ``steps/<step>/training_data/<model>/<method>.parquet``, one row per query (probe
sample), with ``summary.json`` and ``view.html`` under ``steps/<step>/training_data/``; the
manifest's step record gets ``step["kinds"]["training_data"]`` and the manifest
``"kinds": {"training_data": {"version": 1}}``. Schema v1 readers never look there (additive).

Columns: ``sample_id``, ``method``, ``prompt``, ``target``, ``target_tokens``, ``selected``,
``scores`` (float32, one per training example, in the index's order), ``top_k``, ``scale``
and ``info`` (JSON). The example ids and texts are the same for every row of a file and are
stored once, in the file's metadata (``examples``: JSON ``{"ids", "texts"}``). No pickle.

Metrics per query come from the metric registry (kind ``training_data``,
:mod:`attrib_mlops.analysis.kinds.training_data`): ``top_score``, ``positive_share``,
``top_concentration``; drift against the previous and first step: ``top_overlap`` of the top
``k`` supporting examples.

Reading back (what the dashboard does)::

    reader = AttributionReader(tracking_uri)
    results = reader.load(run_id, 0, "model", "tracin", kind="training_data")   # [TrainingDataAttribution]
    summary = reader.summary(run_id, 0, kind="training_data")
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from attrib_mlops._util import dumps
from attrib_mlops.analysis.kinds.training_data import TRAINING_DATA, TrainingPairContext, TrainingSampleContext
from attrib_mlops.analysis.registry import compute
from attrib_mlops.errors import InputError
from attrib_mlops.tracking.errors import TrackingError
from attrib_mlops.tracking.kinds.base import (StorageKind, aggregate_samples, drift_by_id, open_parquet,
                                             write_parquet)
from attrib_mlops.training_data.result import TrainingDataAttribution

__all__ = ["TrainingDataKind", "FORMAT"]

#: Parquet metadata tag of a training-data file.
FORMAT = "attrib-mlops/training-data"
_COLUMNS = ("sample_id", "method", "prompt", "target", "target_tokens", "selected", "scores", "top_k", "scale",
            "info")


def _table(results: Sequence[TrainingDataAttribution], metadata: dict[str, Any]) -> Any:
    import pyarrow as pa

    first = results[0] if results else None
    for r in results[1:]:
        if r.ids != first.ids:
            raise InputError("results of one (model, method) must score the same training examples (one index)")
    rows = {
        "sample_id": [str(r.sample_id) for r in results],
        "method": [r.method for r in results],
        "prompt": [r.prompt for r in results],
        "target": [r.target for r in results],
        "target_tokens": [list(r.target_tokens) for r in results],
        "selected": [[int(i) for i in r.selected] for r in results],
        "scores": [r.scores.tolist() for r in results],
        "top_k": [int(r.top_k) for r in results],
        "scale": [r.scale for r in results],
        "info": [dumps(r.info) for r in results],
    }
    examples = {"ids": list(first.ids), "texts": list(first.texts)} if first is not None else {"ids": [], "texts": []}
    schema = pa.schema([
        ("sample_id", pa.string()), ("method", pa.string()), ("prompt", pa.string()), ("target", pa.string()),
        ("target_tokens", pa.list_(pa.string())), ("selected", pa.list_(pa.int32())),
        ("scores", pa.list_(pa.float32())), ("top_k", pa.int32()), ("scale", pa.float64()), ("info", pa.string()),
    ], metadata={b"format": FORMAT.encode(), b"kind_version": str(TrainingDataKind.version).encode(),
                 b"meta": dumps(metadata).encode(), b"examples": dumps(examples).encode()})
    return pa.table(rows, schema=schema)


def _open(path: str | Path) -> Any:
    return open_parquet(path, FORMAT, "training-data", TrainingDataKind.version)


class TrainingDataKind(StorageKind):
    """Per-training-example scores of queries, one Parquet file per (model, method) and step."""

    name = TRAINING_DATA
    version = 1
    result_type = TrainingDataAttribution
    suffix = ".parquet"

    # ------------------------------------------------------------ files
    def write(self, results: Sequence[TrainingDataAttribution], path: Path, *, metadata: dict[str, Any],
              row_group_size: int, keep_float32: bool) -> None:
        write_parquet(_table(results, metadata), path, row_group_size)

    def read(self, path: str | Path, sample_ids: Sequence[str] | None = None) -> list[TrainingDataAttribution]:
        import numpy as np

        pf = _open(path)
        try:
            ex = json.loads((pf.schema_arrow.metadata or {}).get(b"examples", b"{}"))
            ids, texts = list(ex.get("ids", [])), list(ex.get("texts", []))
            out = {}
            for r in pf.read(columns=list(_COLUMNS)).to_pylist():
                out[str(r["sample_id"])] = TrainingDataAttribution(
                    np.asarray(r["scores"], dtype=np.float32), ids, texts, r["method"], r["prompt"], r["target"],
                    list(r["target_tokens"] or []), [int(i) for i in r["selected"] or []], r["scale"],
                    json.loads(r["info"] or "{}"), int(r["top_k"]), str(r["sample_id"]))
        except (InputError, TrackingError):
            raise
        except Exception as e:  # noqa: BLE001 - any decoding failure is a corrupt file
            raise TrackingError(f"corrupt training-data file ({e})") from None
        if sample_ids is None:
            return list(out.values())
        missing = [s for s in sample_ids if str(s) not in out]
        if missing:
            raise InputError(f"sample ids {missing[:5]} are not in this file; it has {sorted(out)[:10]}")
        return [out[str(s)] for s in sample_ids]

    def check(self, path: str | Path) -> None:
        pf = _open(path)
        try:
            if pf.num_row_groups:
                pf.read_row_group(0, columns=["sample_id", "scores"])
        except Exception as e:  # noqa: BLE001
            raise TrackingError(f"corrupt Parquet data ({e})") from None

    # ------------------------------------------------------------ metrics
    def compute(self, groups: Mapping[str, list[TrainingDataAttribution]], ground_truth: Mapping[str, list[int]],
                references: Mapping[str, Mapping[str, tuple[int | None, dict[str, Any] | None]]],
                k: int) -> dict[str, Any]:
        """Per method: the registry's ``sample`` metrics per query, their means, drift and the top example ids.

        ``ground_truth`` (token positions of the probe set) does not apply to training examples.
        """
        section: dict[str, Any] = {"methods": {}, "agreement": {}}
        for method, rs in groups.items():
            per_sample: dict[str, dict[str, float]] = {}
            tops: dict[str, dict[str, list[str]]] = {}
            for r in rs:
                sid = str(r.sample_id)
                per_sample[sid] = compute("sample", TrainingSampleContext(r, k=k), kind=TRAINING_DATA)
                top = r.top(k)
                tops[sid] = {side: [it["id"] for it in items] for side, items in top.items()}
            drift_info = drift_by_id(rs, references.get(method, {}), per_sample, TRAINING_DATA,
                                     lambda other, r: TrainingPairContext(other, r, k=k))
            agg = aggregate_samples(per_sample, TRAINING_DATA)
            section["methods"][method] = {"engine": TRAINING_DATA, "n_samples": len(rs), "metrics": agg,
                                          "drift": drift_info, "samples": per_sample, "top_examples": tops}
        return section

    # ------------------------------------------------------------ view
    def render(self, panels: Mapping[tuple[str, str], list[TrainingDataAttribution]], meta: dict[str, Any],
               title: str) -> str:
        """Each query with its top supporting and opposing training examples and their scores, all escaped."""
        e = html.escape
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
                 "<style>body{font-family:sans-serif;font-size:13px}td{padding:2px 6px;vertical-align:top}"
                 ".pos{color:#b03020}.neg{color:#2050b0}.t{white-space:pre-wrap}</style></head><body>",
                 f"<h3>{e(title)} · training data</h3>"]
        limit = int(meta.get("max_samples") or 50)
        for (model, method), rs in sorted(panels.items()):
            parts.append(f"<h4>{e(model)} · {e(method)} ({len(rs)} queries)</h4>")
            for r in rs[:limit]:
                parts.append(f"<div><b>{e(str(r.sample_id))}</b>: <span class='t'>{e(r.prompt)}</span> → "
                             f"<span class='t'>{e(r.target)}</span><table>")
                for side, items in r.top(min(int(r.top_k), 5)).items():
                    cls = "pos" if side == "positive" else "neg"
                    for it in items:
                        score = f"{it['score']:.4g}"
                        parts.append(f"<tr class='{cls}'><td>{e(side)}</td><td>{e(str(it['id']))}</td>"
                                     f"<td>{e(score)}</td><td class='t'>{e(it['text'][:200])}</td></tr>")
                parts.append("</table></div>")
        parts.append("</body></html>")
        return "".join(parts)
