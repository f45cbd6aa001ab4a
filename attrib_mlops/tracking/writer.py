"""Write attribution steps to an MLflow run: artifacts, manifest, metrics, with a local spool.

:class:`AttributionWriter` talks to MLflow only through an ``MlflowClient`` and
an explicit ``run_id`` (never the global active run), so it can run next to
``transformers``' ``MLflowCallback`` owning the run, against a local SQLite
store or a remote ``mlflow server``.

One ``log_step`` call:

1. ``flush()``: commit whatever an earlier outage left in the spool, in step order;
2. compute the metrics from the float32 results, through the results' *kind*
   (:mod:`attrib_mlops.tracking.kinds`; the token matrix: per method the mean over
   samples of ``summarize()``, drift against the previous logged step and the first
   logged step of the same model/method (:mod:`.references`), agreement between
   methods when several are given);
3. stage the step into the spool directory
   ``<spool_dir>/<run_id>/<step:010d>/<nnn>-<model>/`` (:mod:`.spool`: the kind's
   files, ``summary.json`` and ``view.html`` under ``files/``, then ``entry.json``
   last; the entry directory appears by an atomic rename, so a crash never leaves a
   half-written entry that looks complete);
4. commit the entry: upload ``files/`` to ``attribution/steps/<step:010d>``,
   THEN rewrite ``attribution/manifest.json`` listing the step, THEN log the
   scalar metrics and the run tags with one ``log_batch``; then delete the entry.

Readers trust only steps listed in the manifest, and the manifest lists a step
only after all its files are uploaded, so a reader never sees a half-written
step. If MLflow cannot be reached (or fails) at any point of 4., the entry stays
in the spool, a warning says ``tracking server unreachable; step N kept in
<dir>, will retry`` and ``log_step`` returns (``strict=True`` raises
:class:`TrackingUnavailableError` instead, still keeping the entry). The next
``log_step`` or an explicit ``flush()`` (call it at the end of training)
retries every entry in order. A retry is idempotent: methods already listed in
the manifest for that (step, model) are not uploaded again, and metrics already
present at that step are not logged again, so nothing is lost and nothing is
duplicated. One writer per run (e.g. rank 0 only) is assumed.

Outages cost time: each failing request waits for MLflow's HTTP retries. Set
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` and ``MLFLOW_HTTP_REQUEST_TIMEOUT`` low
(e.g. 0 and 5) for training jobs that must not stall; after one failure a
``log_step`` call makes no further request.

``background=True`` (the training callbacks' default) moves step 4 and the rendering
of ``view.html`` off the caller: ``log_step`` computes the metrics, stages the step and
returns (``StepSummary.queued``); a :class:`~attrib_mlops.tracking.uploader.BackgroundUploader`
commits the spool in order. :meth:`close` waits at most ``flush_timeout_s`` seconds
(default 10); what is left stays in the spool and one warning line says how it will be
uploaded (the next writer on the run, or ``attrib-mlops sync``). Commits of one run's
spool are serialised by the lock file ``<spool_dir>/.<run_id>.lock``.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attrib_mlops._util import library_versions, now_iso
from attrib_mlops.errors import InputError
from attrib_mlops.samples import ProbeSet
from attrib_mlops.tracking import documents
from attrib_mlops.tracking import layout as L
from attrib_mlops.tracking import manifest as M
from attrib_mlops.tracking.commit import commit_pending
from attrib_mlops.tracking.errors import (
    TrackingError,
    TrackingUnavailableError,
    is_tracking_failure,
    is_unreachable,
)
from attrib_mlops.tracking.html import DEFAULT_MAX_SAMPLES
from attrib_mlops.tracking.kinds import StorageKind, kind_of
from attrib_mlops.tracking.logged_models import ModelIds
from attrib_mlops.tracking.references import References
from attrib_mlops.tracking.spool import Spool, default_spool_dir
from attrib_mlops.tracking.step_input import group_by_method, merge_ground_truth, probe_from_results
from attrib_mlops.tracking.uploader import BackgroundUploader, leftover_message, quiet

__all__ = ["AttributionWriter", "StepSummary", "default_spool_dir", "library_versions"]

logger = logging.getLogger(__name__)

@dataclass
class StepSummary:
    """What :meth:`AttributionWriter.log_step` computed and where it went.

    Attributes:
        step: global step.
        model: model name.
        metrics: ``{method: {metric: mean over samples}}`` (NaN when undefined).
        samples: ``{method: {sample_id: {metric: value}}}``.
        agreement: ``{"<m1>_vs_<m2>": mean Spearman, "mean": ...}`` when several methods were given.
        mlflow_metrics: ``{metric key: value}`` of the finite values sent to MLflow.
        logged: True when the step is committed to MLflow (artifacts, manifest, metrics).
        queued: True when the step is staged and handed to the background uploader (``background=True``).
        spool_path: the spool entry still holding the step when ``logged`` is False.
        skipped_methods: methods dropped because this (step, model, method) was already logged.
    """

    step: int
    model: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    samples: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)
    mlflow_metrics: dict[str, float] = field(default_factory=dict)
    logged: bool = False
    queued: bool = False
    spool_path: Path | None = None
    skipped_methods: list[str] = field(default_factory=list)


class AttributionWriter:
    """Log attribution steps of one MLflow run (see the module docstring for the protocol).

    Args:
        client: an ``MlflowClient``; built from ``tracking_uri`` when None.
        run_id: the run to write to (required; the run may be owned by someone else).
        tracking_uri: used only when ``client`` is None.
        artifact_root: artifact directory of the attribution layout (default ``attribution``).
        spool_dir: spool root (default :func:`default_spool_dir`); entries go to ``<spool_dir>/<run_id>/``.
        strict: raise :class:`TrackingUnavailableError` when MLflow fails instead of warning.
        model_id: MLflow LoggedModel id attached to the metrics (per-step override in :meth:`log_step`).
        k: top-k size of the concentration and drift metrics.
        keep_float32: also store float32 matrices in the Parquet files (``matrix_f32``).
        max_html_samples: samples included in ``view.html``.
        row_group_size: Parquet row group size (rows).
        background: upload in the background; ``log_step`` only stages (see the module docstring).
            ``True`` or ``"process"``: in a child process (no GIL shared with training); ``"thread"``.
        flush_timeout_s: how long :meth:`close` waits for pending uploads before leaving them in the spool.

    Example:
        >>> w = AttributionWriter(client, run_id=run.info.run_id, spool_dir=tmp)  # doctest: +SKIP
        >>> w.log_probe_set([{"id": "s0", "prompt": "a b", "target": " c"}])     # doctest: +SKIP
        >>> w.log_step(100, results)                                              # doctest: +SKIP
    """

    def __init__(
        self,
        client: Any = None,
        run_id: str | None = None,
        tracking_uri: str | None = None,
        artifact_root: str = L.DEFAULT_ROOT,
        *,
        spool_dir: str | os.PathLike | None = None,
        strict: bool = False,
        model_id: str | None = None,
        k: int = 3,
        keep_float32: bool = False,
        max_html_samples: int = DEFAULT_MAX_SAMPLES,
        row_group_size: int = 32,
        background: bool | str = False,
        flush_timeout_s: float = 10.0,
    ) -> None:
        if not run_id or not isinstance(run_id, str):
            raise InputError("AttributionWriter needs the run_id of the MLflow run to write to")
        if client is None:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=tracking_uri)
        root = str(artifact_root).strip("/")
        if not root or ".." in root.split("/"):
            raise InputError(f"artifact_root must be a relative artifact path, got {artifact_root!r}")
        if not isinstance(flush_timeout_s, (int, float)) or not flush_timeout_s >= 0:
            raise InputError(f"flush_timeout_s must be a number of seconds >= 0, got {flush_timeout_s!r}")
        self.client = client
        self.run_id = run_id
        self.artifact_root = root
        self.spool = Spool(spool_dir if spool_dir is not None else default_spool_dir(), run_id)
        self.spool_root = self.spool.root
        self.spool_dir = self.spool.dir
        self.strict = strict
        self.model_id = model_id
        self.k = k
        self.keep_float32 = keep_float32
        self.max_html_samples = max_html_samples
        self.row_group_size = row_group_size
        self._manifest: dict[str, Any] | None = None  # last known server copy (None = fetch before use)
        self._probe: dict[str, Any] | None = None
        self._refs = References(client, run_id, root, self.spool)
        self._model_ids = ModelIds(client)
        self.flush_timeout_s = float(flush_timeout_s)
        self._lock = threading.RLock()  # one commit pass at a time in this process (worker or caller)
        self._view_inputs: dict[str, dict] = {}  # deferred views: spool entry -> {(model, method): results}
        if background not in (False, True, "thread", "process"):
            raise InputError(f"background must be False, True, 'thread' or 'process', got {background!r}")
        self._uploader = BackgroundUploader(self, process=background != "thread") if background else None
        self._refresh_each_pass = background is not False  # set by the upload worker too

    # ================================================================= public API
    def log_probe_set(self, probe: ProbeSet | Sequence[Mapping[str, Any]] | Any) -> None:
        """Record the probe set: manifest ``probe`` section, run tags, and an MLflow dataset input.

        Args:
            probe: a :class:`~attrib_mlops.samples.ProbeSet`, sample dicts with ``id``,
                ``prompt``, ``target`` and optional ``ground_truth`` (source positions
                holding the answer), or a ``datasets.Dataset`` with those columns.

        Raises:
            TrackingError: the run already lists steps computed on a different probe set.
        """
        ps = probe if isinstance(probe, ProbeSet) else ProbeSet.from_stored(probe)
        section = ps.storage_section()
        if self._manifest is None:
            try:
                self._server_manifest()
            except Exception as e:  # noqa: BLE001 - offline: the conflict check happens at commit
                if not is_tracking_failure(e):
                    raise
        known = (self._manifest or {}).get("probe")
        if known and known.get("fingerprint") != section["fingerprint"] and (self._manifest or {}).get("steps"):
            raise TrackingError(
                f"run {self.run_id} already has attribution steps on a different probe set "
                f"({known.get('n')} samples, fingerprint {known.get('fingerprint', '')[:12]}); start a new run"
            )
        self._probe = section
        self.spool.save_probe(section)
        if self._uploader is not None:
            self._uploader.kick()
        else:
            self.flush()

    def log_step(
        self,
        step: int,
        results: Sequence[Any],
        model: str = L.DEFAULT_MODEL,
        ground_truth: Mapping[str, Sequence[int]] | None = None,
        *,
        model_id: str | None = None,
        offline: bool = False,
        extra_metrics: Mapping[str, float] | None = None,
    ) -> StepSummary:
        """Compute metrics, stage and upload one step of one model (all its methods).

        Args:
            step: global step (MLflow metric step), ``0 <= step < 1e10``.
            results: results of every probe sample, one or several methods, all of one
                kind (:class:`~attrib_mlops.result.AttributionResult` for token matrices).
                Results without ``sample_id`` take the probe id at their position
                within their method (or the position itself).
            model: model name (becomes a path component, see :mod:`layout`).
            ground_truth: ``{sample_id: source positions}``; defaults to the probe's ``ground_truth``.
            model_id: MLflow LoggedModel id for the metrics (default: the writer's).
            offline: the caller knows the server is unreachable (e.g. a failed health
                check): stage the step in the spool without any network request.
            extra_metrics: ``{MLflow metric key: value}`` logged at ``step`` with the step's own
                metrics (e.g. ``attrib/cost_seconds``): spooled with it, committed exactly once.

        Returns:
            :class:`StepSummary`; ``logged`` is False when the step stayed in the spool.

        Raises:
            InputError: bad step, empty results, results of no or several kinds, or duplicated sample ids.
            TrackingUnavailableError: only with ``strict=True``, when MLflow fails.
        """
        L.step_dirname(step)
        step = int(step)
        L.safe_name(model)
        results = list(results)
        if not results:
            raise InputError("log_step needs at least one AttributionResult")
        kind = kind_of(results)

        background = self._uploader is not None
        if offline:
            failure: BaseException | None = TrackingUnavailableError("tracking server unreachable (health check)")
        else:  # background: no request on the caller's thread; the manifest is the worker's last copy
            failure = None if background else self._try_flush()
        online = failure is None
        if online and not background:
            try:
                self._server_manifest()
            except Exception as e:  # noqa: BLE001 - classified below
                if not is_tracking_failure(e):
                    raise
                failure, online = e, False

        probe, derived = self._probe, False
        if probe is None:
            probe = self.spool.load_probe() or copy.deepcopy((self._manifest or {}).get("probe")) or None
            if probe is None:
                probe, derived = probe_from_results(results, ground_truth), True
        groups = group_by_method(results, probe)  # validate before anything is written
        gt = merge_ground_truth(ground_truth, probe)
        self._probe = probe
        if derived and not (self._manifest or {}).get("probe"):
            self.spool.save_probe(probe)
        summary = StepSummary(step=step, model=model)
        already = M.listed_methods(self._manifest or {}, step, model, kind)
        for method in list(groups):
            if method in already:
                summary.skipped_methods.append(method)
                del groups[method]
        if summary.skipped_methods:
            logger.warning("step %d of model %r already has %s logged; not logging them again",
                           step, model, ", ".join(summary.skipped_methods))
        if not groups:
            summary.logged = True
            return summary

        refs = self._refs.for_step(kind, self._manifest, step, model, list(groups), fetch=online and not background)
        section = kind.compute(groups, gt, refs, self.k)
        for method, rs in groups.items():
            summary.metrics[method] = section["methods"][method]["metrics"]
            summary.samples[method] = section["methods"][method]["samples"]
            self._refs.remember(kind, step, model, method, {str(r.sample_id): r for r in rs})
        if section.get("agreement"):
            summary.agreement = section["agreement"]
        metrics = self._metric_records(kind, step, model, section, model_id or self.model_id)
        metrics += [{"key": str(k), "value": float(v), "timestamp": int(time.time() * 1000), "step": step,
                     "model_id": model_id or self.model_id, "method": None}
                    for k, v in (extra_metrics or {}).items() if v is not None and math.isfinite(v)]
        summary.mlflow_metrics = {m["key"]: m["value"] for m in metrics}
        entry = self._stage(kind, step, model, groups, section, metrics, defer_view=background)
        summary.spool_path = entry
        if background:
            self._uploader.kick()
            summary.queued = True
            return summary

        if online:
            failure = self._try_flush()
        if failure is None and not entry.exists():
            summary.logged = True
            summary.spool_path = None
        else:
            self._report(failure, f"step {step} kept in {entry}", fail_strict=True)
        return summary

    def flush(self, timeout: float | None = None) -> bool:
        """Commit every spooled entry of this run, in step order.

        Args:
            timeout: with a background uploader, wait at most this many seconds (None: until done).

        Returns:
            True when the spool of this run is empty afterwards.

        Raises:
            TrackingUnavailableError: only with ``strict=True``.
        """
        if self._uploader is not None:
            done = self._uploader.wait(timeout)
            failure = self._uploader.last_failure if done or not self._uploader.busy else None
            if done or failure is None:
                return done and not self.pending()
        else:
            failure = self._try_flush()
        if failure is not None:
            n = len(self.pending())
            self._report(failure, f"{n} pending entr{'y' if n == 1 else 'ies'} (probe set / steps) kept in "
                         f"{self.spool_dir}", fail_strict=True)
            return False
        return True

    def pending(self) -> list[Path]:
        """Spool entries (and a pending probe set) not yet committed, in commit order."""
        return self.spool.pending()

    def close(self, timeout: float | None = None, hint: str | None = None) -> bool:
        """End of training: upload what is pending, giving up after ``timeout`` s (default ``flush_timeout_s``)
        without progress (an unreachable server costs at most that; a working upload is not cut off).

        A background worker (low CPU priority) busy without progress for ``timeout`` s, e.g. starved on
        a loaded machine, is ended: this process commits the rest within one more such window.

        What is not uploaded stays in the spool, and ONE warning line says how it will be
        uploaded (by the next writer on this run, or ``attrib-mlops sync``); ``strict=True``
        raises :class:`TrackingUnavailableError` with that line instead.

        Args:
            timeout: seconds to wait without progress.
            hint: the ``--tracking-uri`` the sync command line should name (default: the client's).

        Returns:
            True when nothing is left in the spool of this run.
        """
        timeout = self.flush_timeout_s if timeout is None else float(timeout)
        t0 = time.monotonic()
        if not self.pending():
            return True
        uploader = self._uploader or BackgroundUploader(self, process=False)  # bounded: commit off this thread
        with quiet(logger):  # the one line below replaces the per-failure warnings
            done = uploader.drain(timeout, lambda: len(self.pending())) and not self.pending()
            if not done and uploader.process and uploader.busy and not uploader.failing:  # a starved worker
                uploader.take_over()
                self._uploader = BackgroundUploader(self)  # a later step starts a new worker
                uploader = BackgroundUploader(self, process=False)
                done = uploader.drain(timeout, lambda: len(self.pending())) and not self.pending()
        uploader.stop()
        if done:
            return True
        msg = leftover_message(self, time.monotonic() - t0, uploader.busy, hint)
        if self.strict:
            raise TrackingUnavailableError(msg)
        logger.warning(msg)
        return False

    def __enter__(self) -> AttributionWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ============================================================ per-step metrics
    def _metric_records(self, kind: StorageKind, step: int, model: str, section: dict[str, Any],
                        model_id: str | None) -> list[dict]:
        ts = int(time.time() * 1000)
        recs = []
        for method, sec in section["methods"].items():
            for name, v in sec["metrics"].items():
                if v is not None and math.isfinite(v) and kind.logged(name):  # e.g. kendall: summary only
                    recs.append({"key": kind.metric_key(method, name, model), "value": float(v), "timestamp": ts,
                                 "step": step, "model_id": model_id, "method": method})
        for name, v in section.get("agreement", {}).items():
            if v is not None and math.isfinite(v):
                recs.append({"key": kind.metric_key("agreement", name, model), "value": float(v), "timestamp": ts,
                             "step": step, "model_id": model_id, "method": None})
        return recs

    # ================================================================= spool
    def _view_meta(self, step: int) -> dict[str, Any]:
        probe = self._probe or self.spool.load_probe() or (self._manifest or {}).get("probe") or {}
        return {"step": step, "run_id": self.run_id, "samples": probe.get("samples", []),
                "max_samples": self.max_html_samples}

    def _stage(self, kind: StorageKind, step: int, model: str, groups: dict[str, list[Any]],
               section: dict[str, Any], metrics: list[dict], defer_view: bool = False) -> Path:
        def build(files: Path) -> dict[str, Any]:
            rel_files = {}
            for method, rs in groups.items():
                rel = kind.file_relpath(model, method)
                kind.write(rs, files / rel, metadata={"step": step, "model": model, "method": method},
                           row_group_size=self.row_group_size, keep_float32=self.keep_float32)
                rel_files[method] = rel
            documents.write_documents(kind, files, step, self.k, model, section, panels, self._view_meta(step),
                                      view=not defer_view)
            return {"step": step, "model": model, "kind": kind.name, "methods": list(groups), "files": rel_files,
                    "n_samples": {m: len(rs) for m, rs in groups.items()}, "metrics": metrics,
                    "created": now_iso(), **({"view_pending": True} if defer_view else {})}

        panels = {(model, m): rs for m, rs in groups.items()}
        entry = self.spool.stage(step, model, build)
        if defer_view and not (self._uploader and self._uploader.process):  # a thread can use them
            self._view_inputs[str(entry)] = panels
        return entry

    def _report(self, failure: BaseException | None, what: str, fail_strict: bool) -> None:
        if failure is None:
            return
        if is_unreachable(failure):
            msg = f"tracking server unreachable; {what}, will retry"
        else:
            msg = f"tracking failed ({type(failure).__name__}: {str(failure)[:300]}); {what}, will retry"
        if self.strict and fail_strict:
            raise TrackingUnavailableError(msg) from failure
        logger.warning(msg)

    # ================================================================= commit
    def _flush_pass(self) -> BaseException | None:
        """One pass over the spool (see :func:`~attrib_mlops.tracking.commit.commit_pending`); the first
        tracking failure is returned, not raised. Serialised in this process and, through a lock file,
        with other processes (``attrib-mlops sync``)."""
        from filelock import FileLock, Timeout

        with self._lock:
            if not self.spool.pending():
                return None
            try:
                with FileLock(str(self.spool_root / f".{self.run_id}.lock"), timeout=30):
                    if self._refresh_each_pass:  # another process may have committed since: read it again
                        self._manifest = None
                    commit_pending(self)
            except Timeout:
                return TrackingUnavailableError(f"the spool of run {self.run_id} is being uploaded by another "
                                                "writer; retrying later")
            except Exception as e:  # noqa: BLE001 - classified
                self._manifest = None  # unknown server state: fetch again next time
                if is_tracking_failure(e):
                    return e
                raise
        return None

    _try_flush = _flush_pass

    def _server_manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            self._manifest = M.download(self.client, self.run_id, self.artifact_root)
        return self._manifest

    def _upload_manifest(self, man: dict[str, Any]) -> None:
        M.upload(self.client, self.run_id, self.artifact_root, man)
        self._manifest = man
