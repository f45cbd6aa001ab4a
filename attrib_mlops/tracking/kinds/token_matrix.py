"""The token-matrix kind: :class:`~attrib_mlops.result.AttributionResult` in storage schema v1.

Files are the Parquet tables of :mod:`attrib_mlops.tracking.columnar` (one row per
probe sample). This kind keeps the places schema v1 gave it, so what v1 wrote is
what it reads and writes:

* files directly in the step directory: ``steps/<step>/<model>/<method>.parquet``,
  ``steps/<step>/summary.json``, ``steps/<step>/view.html``;
* its manifest entry is the step record's own ``models`` / ``files`` / ``summary`` /
  ``view`` / ``n_samples`` keys (not ``step["kinds"]["token_matrix"]``);
* the probe section of the manifest gets each model's tokens (``probe.tokens``).

Metrics per sample: :func:`attrib_mlops.analysis.summarize` (concentration, top-k
mass, ground-truth hit@k), drift against the previous and the first logged step
(Spearman, Jensen-Shannon, top-k overlap of token importance) and, with several
methods, their agreement; ``summary.json`` also keeps each sample's source and
target token importance.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attrib_mlops._util import nanmean
from attrib_mlops.analysis import drift, method_agreement, source_importance, summarize, target_importance
from attrib_mlops.analysis.compare import pair_samples
from attrib_mlops.analysis.registry import TOKEN_MATRIX, compute, get_metric
from attrib_mlops.errors import AttribError
from attrib_mlops.result import AttributionResult
from attrib_mlops.tracking import layout as L
from attrib_mlops.tracking.columnar import _open, read_results, read_sample, write_results
from attrib_mlops.tracking.errors import SchemaVersionError, TrackingError
from attrib_mlops.tracking.html import render_step_html
from attrib_mlops.tracking.kinds.base import StorageKind

__all__ = ["TokenMatrixKind"]

# the warnings keep the logger name they had when this code lived in the writer
logger = logging.getLogger("attrib_mlops.tracking.writer")

#: Reference points of drift, as they prefix the per-sample keys (``drift_prev_spearman``).


def _undefined() -> dict[str, float]:
    """NaN for each sample metric that every result has (what a sample whose metrics are undefined gets).

    Those are the registered metrics the registry computes on a result with no step scores and no
    ground truth.
    """
    from attrib_mlops.analysis.kinds.token_matrix import SampleContext

    plain = AttributionResult(np.ones((1, 1)), ["a"], ["b"], "none", "none", n_prompt=1)
    return {name: math.nan for name in compute("sample", SampleContext(plain))}


def _kendall_logged() -> bool:
    return get_metric("kendall", "drift").logged


def _vec(v: np.ndarray) -> list[float | None]:
    return [float(f"{x:.6g}") if math.isfinite(x) else None for x in np.asarray(v, dtype=np.float64).tolist()]


class TokenMatrixKind(StorageKind):
    """Token attribution matrices (source tokens x generated tokens), one Parquet file per (model, method)."""

    name = TOKEN_MATRIX
    version = L.SCHEMA_VERSION
    result_type = AttributionResult
    suffix = ".parquet"
    step_subdir = ""  # v1: the step directory itself

    # ------------------------------------------------------------ placement (v1)
    def entry(self, step_record: Mapping[str, Any], create: bool = False) -> dict[str, Any] | None:
        if create:
            for key, value in self.new_entry(int(step_record["step"])).items():
                step_record.setdefault(key, value)  # type: ignore[attr-defined]
        return step_record if isinstance(step_record.get("files"), dict) else None  # type: ignore[return-value]

    def summary_header(self) -> dict[str, Any]:
        return {}

    def on_commit(self, manifest: dict[str, Any], model: str, local_file: Path) -> None:
        """Record the model's tokens of every sample in ``probe.tokens`` (first file wins)."""
        probe = manifest.get("probe")
        if probe is None:
            return
        tokens = probe.setdefault("tokens", {}).setdefault(model, {})
        import pyarrow.parquet as pq

        t = pq.read_table(local_file, columns=["sample_id", "source_tokens", "target_tokens", "n_prompt"])
        for row in t.to_pylist():
            tokens.setdefault(str(row["sample_id"]), {"source_tokens": row["source_tokens"],
                                                      "target_tokens": row["target_tokens"],
                                                      "n_prompt": row["n_prompt"]})

    # ------------------------------------------------------------ files
    def write(self, results: Sequence[AttributionResult], path: Path, *, metadata: dict[str, Any],
              row_group_size: int, keep_float32: bool) -> None:
        write_results(results, path, row_group_size=row_group_size, include_f32=keep_float32, metadata=metadata)

    def read(self, path: str | Path, sample_ids: Sequence[str] | None = None) -> list[AttributionResult]:
        return read_results(path, sample_ids)

    def read_one(self, path: str | Path, sample_id: str) -> AttributionResult:
        return read_sample(path, sample_id)

    def check(self, path: str | Path) -> None:
        try:
            pf = _open(path)
            pf.read_row_group(0, columns=["sample_id"]) if pf.num_row_groups else None
        except (SchemaVersionError, TrackingError):
            raise
        except Exception as e:  # noqa: BLE001 - any decoding failure is a corrupt file
            raise TrackingError(f"corrupt Parquet data ({e})") from None

    # ------------------------------------------------------------ metrics
    def compute(self, groups: Mapping[str, list[AttributionResult]], ground_truth: Mapping[str, list[int]],
                references: Mapping[str, Mapping[str, tuple[int | None, dict[str, Any] | None]]],
                k: int) -> dict[str, Any]:
        section: dict[str, Any] = {"methods": {}, "agreement": {}}
        warned: set[str] = set()
        for method, rs in groups.items():
            per_sample: dict[str, dict[str, float]] = {}
            importance: dict[str, dict[str, list]] = {}
            for r in rs:
                sid = str(r.sample_id)
                per_sample[sid] = self._summarize_one(r, ground_truth.get(sid), k, warned)
                importance[sid] = {"source": _vec(source_importance(r)), "target": _vec(target_importance(r))}
            drift_info: dict[str, Any] = {}
            for which, (ref_step, ref) in references.get(method, {}).items():
                drift_info[f"{which}_step"] = ref_step
                if ref is None:
                    continue
                n_used = 0
                # different source tokens (e.g. a new generation): not comparable, skipped
                for pair in pair_samples(rs, ref.values(), match="source").pairs:
                    try:
                        d = drift(pair.b, pair.a, k=k, kendall=_kendall_logged())
                    except AttribError:
                        continue
                    n_used += 1
                    for name, v in d.items():
                        per_sample[pair.sample_id][f"drift_{which}_{name}"] = v
                drift_info[f"{which}_n_samples"] = n_used
            keys = sorted({key for m in per_sample.values() for key in m})
            agg = {key: nanmean([m.get(key, math.nan) for m in per_sample.values()]) for key in keys}
            section["methods"][method] = {
                "engine": rs[0].engine,
                "n_samples": len(rs),
                "metrics": agg,
                "drift": drift_info,
                "samples": per_sample,
                "importance": importance,
            }
        if len(groups) >= 2:
            section["agreement"] = self._agreement(groups)
        return section

    @staticmethod
    def _summarize_one(r: AttributionResult, positions: list[int] | None, k: int, warned: set) -> dict[str, float]:
        try:
            return summarize(r, k=k, true_positions=positions)
        except AttribError as e:
            if positions is not None:
                if "gt" not in warned:
                    logger.warning("ground truth of sample %r not usable (%s); hit@k left out", r.sample_id, e)
                    warned.add("gt")
                try:
                    return summarize(r, k=k)
                except AttribError:
                    pass
            if "nonfinite" not in warned:
                logger.warning("sample %r (%s): metrics undefined (%s)", r.sample_id, r.method, e)
                warned.add("nonfinite")
            return _undefined()

    @staticmethod
    def _agreement(groups: Mapping[str, list[AttributionResult]]) -> dict[str, float]:
        by_sid = {m: {str(r.sample_id): r for r in rs} for m, rs in groups.items()}
        common = set.intersection(*(set(d) for d in by_sid.values()))
        pairs: dict[str, list[float]] = {}
        for sid in sorted(common):
            try:
                ag = method_agreement({m: by_sid[m][sid] for m in by_sid})
            except AttribError:
                continue
            for key, v in ag.items():
                pairs.setdefault(key.replace("~", "_vs_"), []).append(v)
        return {name: nanmean(v) for name, v in pairs.items()}


    # ------------------------------------------------------------ view
    def render(self, panels: Mapping[tuple[str, str], list[AttributionResult]], meta: dict[str, Any],
               title: str) -> str:
        return render_step_html(dict(panels), meta, title=title)
