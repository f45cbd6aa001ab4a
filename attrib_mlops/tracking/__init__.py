"""MLflow tracking of attribution: storage layout, Parquet columns, HTML view, writer and reader.

The storage layout is a versioned contract (``SCHEMA_VERSION``); see
:mod:`attrib_mlops.tracking.layout` and ``docs/storage.md``.

    from attrib_mlops.tracking import AttributionWriter, AttributionReader

mlflow is imported lazily: importing this package does not import mlflow.
"""

from __future__ import annotations

from attrib_mlops.tracking.columnar import read_results, read_sample, results_to_table, table_to_results, write_results
from attrib_mlops.tracking.errors import SchemaVersionError, TrackingError, TrackingUnavailableError
from attrib_mlops.tracking.html import render_step_html
from attrib_mlops.tracking.layout import SCHEMA_VERSION, metric_key, safe_name
from attrib_mlops.tracking.reader import AttributionReader, MetricPoint, RunInfo
from attrib_mlops.tracking.writer import AttributionWriter, StepSummary, default_spool_dir

__all__ = [
    "SCHEMA_VERSION",
    "AttributionReader",
    "AttributionWriter",
    "MetricPoint",
    "RunInfo",
    "SchemaVersionError",
    "StepSummary",
    "TrackingError",
    "TrackingUnavailableError",
    "default_spool_dir",
    "metric_key",
    "read_results",
    "read_sample",
    "render_step_html",
    "results_to_table",
    "safe_name",
    "table_to_results",
    "write_results",
]
