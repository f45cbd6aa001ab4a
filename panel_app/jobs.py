"""Background attribution jobs queued from the dashboard's New job form.

A :class:`JobRunner` belongs to one app instance (one browser session) and owns a
small thread pool; each job runs in a worker process (``python -m panel_app.jobs``)
watched by one of its threads, so a running job never blocks the page. Each job:

1. creates an MLflow run (experiment chosen in the form, tag ``attrib_mlops.job=dashboard``);
2. loads each model once, from a local folder or from the tracking store
   (``runs:/<run_id>/<path>``, ``models:/<name or id>...``) - never from the hub, and
   always with ``trust_remote_code`` off;
3. runs through the job runner (:func:`attrib_mlops.jobs.run_job`: cached results, progress
   = samples done / samples in total) and logs the results as step 0 of the run
   (:class:`~attrib_mlops.jobs.StepSink`; one model = one ``model`` of the step);
4. ends the run ``FINISHED`` (or ``FAILED`` with the error in the tag ``attrib_mlops.error``),
   so it shows up in the overview.

Example:
    >>> runner = JobRunner("sqlite:///mlflow.db")                                         # doctest: +SKIP
    >>> req = JobRequest.from_form(name="j", experiment="jobs", models="tiny=./tiny", methods=["saliency"],
    ...                            text="w1 w2 ||| w3")                                   # doctest: +SKIP
    >>> handle = runner.submit(req); handle.wait(60); handle.snapshot()["status"]          # doctest: +SKIP
    'finished'
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attrib_mlops.engines.registry import method_names
from attrib_mlops.errors import InputError
from attrib_mlops.model_refs import check_model_ref

__all__ = ["NATIVE_METHODS", "JobRequest", "JobHandle", "JobRunner", "parse_models", "parse_samples", "run_request",
           "main"]

logger = logging.getLogger(__name__)

#: Methods offered by the form: the native engine's, from the method registry (listing them imports no
#: torch). The job validates the choice when it runs.
NATIVE_METHODS = tuple(method_names("native"))
_MLFLOW_REFS = ("runs:/", "models:/")
_NAME_OK = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_name(text: str, default: str) -> str:
    """``text`` as a name of letters, digits and ``._-`` (what job and model names may hold)."""
    return (_NAME_OK.sub("_", text).strip("._-") or default)[:60]


def _model_name(ref: str) -> str:
    return _safe_name(ref.rstrip("/").split("/")[-1], "model")


def parse_models(text: str) -> list[tuple[str, str]]:
    """``[(name, ref)]`` from one model per line: ``[name=]<local folder | runs:/... | models:/...>``.

    Raises:
        InputError: no model, a duplicated name, or a reference that is neither an
            existing local folder nor an MLflow URI (hub ids are refused: nothing is downloaded).
    """
    out: list[tuple[str, str]] = []
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, ref = (line.split("=", 1) if "=" in line and not line.startswith(_MLFLOW_REFS) else ("", line))
        name, ref = name.strip(), ref.strip()
        if ref.startswith(_MLFLOW_REFS):
            check_model_ref(ref)  # no '..', absolute or encoded path that would leave the run
        else:
            p = Path(ref).expanduser()
            if not p.is_dir():
                raise InputError(f"model {ref!r} is not a local folder; give a folder with config.json, or a "
                                 "runs:/<run_id>/<path> or models:/... URI of the tracking store (nothing is "
                                 "downloaded from the hub)")
            if not (p / "config.json").is_file():
                raise InputError(f"model folder {ref!r} has no config.json; expected a saved transformers model")
            ref = str(p.resolve())
        out.append((_safe_name(name, 'model') if name else _model_name(ref), ref))  # names name folders
    if not out:
        raise InputError("no model given; enter one model per line (a local folder or a runs:/ / models:/ URI)")
    names = [n for n, _ in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"model names must be unique, {dup} appear twice; write name=path to name them")
    return out


def parse_samples(text: str) -> tuple[list[str], list[str] | None, list[str]]:
    """``(prompts, targets or None, ids)`` from one sample per line: ``prompt ||| target``.

    Without ``|||`` on every line the continuations are generated (greedy, ``max_new_tokens``).

    Raises:
        InputError: no sample, an empty prompt, or a mix of lines with and without a target.
    """
    prompts, targets = [], []
    for raw in (text or "").splitlines():
        if not raw.strip():
            continue
        if "|||" in raw:
            p, t = raw.split("|||", 1)
            t = t.rstrip()
            if t and not t.startswith(" "):
                t = " " + t  # the continuation follows the prompt after a space
            prompts.append(p.strip())
            targets.append(t)
        else:
            prompts.append(raw.strip())
            targets.append(None)
    if not prompts:
        raise InputError("no input text; enter one sample per line: prompt ||| target (target optional)")
    if any(not p for p in prompts):
        raise InputError("a line has an empty prompt; every sample needs a prompt before '|||'")
    given = [t is not None and t.strip() != "" for t in targets]
    if any(given) and not all(given):
        raise InputError("give a target (prompt ||| target) on every line, or on none to generate them")
    return prompts, (targets if all(given) else None), [f"t{i}" for i in range(len(prompts))]


@dataclass
class JobRequest:
    """A validated job: models x methods over samples, logged as step 0 of a new MLflow run."""

    name: str
    experiment: str
    models: list[tuple[str, str]]
    methods: list[str]
    prompts: list[str]
    targets: list[str] | None
    sample_ids: list[str]
    batch_size: int = 8
    max_new_tokens: int = 8
    engine: str = "auto"
    #: training-data queries (the job spec's ``training_data`` section: index, methods, top_k, ...)
    training_data: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.strip():
            raise InputError("the job needs a name (it becomes the MLflow run name)")
        if not self.experiment or not self.experiment.strip():
            raise InputError("the job needs an experiment name")
        if not self.methods and not self.training_data:
            raise InputError("pick at least one attribution method")
        if not self.prompts:
            raise InputError("the job has no samples")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise InputError("batch size and max new tokens must be >= 1")
        for _name, ref in self.models:  # also for a request file the form did not write
            check_model_ref(ref)

    @classmethod
    def from_form(cls, *, name: str, experiment: str, models: str, methods: Sequence[str], text: str = "",
                  probe: Sequence[dict[str, Any]] | None = None, batch_size: int = 8,
                  max_new_tokens: int = 8) -> JobRequest:
        """Build from the form fields; ``probe`` (samples of a run) replaces ``text`` when given."""
        if probe:
            prompts = [str(s.get("prompt", "")) for s in probe]
            targets = [str(s.get("target", "")) for s in probe]
            ids = [str(s["id"]) for s in probe]
            tg: list[str] | None = targets if all(t.strip() for t in targets) else None
        else:
            prompts, tg, ids = parse_samples(text)
        return cls(name=name.strip(), experiment=experiment.strip(), models=parse_models(models),
                   methods=list(methods), prompts=prompts, targets=tg, sample_ids=ids,
                   batch_size=int(batch_size), max_new_tokens=int(max_new_tokens))


@dataclass
class JobHandle:
    """Status of one queued job; updated by the worker thread, read by the page (thread safe)."""

    id: int
    request: JobRequest
    status: str = "queued"  # queued, running, finished, failed
    progress: float = 0.0
    message: str = "waiting for a worker"
    run_id: str | None = None
    error: str | None = None
    submitted: float = field(default_factory=time.time)
    ended: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    future: Future | None = field(default=None, repr=False)

    def update(self, **kw: Any) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, k, v)
            if self.status in ("finished", "failed"):
                self.ended = self.ended or time.time()
                self._done.set()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"id": self.id, "name": self.request.name, "status": self.status, "progress": self.progress,
                    "message": self.message, "run_id": self.run_id, "error": self.error}

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


class JobRunner:
    """Runs :class:`JobRequest`\\ s against one tracking store (one runner per app instance).

    Each job runs in its own worker process (``python -m panel_app.jobs``), watched by a thread of
    this runner's pool: the page stays responsive while torch computes, a crashing job cannot take
    the dashboard down, and the worker does not import Panel (Bokeh collects the JavaScript of every
    imported model class when it renders the step's ``view.html``). The worker reports progress as
    JSON lines on its stdout.

    Args:
        tracking_uri: where the job runs are logged.
        max_workers: jobs running at once (default 1: attribution is CPU bound).
        spool_dir: the writers' spool and the workers' logs (default: a temporary folder).
    """

    def __init__(self, tracking_uri: str | None, max_workers: int = 1, spool_dir: str | os.PathLike | None = None):
        self.tracking_uri = tracking_uri
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="attrib-dashboard-job")
        self._own_spool = spool_dir is None
        self._spool_dir = Path(spool_dir) if spool_dir else None
        self._jobs: list[JobHandle] = []
        self._procs: dict[int, subprocess.Popen] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def spool_dir(self) -> Path:
        """Requests, worker logs and the writers' spool (a temporary folder made on the first job)."""
        with self._lock:
            if self._spool_dir is None:
                self._spool_dir = Path(tempfile.mkdtemp(prefix="attrib-dashboard-jobs-"))
            return self._spool_dir

    def submit(self, request: JobRequest) -> JobHandle:
        handle = JobHandle(id=next(self._ids), request=request)
        with self._lock:
            self._jobs.append(handle)
        handle.future = self._pool.submit(self._watch, handle)
        return handle

    def jobs(self) -> list[JobHandle]:
        with self._lock:
            return list(self._jobs)

    @property
    def active(self) -> bool:
        return any(not j.done for j in self.jobs())

    def shutdown(self, wait: bool = False) -> None:
        """Stop accepting jobs; queued ones are cancelled, running workers finish (``wait`` waits for them).

        The temporary folder is removed once no job runs any more (a running job keeps its spool and log).
        """
        self._pool.shutdown(wait=wait, cancel_futures=True)
        if self._own_spool and self._spool_dir is not None and not self.active:
            shutil.rmtree(self._spool_dir, ignore_errors=True)

    def _watch(self, handle: JobHandle) -> None:
        """Start the worker process of one job and follow its progress lines until it exits."""
        folder = self.spool_dir / f"job-{handle.id}"
        folder.mkdir(parents=True, exist_ok=True)
        req_path = folder / "request.json"
        req_path.write_text(json.dumps(dataclasses.asdict(handle.request)), encoding="utf-8")
        log_path = folder / "worker.log"
        cmd = [sys.executable, "-m", "panel_app.jobs", "--request", str(req_path), "--spool-dir", str(folder),
               "--cache-dir", str(self.spool_dir / "cache")]
        if self.tracking_uri:
            cmd += ["--tracking-uri", self.tracking_uri]
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
        handle.update(status="running", message="starting a worker process")
        try:
            with open(log_path, "w", encoding="utf-8") as log:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
                with self._lock:
                    self._procs[handle.id] = proc
                assert proc.stdout is not None
                for line in proc.stdout:
                    if line.startswith(_MARK):
                        try:
                            event = json.loads(line[len(_MARK):])
                        except json.JSONDecodeError:
                            continue
                        handle.update(**{k: v for k, v in event.items() if k in _EVENT_KEYS})
                code = proc.wait()
        except OSError as e:
            handle.update(status="failed", error=f"could not start the job worker: {e}",
                          message=f"failed: could not start the job worker: {e}")
            return
        finally:
            with self._lock:
                self._procs.pop(handle.id, None)
        if not handle.done:
            tail = " ".join(log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:])
            msg = f"the job worker exited with code {code} without a result ({tail[-400:] or 'no output'})"
            handle.update(status="failed", error=msg, message=f"failed: {msg}")


_MARK = "@@attrib-mlops-job@@ "
_EVENT_KEYS = frozenset({"status", "progress", "message", "run_id", "error"})


def run_request(req: JobRequest, tracking_uri: str | None, spool_dir: str | os.PathLike,
                report: Callable[..., None], cache_dir: str | os.PathLike | None = None) -> str:
    """Do one job in this process (what the worker runs); ``report(**fields)`` gets progress. Returns the run id.

    The job runs through the job runner (:func:`attrib_mlops.jobs.run_job`) with a
    :class:`~attrib_mlops.jobs.JobSpec` built from the request: results are cached in
    ``cache_dir`` (default ``<spool_dir>/cache``) and every model is logged as step 0 of one
    new MLflow run (:class:`~attrib_mlops.jobs.StepSink`).
    """
    from attrib_mlops.jobs import JobSpec, LocalExecutor, ResultCache, StepSink, run_job
    from attrib_mlops.samples import ProbeSet

    report(status="running", message="starting", progress=0.0)
    probe = ProbeSet.from_stored([{"id": i, "prompt": p, "target": (req.targets[k] if req.targets else "")}
                                  for k, (i, p) in enumerate(zip(req.sample_ids, req.prompts))], source="dashboard")
    cache = Path(cache_dir) if cache_dir is not None else Path(spool_dir) / "cache"
    spec = JobSpec(
        name=_safe_name(req.name, "job"), models=[{"name": n, "ref": r} for n, r in req.models], methods=req.methods,
        engine=req.engine, samples={"source": "dashboard"}, targets="given" if req.targets else "generate",
        options={"batch_size": req.batch_size, "max_new_tokens": req.max_new_tokens, "trust_remote_code": False},
        output_dir=str(spool_dir), cache_dir=str(cache), training_data=req.training_data,
    )
    sink = StepSink(tracking_uri=tracking_uri, experiment=req.experiment, run_name=req.name, spool_dir=spool_dir,
                    tags={"attrib_mlops.job": "dashboard", "mlflow.source.name": "attrib-mlops dashboard"},
                    params=_params(req), strict=True,
                    on_run=lambda run_id: report(run_id=run_id, message="run created"))

    def load(m: Any, opts: Any) -> tuple[Any, Any]:  # MLflow references are downloaded into the job's folder
        from attrib_mlops.model_refs import is_mlflow_ref, load_model

        report(message=f"downloading {m.ref} from the tracking store" if is_mlflow_ref(m.ref)
               else f"loading model {m.name}")
        model, tok, _ = load_model(m.ref, None, opts, tracking_uri=tracking_uri, dst_dir=spool_dir)
        return model, tok

    def on_event(e: Any) -> None:  # the status is reported below, once the run is ended
        report(progress=e.progress, message=e.message)

    try:
        run_job(spec, sinks=[sink], progress=False, probe=probe, on_event=on_event,
                executor=LocalExecutor(ResultCache(cache), loader=load))
    except BaseException as e:
        from panel_app.store import explain_error

        msg = explain_error(e, tracking_uri, f"running job {req.name!r}") if isinstance(e, Exception) else repr(e)
        if sink.run_id is not None:
            try:
                sink.client.set_tag(sink.run_id, "attrib_mlops.error", msg[:4000])
            except Exception:  # noqa: BLE001
                pass
        raise
    report(status="finished", progress=1.0, message=f"finished: run {sink.run_id}")
    return str(sink.run_id)


def _params(req: JobRequest) -> dict[str, str]:
    return {
        "models": ", ".join(f"{n}={r}" for n, r in req.models),
        "methods": ", ".join(req.methods),
        "n_samples": str(len(req.prompts)),
        "targets": "given" if req.targets else "generated",
        "batch_size": str(req.batch_size),
        "max_new_tokens": str(req.max_new_tokens),
        "engine": req.engine,
        **({"training_data": json.dumps(req.training_data, sort_keys=True)[:500]} if req.training_data else {}),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Worker entry point: ``python -m panel_app.jobs --request REQUEST.json [--tracking-uri URI] --spool-dir DIR
    [--cache-dir DIR]``."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m panel_app.jobs", description="Run one dashboard attribution job.")
    p.add_argument("--request", required=True)
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--spool-dir", required=True)
    p.add_argument("--cache-dir", default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    def report(**fields: Any) -> None:
        print(_MARK + json.dumps(fields), flush=True)

    try:
        raw = json.loads(Path(args.request).read_text(encoding="utf-8"))
        raw["models"] = [tuple(m) for m in raw["models"]]
        run_request(JobRequest(**raw), args.tracking_uri, args.spool_dir, report, cache_dir=args.cache_dir)
        return 0
    except Exception as e:  # noqa: BLE001 - reported to the page
        from panel_app.store import explain_error

        msg = explain_error(e, args.tracking_uri, "running the job")
        report(status="failed", error=msg, message=f"failed: {msg}")
        return 1


if __name__ == "__main__":  # the worker process of JobRunner
    sys.exit(main())
