"""Log an attribution job (``attrib-mlops run JOB.yaml``) to MLflow.

One MLflow run per job, in the experiment named by ``experiment`` (default:
the job's name). Every model of the job is stored under its own name at step 0
(``attribution/steps/0000000000/<model>/<method>.parquet``), so one run holds
the whole models x methods x samples grid and the dashboard's compare view can
put two models side by side. Run status follows the job: RUNNING while it
runs, FINISHED, FAILED or KILLED (interrupted) at the end. The run carries the
job's content key (tag ``attrib_mlops.job.key``): running the same job again
continues that run, and older runs of it left RUNNING (a killed process) are
marked KILLED. The job spec is logged as
``attribution/job/spec.json`` and its scalar settings as params.

When the job has two or more models attributed on the same teacher-forced
continuations (``targets: given`` or ``targets: model:<name>``), the sink also
logs difference summaries for every pair of models and every method: mean
Spearman / Jensen-Shannon / top-k overlap of token importance over the samples
whose tokens match (samples whose tokens differ are counted, never compared),
and the mean absolute cell difference, as
``attribution/job/differences.json`` and metrics
``attrib/diff/<model_a>_vs_<model_b>/<method>/<metric>``.
"""

from __future__ import annotations

import itertools
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis import drift
from ..analysis.compare import pair_samples
from ..analysis.registry import TOKEN_MATRIX, get_metric, list_metrics, nanmean
from ..result import AttributionResult
from .layout import metric_component
from .writer import AttributionWriter

logger = logging.getLogger(__name__)

__all__ = ["MlflowJobSink", "model_differences", "job_run_key", "JOB_KEY_TAG"]


#: Per pair of models and method: the logged drift metrics of the registry, then the mean |A1 - A2| of the cells.
MEAN_ABS_DIFF = "mean_abs_diff"


def _drift_metrics() -> list[str]:
    return [m.name for m in list_metrics("drift", TOKEN_MATRIX) if m.logged]


def model_differences(a: list[AttributionResult], b: list[AttributionResult], k: int = 3) -> dict[str, Any]:
    """Mean drift and mean |A1 - A2| between two models' results on the same samples.

    Samples are paired by id (:func:`~attrib_mlops.analysis.compare.pair_samples`); a pair whose
    tokens differ is counted in ``skipped_different_tokens``, never compared. The drift metrics are
    the registry's logged ``drift`` metrics, each averaged as it registered.
    """
    names = _drift_metrics()
    pairing = pair_samples(a, b, match="exact")
    vals: dict[str, list[float]] = {name: [] for name in [*names, MEAN_ABS_DIFF]}
    for pair in pairing.pairs:
        d = drift(pair.a, pair.b, k=k, kendall="kendall" in names)
        for key in names:
            vals[key].append(float(d[key]))
        diff = np.abs(pair.a.matrix - pair.b.matrix)
        vals[MEAN_ABS_DIFF].append(float(np.nanmean(diff)) if np.isfinite(diff).any() else float("nan"))
    out: dict[str, Any] = {"compared": len(pairing.pairs), "skipped_different_tokens": len(pairing.skipped)}
    for key, vs in vals.items():
        out[key] = get_metric(key, "drift", TOKEN_MATRIX).reduce(vs) if key != MEAN_ABS_DIFF else nanmean(vs)
    return out


#: Tag holding a job run's content key (:func:`job_run_key`): a re-run of the same job continues that run.
JOB_KEY_TAG = "attrib_mlops.job.key"


def job_run_key(spec: dict[str, Any], probe_fingerprint: str) -> str:
    """Content key of a job's MLflow run: the spec (without its local folders) and the probe set.

    Example:
        >>> job_run_key({"name": "j", "output_dir": "a"}, "fp") == job_run_key({"name": "j", "output_dir": "b"}, "fp")
        True
    """
    from .._util import content_hash

    body = {k: v for k, v in spec.items() if k not in ("output_dir", "cache_dir")}
    return content_hash({"job": body, "probe": probe_fingerprint})


class MlflowJobSink:
    """A :class:`~attrib_mlops.job.ResultSink` writing one MLflow run per job.

    Args:
        tracking_uri: MLflow tracking URI (default: ``MLFLOW_TRACKING_URI`` or MLflow's default).
        experiment: experiment name (default: the job name).
        spool_dir: spool of the writer (see :class:`AttributionWriter`).
    """

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None, spool_dir: Any = None):
        import mlflow
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        self.experiment = experiment
        self.spool_dir = spool_dir
        self.run_id: str | None = None
        self._writer: AttributionWriter | None = None
        self._results: dict[tuple[str, str], list[AttributionResult]] = {}
        self._job = None
        self._gt: dict[str, list[int]] = {}

    def begin(self, job: Any, probe_set: Any) -> None:
        from .runs import get_or_create_run

        spec = job.to_dict()
        key = job_run_key(spec, probe_set.fingerprint)
        self.run_id = self._adopt(self.experiment or job.name, key)
        if self.run_id is None:
            self.run_id = get_or_create_run(
                client=self.client, experiment=self.experiment or job.name, run_name=job.name,
                tags={"attrib_mlops.kind": "job", "attrib_mlops.job.targets": str(job.targets), JOB_KEY_TAG: key},
            ).run_id
        self._job = job
        params = {
            "job.models": ",".join(m.name for m in job.models),
            "job.methods": ",".join(job.methods),
            "job.engine": job.engine,
            "job.targets": str(job.targets),
            "job.n_samples": str(len(probe_set)),
        }
        for key, value in spec.get("options", {}).items():
            if value is not None and not isinstance(value, (dict, list)):
                params[f"option.{key}"] = str(value)
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, v[:500]) for k, v in params.items()])
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "spec.json"
            p.write_text(json.dumps(spec, indent=2, default=str))
            self.client.log_artifact(self.run_id, str(p), "attribution/job")
        self._writer = AttributionWriter(self.client, run_id=self.run_id, spool_dir=self.spool_dir)
        self._gt = {s.id: s.ground_truth for s in probe_set if s.ground_truth}
        self._writer.log_probe_set(probe_set)
        logger.info("logging job %r to MLflow run %s (%s)", job.name, self.run_id, self.tracking_uri)

    def _adopt(self, experiment: str, key: str) -> str | None:
        """The run of an earlier attempt at the same job (same content key), set RUNNING again; else None.

        The newest such run is continued (whatever its status: a re-run after a kill, a crash or a
        finished run); older ones still RUNNING (stale, e.g. after SIGKILL) are marked KILLED.
        """
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            return None
        runs = self.client.search_runs([exp.experiment_id], filter_string=f"tags.`{JOB_KEY_TAG}` = '{key}'",
                                       order_by=["attributes.start_time DESC"], max_results=50)
        if not runs:
            return None
        for stale in runs[1:]:
            if stale.info.status == "RUNNING":
                logger.info("marking stale run %s of the same job KILLED", stale.info.run_id)
                self.client.set_terminated(stale.info.run_id, "KILLED")
        run_id = runs[0].info.run_id
        if runs[0].info.status != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")
        logger.info("continuing MLflow run %s of the same job (status was %s)", run_id, runs[0].info.status)
        return run_id

    def write(self, model_name: str, method: str, results: list[AttributionResult]) -> None:
        self._results[(model_name, method)] = list(results)
        self._writer.log_step(0, list(results), model=model_name, ground_truth=self._gt or None)

    def end(self, status: str) -> None:
        if self.run_id is None:
            return
        try:
            if status == "FINISHED":
                self._log_differences()
            if self._writer is not None:
                self._writer.flush()
        finally:
            self.client.set_terminated(self.run_id, status)

    def _log_differences(self) -> None:
        job = self._job
        if job is None or len(job.models) < 2 or str(job.targets) == "generate":
            return
        from mlflow.entities import Metric

        report: dict[str, Any] = {}
        metrics = []
        for (ma, mb) in itertools.combinations([m.name for m in job.models], 2):
            for method in job.methods:
                a, b = self._results.get((ma, method)), self._results.get((mb, method))
                if not a or not b or not isinstance(a[0], AttributionResult):  # token matrices only
                    continue
                d = model_differences(a, b)
                report.setdefault(f"{ma}_vs_{mb}", {})[method] = d
                for key in [*_drift_metrics(), MEAN_ABS_DIFF]:
                    if d[key] is not None:
                        name = f"attrib/diff/{metric_component(ma)}_vs_{metric_component(mb)}/{metric_component(method)}/{key}"
                        metrics.append(Metric(name, float(d[key]), 0, 0))
        if not report:
            return
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "differences.json"
            p.write_text(json.dumps(report, indent=2))
            self.client.log_artifact(self.run_id, str(p), "attribution/job")
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

