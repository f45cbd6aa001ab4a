"""Where a job's results go: the :class:`ResultSink` protocol and the MLflow step sink.

Sinks of the package:

* :class:`~attrib_mlops.tracking.folder.LocalFolderSink`: the local results folder (default);
* :class:`~attrib_mlops.tracking.job_sink.MlflowJobSink`: one MLflow run per job
  (``attrib-mlops run``), with model differences;
* :class:`StepSink`: each model's results as one attribution step of an MLflow run
  (``backfill``: one checkpoint = one step; the dashboard's New job: every model at step 0).

Example:
    >>> sink = StepSink(tracking_uri="sqlite:///mlflow.db", experiment="jobs")   # doctest: +SKIP
    >>> run_job(spec, sinks=[sink]); sink.run_id                                   # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, runtime_checkable

logger = logging.getLogger(__name__)

__all__ = ["ResultSink", "StepSink"]


@runtime_checkable
class ResultSink(Protocol):
    """Where a job's results go. Implement these three methods to add a sink.

    Call order: ``begin`` once, then ``write`` once per (model, method) pair as soon as
    that pair is complete (results in probe-set order, cached ones included; a sink must
    treat a repeated pair as a replacement), then ``end`` once, also when the job fails
    (``status="FAILED"``, or ``"KILLED"`` when interrupted; the exception is re-raised after
    all sinks ended). Results of an
    attribution kind other than the token matrix arrive as that kind's result objects.
    """

    def begin(self, job: Any, probe_set: Any) -> None:
        """The job starts: ``job`` is the validated spec, ``probe_set`` the selected samples."""

    def write(self, model_name: str, method: str, results: list[Any]) -> None:
        """All results of one (model, method) pair."""

    def end(self, status: Literal["FINISHED", "FAILED", "KILLED"]) -> None:
        """The job is over."""


class StepSink:
    """Logs each model's results, all methods together, as one attribution step of an MLflow run.

    A model's step is committed once all of the job's methods are written for it, so an
    interrupted job leaves only complete steps behind.

    Args:
        tracking_uri: MLflow tracking URI (default: MLflow's current one).
        run_id: log into this run (it must exist); default: a new run.
        experiment, run_name, tags: of a new run (see :func:`~attrib_mlops.tracking.runs.get_or_create_run`).
        params: params logged at :meth:`begin`.
        steps: ``{job model name: step}``; a model not listed is logged at step 0.
        model_label: the model name written in the step (default: the job's model name).
        spool_dir, strict: of the :class:`~attrib_mlops.tracking.AttributionWriter`.
        terminate: end the run with the job's status (a run this sink created); ``False``
            leaves the run's status alone.
        on_run: called with the run id once the run is known.
        keep_float32: also store float32 matrices (see :class:`~attrib_mlops.tracking.AttributionWriter`),
            so readers get the computed values rather than their float16 display copy.
    """

    def __init__(self, *, tracking_uri: str | None = None, run_id: str | None = None, experiment: str | None = None,
                 run_name: str | None = None, tags: Mapping[str, str] | None = None,
                 params: Mapping[str, str] | None = None, steps: Mapping[str, int] | None = None,
                 model_label: str | None = None, spool_dir: Any = None, strict: bool = False,
                 terminate: bool = True, on_run: Callable[[str], None] | None = None, keep_float32: bool = False):
        self.tracking_uri, self.run_id, self.experiment = tracking_uri, run_id, experiment
        self.run_name, self.tags, self.params = run_name, dict(tags or {}), dict(params or {})
        self.steps, self.model_label = dict(steps or {}), model_label
        self.spool_dir, self.strict, self.terminate, self.on_run = spool_dir, strict, terminate, on_run
        self.keep_float32 = keep_float32
        self.client: Any = None
        self.logged_steps: list[int] = []
        self._writer: Any = None
        self._methods: list[str] = []
        self._pending: dict[str, dict[str, list[Any]]] = {}

    def begin(self, job: Any, probe_set: Any) -> None:
        from ..tracking import AttributionWriter
        from ..tracking.runs import get_or_create_run

        handle = get_or_create_run(tracking_uri=self.tracking_uri, run_id=self.run_id, verify=self.run_id is not None,
                                   experiment=self.experiment, run_name=self.run_name, tags=self.tags)
        self.client, self.run_id, self.tracking_uri = handle.client, handle.run_id, handle.tracking_uri
        if self.on_run is not None:
            self.on_run(self.run_id)
        if self.params:
            from mlflow.entities import Param

            self.client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in self.params.items()])
        self._methods = list(getattr(job, "all_methods", job.methods))  # training-data methods too
        self._writer = AttributionWriter(self.client, run_id=self.run_id, spool_dir=self.spool_dir,
                                         strict=self.strict, keep_float32=self.keep_float32)
        self._writer.log_probe_set(probe_set.to_records())

    def write(self, model_name: str, method: str, results: list[Any]) -> None:
        pending = self._pending.setdefault(model_name, {})
        pending[method] = list(results)
        if all(m in pending for m in self._methods):
            step = int(self.steps.get(model_name, 0))
            by_kind: dict[type, list[Any]] = {}  # one log_step per kind of result (token matrix, training data)
            for r in (r for m in self._methods for r in pending[m]):
                by_kind.setdefault(type(r), []).append(r)
            for flat in by_kind.values():
                self._writer.log_step(step, flat, model=self.model_label or model_name)
            self.logged_steps.append(step)
            del self._pending[model_name]

    def end(self, status: Literal["FINISHED", "FAILED", "KILLED"]) -> None:
        if self.run_id is None:
            return
        try:
            if self._writer is not None:
                self._writer.flush()
        finally:
            if self.terminate:
                self.client.set_terminated(self.run_id, status)
