"""Classifier probe metrics as MLflow metric records: accuracy and rationale alignment per method.

Keys follow the storage contract (:func:`attrib_mlops.tracking.layout.metric_key`):
``attrib/[<model>/]probe/accuracy`` for the probe accuracy and
``attrib/[<model>/]<method>/rationale_<name>`` for the rationale metrics of
:func:`attrib_mlops.analysis.rationale.rationale_report` (``hit_at_<k>``,
``precision_at_r``, ``kendall_tau``, ``kendall_tau_max``, ``kendall_tau_norm``).

Example:
    >>> metrics = classifier_probe_metrics(results, records)           # doctest: +SKIP
    >>> log_metrics(MlflowClient(), run_id, metrics, step=100)          # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from attrib_mlops.analysis.rationale import accuracy, rationale_report
from attrib_mlops.result import AttributionResult
from attrib_mlops.tracking.layout import DEFAULT_MODEL, metric_key

__all__ = ["classifier_probe_metrics", "log_metrics"]


def _name(metric: str) -> str:
    return metric.replace("@", "_at_")


def classifier_probe_metrics(
    results: Sequence[AttributionResult],
    records: Sequence[Mapping[str, Any]],
    model: str = DEFAULT_MODEL,
    k: int = 1,
    level: str = "word",
) -> dict[str, float]:
    """``{metric key: value}``: probe accuracy (records with ``label``) and, for records with
    ``rationale_spans``, the rationale metrics per method (finite values only)."""
    labelled = [r for r in records if r.get("label") is not None]
    out: dict[str, float] = {}
    first = [r for r in results if r.method == results[0].method] if results else []
    by_id = {str(r["id"]): r for r in records}
    if labelled and first:
        pred = [r.info.get("predicted_label") for r in first if str(r.sample_id) in by_id]
        gold = [by_id[str(r.sample_id)].get("label") for r in first if str(r.sample_id) in by_id]
        out[metric_key("probe", "accuracy", model)] = accuracy(pred, gold)
    with_spans = [r for r in records if r.get("rationale_spans")]
    if with_spans:
        ids = {str(r["id"]) for r in with_spans}
        chosen = [r for r in results if str(r.sample_id) in ids]
        for method, vals in rationale_report(chosen, with_spans, k=k, level=level).items():
            for name, v in vals.items():
                if name in ("accuracy", "n") or not math.isfinite(v):
                    continue
                out[metric_key(method, f"rationale_{_name(name)}", model)] = float(v)
    return out


def log_metrics(client: Any, run_id: str, metrics: Mapping[str, float], step: int) -> None:
    """Log ``metrics`` at ``step`` with one ``log_batch`` call on an explicit run."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, int(step)) for k, v in metrics.items()])
