"""The context-sources kind: :class:`~attrib_mlops.sources.result.SourceAttribution` in storage.

Files: ``steps/<step>/sources/<model>/<method>.parquet``, one row per probe sample, with
``summary.json`` and ``view.html`` next to them under ``steps/<step>/sources/``; the
manifest's step record gets ``step["kinds"]["sources"] = {"models", "files", "summary",
"view", "n_samples"}`` and the manifest ``"kinds": {"sources": {"version": 1}}``. Schema v1
readers never look there (additive).

Columns: ``sample_id``, ``method``, ``sources`` (texts), ``scores`` (float64), ``top_source``,
``lds``, ``target`` and ``record`` (the result's :meth:`SourceAttribution.to_dict` as JSON,
ablation data included, so a reader can refit a target sub-span). One row group per
``row_group_size`` samples; no pickle.

Metrics per sample come from the metric registry (kind ``sources``,
:mod:`attrib_mlops.analysis.kinds.sources`): ``lds``, ``top1_drop``, ``hit_at_1``, ...;
drift against the previous and the first step (``top_source_same``, ``spearman``) when the
sample's sources are the same; between methods of the step, the same drift metrics as
``agreement`` (``attrib/sources/agreement/ablation_vs_at2_top_source_same``). MLflow keys are
``attrib/sources/<method>/<metric>`` (``attrib/sources/<model>/<method>/<metric>`` for a named model).

Reading back (what the dashboard does)::

    reader = AttributionReader(tracking_uri)
    results = reader.load(run_id, step, model, "ablation", kind="sources")   # [SourceAttribution]
    one = reader.load_sample(run_id, step, model, "at2", "s0", kind="sources")
    summary = reader.summary(run_id, step, kind="sources")                    # metrics per model/method
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from attrib_mlops._util import dumps
from attrib_mlops.analysis.kinds.sources import (
    SOURCES,
    SourcePairContext,
    SourceSampleContext,
    top_source,
)
from attrib_mlops.analysis.registry import compute, list_metrics
from attrib_mlops.errors import InputError
from attrib_mlops.sources.result import SourceAttribution
from attrib_mlops.tracking import layout as L
from attrib_mlops.tracking.errors import TrackingError
from attrib_mlops.tracking.kinds.base import (StorageKind, aggregate_samples, drift_by_id, open_parquet,
                                             write_parquet)

__all__ = ["SourcesKind", "FORMAT"]

#: Parquet metadata tag of a sources file.
FORMAT = "attrib-mlops/sources"


def _table(results: Sequence[SourceAttribution], metadata: dict[str, Any]) -> Any:
    import pyarrow as pa

    rows = {
        "sample_id": [str(r.sample_id) for r in results],
        "method": [r.method for r in results],
        "sources": [list(r.sources) for r in results],
        "scores": [[float(x) for x in r.scores] for r in results],
        "top_source": [top_source(r) for r in results],
        "lds": [r.quality.get("lds") for r in results],
        "target": [r.target for r in results],
        "record": [dumps(r.to_dict()) for r in results],
    }
    schema = pa.schema([
        ("sample_id", pa.string()), ("method", pa.string()), ("sources", pa.list_(pa.string())),
        ("scores", pa.list_(pa.float64())), ("top_source", pa.int32()), ("lds", pa.float64()),
        ("target", pa.string()), ("record", pa.string()),
    ], metadata={b"format": FORMAT.encode(), b"kind_version": str(SourcesKind.version).encode(),
                 b"meta": dumps(metadata).encode()})
    return pa.table(rows, schema=schema)


def _open(path: str | Path) -> Any:
    return open_parquet(path, FORMAT, "sources", SourcesKind.version)


def _colour(score: float, top: float) -> str:
    if not math.isfinite(score) or top <= 0:
        return "transparent"
    a = max(-1.0, min(1.0, score / top))
    return f"rgba(220,60,40,{a:.2f})" if a >= 0 else f"rgba(40,90,220,{-a:.2f})"


class SourcesKind(StorageKind):
    """Per-source scores of a target, one Parquet file per (model, method) and step."""

    name = SOURCES
    version = 1
    result_type = SourceAttribution
    suffix = ".parquet"

    # ------------------------------------------------------------ files
    def write(self, results: Sequence[SourceAttribution], path: Path, *, metadata: dict[str, Any],
              row_group_size: int, keep_float32: bool) -> None:
        write_parquet(_table(results, metadata), path, row_group_size)

    def read(self, path: str | Path, sample_ids: Sequence[str] | None = None) -> list[SourceAttribution]:
        pf = _open(path)
        try:
            rows = pf.read(columns=["sample_id", "record"]).to_pylist()
            out = {str(r["sample_id"]): SourceAttribution.from_dict(json.loads(r["record"])) for r in rows}
        except (InputError, TrackingError):
            raise
        except Exception as e:  # noqa: BLE001 - any decoding failure is a corrupt file
            raise TrackingError(f"corrupt sources data ({e})") from None
        if sample_ids is None:
            return list(out.values())
        missing = [s for s in sample_ids if str(s) not in out]
        if missing:
            raise InputError(f"sample ids {missing[:5]} are not in this file; it has {sorted(out)[:10]}")
        return [out[str(s)] for s in sample_ids]

    def check(self, path: str | Path) -> None:
        pf = _open(path)
        try:
            pf.read_row_group(0, columns=["sample_id"]) if pf.num_row_groups else None
        except Exception as e:  # noqa: BLE001
            raise TrackingError(f"corrupt Parquet data ({e})") from None

    # ------------------------------------------------------------ metrics
    def metric_key(self, method: str, name: str, model: str = L.DEFAULT_MODEL) -> str:
        """``attrib/sources/<method>/<name>`` (``attrib/sources/<model>/<method>/<name>`` for a named model)."""
        return "attrib/" + SOURCES + "/" + L.metric_key(method, name, model)[len("attrib/"):]

    def compute(self, groups: Mapping[str, list[SourceAttribution]], ground_truth: Mapping[str, list[int]],
                references: Mapping[str, Mapping[str, tuple[int | None, dict[str, Any] | None]]],
                k: int) -> dict[str, Any]:
        """Per method: the registry's ``sample`` metrics per sample and their aggregates, drift, top sources.

        ``ground_truth`` (token positions of the probe set) is not used: a sources result names its
        true sources itself (``info["true_sources"]``).
        """
        section: dict[str, Any] = {"methods": {}, "agreement": {}}
        for method, rs in groups.items():
            per_sample: dict[str, dict[str, float]] = {}
            tops: dict[str, dict[str, Any]] = {}
            for r in rs:
                sid = str(r.sample_id)
                per_sample[sid] = compute("sample", SourceSampleContext(r, k=k), kind=SOURCES)
                t = top_source(r)
                tops[sid] = {"index": t, "source": r.sources[t] if t is not None else None,
                             "n_sources": r.n_sources}
            def pair(other: SourceAttribution, r: SourceAttribution) -> SourcePairContext | None:
                ctx = SourcePairContext(other, r, k=k)
                return ctx if ctx.comparable else None

            drift_info = drift_by_id(rs, references.get(method, {}), per_sample, SOURCES, pair)
            agg = aggregate_samples(per_sample, SOURCES)
            section["methods"][method] = {
                "engine": method,
                "n_samples": len(rs),
                "metrics": agg,
                "drift": drift_info,
                "samples": per_sample,
                "top_sources": tops,
            }
        section["agreement"] = self._agreement(groups, k)
        return section

    @staticmethod
    def _agreement(groups: Mapping[str, list[SourceAttribution]], k: int) -> dict[str, float | None]:
        """Between methods of a step (e.g. ``ablation_vs_at2_top_source_same``): the drift metrics,
        averaged over the samples both methods scored on the same sources."""
        out: dict[str, float | None] = {}
        names = list(groups)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                by_b = {str(r.sample_id): r for r in groups[b]}
                values: dict[str, list[float]] = {}
                for ra in groups[a]:
                    rb = by_b.get(str(ra.sample_id))
                    ctx = SourcePairContext(ra, rb, k=k) if rb is not None else None
                    if ctx is None or not ctx.comparable:
                        continue
                    for name, v in compute("drift", ctx, kind=SOURCES).items():
                        values.setdefault(name, []).append(float(v))
                for m in list_metrics("drift", SOURCES):
                    if m.name in values:
                        out[f"{a}_vs_{b}_{m.name}"] = m.reduce(values[m.name])
        return out


    # ------------------------------------------------------------ view
    def render(self, panels: Mapping[tuple[str, str], list[SourceAttribution]], meta: dict[str, Any],
               title: str) -> str:
        """Each sample's prompt with its sources coloured by score (red: used, blue: negative), escaped."""
        e = html.escape
        parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
                 "<style>body{font-family:sans-serif;font-size:13px}.src{padding:1px 2px;border-radius:3px}"
                 ".p{white-space:pre-wrap;border:1px solid #ddd;padding:4px;margin:4px 0}</style></head><body>",
                 f"<h3>{e(title)} · sources</h3>"]
        limit = int(meta.get("max_samples") or 50)
        for (model, method), rs in sorted(panels.items()):
            parts.append(f"<h4>{e(model)} · {e(method)} ({len(rs)} samples)</h4>")
            for r in rs[:limit]:
                top = float(max((abs(x) for x in r.scores if math.isfinite(x)), default=0.0))
                text, pos, out = r.prompt, 0, []
                for (a, b), s in zip(r.spans, r.scores):
                    if not text or a < pos or b > len(text):
                        out = [e(" | ".join(r.sources))]
                        break
                    out.append(e(text[pos:a]))
                    out.append(f"<span class='src' style='background:{_colour(float(s), top)}' "
                               f"title='{e(f'{float(s):.4g}')}'>{e(text[a:b])}</span>")
                    pos = b
                else:
                    out.append(e(text[pos:]))
                lds = r.quality.get("lds")
                q = f" · LDS {lds:.2f}" if isinstance(lds, (int, float)) and math.isfinite(lds) else ""
                parts.append(f"<div><b>{e(str(r.sample_id))}</b>{e(q)} → {e(r.target)}"
                             f"<div class='p'>{''.join(out)}</div></div>")
        parts.append("</body></html>")
        return "".join(parts)
