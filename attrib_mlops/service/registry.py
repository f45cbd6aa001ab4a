"""The job service's jobs: one MLflow run each, run one after the other by the job runner.

The job record *is* the MLflow run, so a restarted service finds its jobs again:

* ``POST /api/jobs`` validates the spec (as ``attrib-mlops run`` does), loads the
  samples, and creates a run in the service's experiment with status ``SCHEDULED``
  (shown as ``QUEUED``), the tag ``attrib_mlops.kind=service-job``, params
  (``job.models``, ``job.methods``, ``option.*``...) and the artifact
  ``service/request.json`` (the spec and the probe set, so the job can be resumed);
* a worker thread runs queued jobs in order with :func:`~attrib_mlops.jobs.run_job`
  (the runner of ``attrib-mlops run`` and of the dashboard's New job), on the local
  or the Ray executor, with the service's content-keyed cache; results go to the run
  through a :class:`~attrib_mlops.jobs.StepSink` (every model at step 0, float32
  kept); status goes ``RUNNING`` then ``FINISHED`` / ``FAILED`` (error in the tag
  ``attrib_mlops.error``) / ``KILLED``; progress is the tag
  ``attrib_mlops.service.progress`` (written at most once a second) and an event to
  WebSocket watchers at every unit;
* cancelling a queued job kills it at once; a running job stops after the unit in
  flight and is marked ``KILLED``; everything computed stays in the cache;
* at start, runs still ``SCHEDULED`` or ``RUNNING`` (a service that was stopped or
  crashed) are queued again and resume from the cache. One service per experiment.

The spec's ``cache_dir`` and ``output_dir`` are the service's (clients cannot choose
where the service writes); ``trust_remote_code`` is refused unless the service
allows it.

Example:
    >>> reg = JobRegistry(tracking_uri="sqlite:///mlflow.db", workdir="svc")      # doctest: +SKIP
    >>> reg.start(); job_id = reg.submit({"name": "j", "models": [...], ...})      # doctest: +SKIP
    >>> reg.status(job_id)["status"]                                               # doctest: +SKIP
    'QUEUED'
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..errors import AttribError, InputError, SpecError
from .events import FINAL_STATUSES

logger = logging.getLogger(__name__)

__all__ = ["JobRegistry", "JobNotFound", "JobConflict", "SERVICE_KIND", "DEFAULT_EXPERIMENT"]

SERVICE_KIND = "service-job"
DEFAULT_EXPERIMENT = "attrib-mlops-service"
TAG_KIND = "attrib_mlops.kind"
TAG_PROGRESS = "attrib_mlops.service.progress"
TAG_ERROR = "attrib_mlops.error"
REQUEST_ARTIFACT = "service/request.json"
_STATUS = {"SCHEDULED": "QUEUED", "RUNNING": "RUNNING", "FINISHED": "FINISHED", "FAILED": "FAILED",
           "KILLED": "KILLED"}


class JobNotFound(AttribError):
    """No job of this service has that id (HTTP 404)."""


class JobConflict(AttribError):
    """The job is not in a state that allows the request (HTTP 409)."""


class _Cancelled(Exception):
    """Raised from the progress callback to stop a running job (cancel or service shutdown)."""


def _iso(ms: int | None) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds")


@dataclass
class _Live:
    """What the service knows about a job beyond its MLflow run (progress of a running job)."""

    status: str
    progress: float = 0.0
    message: str = ""
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    last_saved: float = 0.0


def _inputs_probe(inputs: Any) -> Any:
    """A probe set from inline ``inputs`` (prompts, or objects with id/prompt/target/ground_truth)."""
    from ..samples import ProbeSet

    if not isinstance(inputs, list) or not inputs:
        raise SpecError("invalid job spec: 'inputs' must be a non-empty list of prompts or of objects with "
                        "'prompt' (and optional 'id', 'target', 'ground_truth')")
    for i, x in enumerate(inputs):
        if isinstance(x, dict):
            extra = sorted(set(x) - {"id", "prompt", "target", "ground_truth"})
            if extra:
                raise SpecError(f"invalid job spec: unknown key 'inputs.{i}.{extra[0]}' (valid keys: id, prompt, "
                                "target, ground_truth)")
            if not isinstance(x.get("prompt"), str):
                raise SpecError(f"invalid job spec: 'inputs.{i}.prompt' must be a string")
        elif not isinstance(x, str):
            raise SpecError(f"invalid job spec: 'inputs.{i}' must be a prompt string or an object, got "
                            f"{type(x).__name__}")
    rows = [x if isinstance(x, dict) else {"prompt": x} for x in inputs]
    try:
        return ProbeSet.coerce(rows, source="inputs")
    except InputError as e:
        raise SpecError(f"invalid job spec: 'inputs': {e}") from None


class JobRegistry:
    """Jobs of one service: submit, status, list, results, cancel; a worker thread runs them.

    Args:
        tracking_uri: the MLflow store that holds the job records.
        workdir: the service's folder (result cache ``cache/``, writer spool ``spool/``).
        experiment: MLflow experiment of the service's jobs.
        executor: ``ExecutorChoice`` (default local).
        allow_remote_code: accept ``trust_remote_code: true`` in specs.
        publish: ``publish(job_id, event)`` for WebSocket watchers.
        progress_interval: seconds between progress tags written to MLflow.
    """

    def __init__(self, *, tracking_uri: str, workdir: str | Path, experiment: str = DEFAULT_EXPERIMENT,
                 executor: Any = None, allow_remote_code: bool = False,
                 publish: Callable[[str, dict[str, Any]], None] | None = None, progress_interval: float = 1.0):
        from mlflow.tracking import MlflowClient

        from ..jobs.executor_choice import ExecutorChoice
        from ..tracking.runs import get_or_create_experiment

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.experiment_id = get_or_create_experiment(self.client, experiment)
        self.choice = executor or ExecutorChoice()
        self.allow_remote_code = allow_remote_code
        self.publish = publish or (lambda job_id, event: None)
        self.progress_interval = progress_interval
        self._live: dict[str, _Live] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._executor_cm: Any = None
        self._executor: Any = None
        self._reader: Any = None

    # ================================================================ lifetime
    def start(self) -> list[str]:
        """Open the executor (Ray connects now), queue the jobs a previous service left, start the worker.

        Returns:
            Ids of the jobs queued again.
        """
        if self.choice.name == "ray" and self._executor is None:
            from ..jobs.cache import ResultCache
            from ..jobs.executor_choice import open_executor

            self._executor_cm = open_executor(self.choice, ResultCache(self.cache_dir))
            self._executor = self._executor_cm.__enter__()
        if self._thread is not None:
            return []
        resumed = []
        for status in ("RUNNING", "SCHEDULED"):  # interrupted first, then never started, each oldest first
            for run in self._search(f"attributes.status = '{status}'", order="ASC"):
                rid = run.info.run_id
                if status == "RUNNING":
                    self.client.update_run(rid, status="SCHEDULED")
                self._live[rid] = _Live("QUEUED", message="queued again after a service restart")
                self._queue.put(rid)
                resumed.append(rid)
        self._thread = threading.Thread(target=self._work, name="attrib-mlops-jobs", daemon=True)
        self._thread.start()
        if resumed:
            logger.info("resuming %d job(s) left by a previous service: %s", len(resumed), ", ".join(resumed))
        return resumed

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the unit in flight; a running job goes back to QUEUED (resumed at the next start)."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
        if self._executor_cm is not None:
            with contextlib.suppress(Exception):
                self._executor_cm.__exit__(None, None, None)
            self._executor_cm = self._executor = None

    @property
    def started(self) -> bool:
        """True once :meth:`start` ran."""
        return self._thread is not None

    @property
    def cache_dir(self) -> Path:
        return self.workdir / "cache"

    # ================================================================ requests
    def submit(self, body: Any) -> str:
        """Validate a job request, record it as a QUEUED MLflow run and queue it; returns the job id.

        Raises:
            SpecError: the request does not validate (the message names the key).
        """
        from ..jobs import parse_job
        from ..samples import ProbeSet

        if not isinstance(body, dict):
            raise SpecError(f"invalid job spec: expected a JSON object of keys (name, models, methods, samples, "
                            f"...), got {type(body).__name__}")
        body = dict(body)
        inputs = body.pop("inputs", None)
        probe = _inputs_probe(inputs) if inputs is not None else None
        if probe is not None:
            body.setdefault("samples", {"source": "inputs"})
        try:
            spec = parse_job(body, where="job spec")
        except SpecError as e:
            raise SpecError(str(e).replace("missing key 'samples'", "missing key 'samples' (or inline 'inputs')"))
        if not self.allow_remote_code:
            for i, m in enumerate(spec.models):
                if m.trust_remote_code:
                    raise SpecError(f"invalid job spec: 'models.{i}.trust_remote_code': this service does not run "
                                    "code shipped with models (start it with --allow-remote-code to permit it)")
            if spec.options.trust_remote_code:
                raise SpecError("invalid job spec: 'options.trust_remote_code': this service does not run code "
                                "shipped with models (start it with --allow-remote-code to permit it)")
        if probe is None:
            try:
                probe = ProbeSet.from_spec(spec.samples)
            except AttribError as e:
                raise SpecError(f"invalid job spec: 'samples': {e}") from None
        spec_d = spec.to_dict()
        spec_d.pop("output_dir", None)
        spec_d.pop("cache_dir", None)
        tags = {TAG_KIND: SERVICE_KIND, "mlflow.runName": spec.name}
        run = self.client.create_run(self.experiment_id, run_name=spec.name, tags=tags)
        rid = run.info.run_id
        try:
            self.client.update_run(rid, status="SCHEDULED")
            self.client.log_batch(rid, params=_params(spec, len(probe)))
            with tempfile.TemporaryDirectory() as tmp:
                p = Path(tmp) / Path(REQUEST_ARTIFACT).name
                p.write_text(json.dumps({"spec": spec_d, "probe": {"source": probe.source,
                                                                   "samples": probe.to_records()}},
                                        ensure_ascii=False, default=str), encoding="utf-8")
                self.client.log_artifact(rid, str(p), str(Path(REQUEST_ARTIFACT).parent))
        except Exception:
            with contextlib.suppress(Exception):
                self.client.set_terminated(rid, "FAILED")
            raise
        with self._lock:
            self._live[rid] = _Live("QUEUED", message="queued")
        self._queue.put(rid)
        self.publish(rid, self._event(rid))
        return rid

    def _run(self, job_id: str) -> Any:
        """The job's MLflow run, or :class:`JobNotFound`."""
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(job_id)
        except MlflowException:
            raise JobNotFound(f"no job with id {job_id!r}") from None
        if run.data.tags.get(TAG_KIND) != SERVICE_KIND or run.info.experiment_id != self.experiment_id:
            raise JobNotFound(f"no job with id {job_id!r}")
        return run

    def status(self, job_id: str) -> dict[str, Any]:
        """``{"id", "name", "status", "progress", "message", "error", "created_at", "completed_at"}``."""
        return self._doc(self._run(job_id))

    def _doc(self, run: Any) -> dict[str, Any]:
        rid = run.info.run_id
        status = _STATUS.get(run.info.status, run.info.status)
        saved: dict[str, Any] = {}
        with contextlib.suppress(ValueError, TypeError):
            saved = json.loads(run.data.tags.get(TAG_PROGRESS) or "{}")
        live = self._live.get(rid)
        doc = {"id": rid, "name": run.info.run_name, "status": status,
               "progress": float(saved.get("progress", 1.0 if status == "FINISHED" else 0.0)),
               "message": saved.get("message", ""), "error": run.data.tags.get(TAG_ERROR),
               "created_at": _iso(run.info.start_time), "completed_at": _iso(run.info.end_time)}
        if live is not None and status not in FINAL_STATUSES:  # fresher than the last progress tag
            doc.update(status=live.status, progress=live.progress, message=live.message)
        if status == "FINISHED":
            doc["progress"] = 1.0
        return doc

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` jobs of the service, newest first."""
        return [self._doc(r) for r in self._search(None, order="DESC", limit=limit)]

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job (see the module docstring); :class:`JobConflict` if it is over."""
        run = self._run(job_id)
        status = _STATUS.get(run.info.status, run.info.status)
        if status in FINAL_STATUSES:
            raise JobConflict(f"job {job_id} is already {status}")
        with self._lock:
            live = self._live.setdefault(job_id, _Live(status))
            live.cancel.set()
            running = live.status == "RUNNING"
        if not running:  # queued: never started, killed now (the worker skips it)
            self._finish(job_id, "KILLED", "cancelled before it started")
        return self.status(job_id)

    def results(self, job_id: str, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
        """The seed's result document of a FINISHED job (:mod:`attrib_mlops.service.results`), paged."""
        from .results import result_entry, results_document

        run = self._run(job_id)
        status = _STATUS.get(run.info.status, run.info.status)
        if status != "FINISHED":
            raise JobConflict(f"job {job_id} is {status}; results are served once it is FINISHED")
        request = self._request(job_id)
        spec, n = request["spec"], len(request["probe"]["samples"])
        pairs = [(m["name"], meth) for m in spec["models"] for meth in spec["methods"]]
        total = n * len(pairs)
        end = total if limit is None else min(total, offset + limit)
        entries: list[dict[str, Any]] = []
        for k, (model, method) in enumerate(pairs):
            lo, hi = k * n, (k + 1) * n
            if hi <= offset or lo >= end:
                continue
            for r in self._reader_for()(job_id, model, method)[max(0, offset - lo): end - lo]:
                entries.append(result_entry(model, r))
        return results_document(job_id=job_id, name=run.info.run_name, status=status,
                                created_at=_iso(run.info.start_time), completed_at=_iso(run.info.end_time),
                                options=spec.get("options", {}), entries=entries, total=total, offset=offset,
                                limit=limit)

    def _reader_for(self) -> Callable[[str, str, str], list[Any]]:
        from ..tracking import AttributionReader

        with self._lock:
            if self._reader is None:
                self._reader = AttributionReader(client=self.client, cache_dir=self.workdir / "reader-cache")
        reader, lock = self._reader, self._lock

        def load(job_id: str, model: str, method: str) -> list[Any]:
            with lock:
                return reader.load(job_id, 0, model, method)

        return load

    # ================================================================ worker
    def _search(self, where: str | None, order: str, limit: int | None = None) -> list[Any]:
        filt = f"tags.`{TAG_KIND}` = '{SERVICE_KIND}'" + (f" and {where}" if where else "")
        out, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string=filt, page_token=token,
                                           max_results=min(1000, limit or 1000),
                                           order_by=[f"attributes.start_time {order}"])
            out += list(page)
            token = getattr(page, "token", None)
            if not token or (limit and len(out) >= limit):
                return out[:limit] if limit else out

    def _request(self, job_id: str) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            local = self.client.download_artifacts(job_id, REQUEST_ARTIFACT, tmp)
            return json.loads(Path(local).read_text(encoding="utf-8"))

    def _event(self, job_id: str) -> dict[str, Any]:
        live = self._live.get(job_id)
        if live is None:
            return self.status(job_id)
        return {"id": job_id, "status": live.status, "progress": live.progress, "message": live.message,
                "error": live.error}

    def _save_progress(self, job_id: str, live: _Live, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - live.last_saved < self.progress_interval:
            return
        live.last_saved = now
        with contextlib.suppress(Exception):  # progress is best effort; status changes are not
            self.client.set_tag(job_id, TAG_PROGRESS, json.dumps({"progress": round(live.progress, 4),
                                                                  "message": live.message[:500]}))

    def _finish(self, job_id: str, status: str, message: str, error: str | None = None) -> None:
        with self._lock:
            live = self._live.setdefault(job_id, _Live(status))
            live.status, live.message, live.error = status, message, error
            if status == "FINISHED":
                live.progress = 1.0
        self._save_progress(job_id, live, force=True)
        if error:
            self.client.set_tag(job_id, TAG_ERROR, error[:5000])
        if status == "QUEUED":
            self.client.update_run(job_id, status="SCHEDULED")
        else:
            self.client.set_terminated(job_id, status)
        self.publish(job_id, self._event(job_id))
        if status in FINAL_STATUSES:
            with self._lock:
                self._live.pop(job_id, None)

    def _work(self) -> None:
        while not self._stopping.is_set():
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return
            live = self._live.get(job_id)
            if live is None or live.cancel.is_set():
                continue
            try:
                self._execute(job_id, live)
            except Exception:  # noqa: BLE001 - one job's failure never stops the worker
                logger.exception("job %s: unexpected failure", job_id)

    def _execute(self, job_id: str, live: _Live) -> None:
        from ..jobs import StepSink, parse_job, run_job
        from ..jobs.executor import LocalExecutor
        from ..jobs.cache import ResultCache
        from ..samples import ProbeSet

        try:
            request = self._request(job_id)
            spec = parse_job(dict(request["spec"], cache_dir=str(self.cache_dir),
                                  output_dir=str(self.workdir / "jobs" / job_id)), where="stored job spec")
            probe = ProbeSet.from_stored(request["probe"]["samples"], source=request["probe"]["source"])
        except Exception as e:  # noqa: BLE001 - a record this service cannot read fails alone
            self._finish(job_id, "FAILED", "cannot read the job record", f"{type(e).__name__}: {e}")
            return
        with self._lock:
            if live.cancel.is_set():  # cancelled while its record was read: already KILLED
                return
            live.status, live.message = "RUNNING", "started"
        self.client.update_run(job_id, status="RUNNING")
        self.publish(job_id, self._event(job_id))

        def on_event(ev: Any) -> None:
            if ev.status != "running":
                return
            with self._lock:
                live.progress, live.message = float(ev.progress), ev.message
            self.publish(job_id, self._event(job_id))
            self._save_progress(job_id, live)
            if live.cancel.is_set() or self._stopping.is_set():
                raise _Cancelled()

        executor = self._executor or LocalExecutor(ResultCache(self.cache_dir))
        sink = StepSink(tracking_uri=self.tracking_uri, run_id=job_id, terminate=False, keep_float32=True,
                        spool_dir=self.workdir / "spool")
        try:
            outcome = run_job(spec, sinks=[sink], progress=False, executor=executor, on_event=on_event, probe=probe)
        except _Cancelled:
            if live.cancel.is_set():
                self._finish(job_id, "KILLED", "cancelled; results computed so far are kept in the cache")
            else:
                self._finish(job_id, "QUEUED", "interrupted by a service stop; resumes at the next start")
        except Exception as e:  # noqa: BLE001 - recorded on the run
            msg = str(e) if isinstance(e, AttribError) else f"{type(e).__name__}: {e}"
            self._finish(job_id, "FAILED", "failed", msg)
        else:
            self._finish(job_id, "FINISHED", f"finished: {outcome.computed} computed, {outcome.cached} from the cache")


def _params(spec: Any, n_samples: int) -> list[Any]:
    from mlflow.entities import Param

    params = {"job.models": ",".join(m.name for m in spec.models), "job.methods": ",".join(spec.methods),
              "job.engine": spec.engine, "job.targets": str(spec.targets), "job.n_samples": str(n_samples),
              "job.model_refs": ",".join(m.ref for m in spec.models)}
    for key, value in spec.options.model_dump(mode="json", exclude_unset=True).items():
        if value is not None and not isinstance(value, (dict, list)):
            params[f"option.{key}"] = str(value)
    return [Param(k, v[:6000]) for k, v in params.items()]
