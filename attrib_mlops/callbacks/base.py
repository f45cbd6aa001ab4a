"""The framework-free core of the training hooks: :class:`AttributionMonitor`.

``AttributionMonitor(probe, ...).log(model, step)`` attributes the probe set on
the current model and logs the step to MLflow through
:class:`~attrib_mlops.tracking.AttributionWriter`. The HF ``Trainer`` callback
wraps it; users of a plain PyTorch loop call it directly.

What it guarantees:

* the model leaves exactly as it came (training mode, ``requires_grad``,
  gradients, RNG streams: see ``engines.prep.model_guard``), so training with
  the monitor produces the same losses as without;
* attribution failures are logged and skipped (``strict=True`` raises);
* logging does not hold training up: each step is staged in a local spool (the
  crash-safe copy) and a background thread uploads it (``background_upload``);
* tracking outages never stop training: spooled steps are uploaded when the
  server answers again; :meth:`close` waits at most ``flush_timeout_s`` for them
  and says in one line how the rest will be uploaded (``attrib-mlops sync``);
* a step already logged is not logged again (after a resume too, via
  :meth:`state_dict` / :meth:`load_state_dict`);
* the cost of each event is logged (``attrib/cost_seconds``) and reported.

Environment variables: ``MLFLOW_TRACKING_URI`` (where to log when no
``tracking_uri`` is given), ``MLFLOW_EXPERIMENT_NAME`` (experiment of a run the
monitor creates itself).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from ..options import AttributeOptions, parse_options
from .live_check import LiveCheckHook

logger = logging.getLogger("attrib_mlops.callbacks")

__all__ = ["AttributionMonitor", "normalize_probe"]


def normalize_probe(probe: Any):
    """A :class:`~attrib_mlops.samples.ProbeSet` from a Dataset, records, prompts or a ProbeSet.

    Same as :meth:`ProbeSet.coerce <attrib_mlops.samples.ProbeSet.coerce>` (kept for existing callers).
    """
    from ..samples import ProbeSet

    return ProbeSet.coerce(probe)


class AttributionMonitor:
    """Attribute a fixed probe set at chosen steps and log it to MLflow.

    Args:
        probe: the probe samples (``datasets.Dataset``, list of dicts with
            ``prompt``/``target``/``ground_truth``/``id``, list of prompts, or a
            ``ProbeSet``). Samples without a target get a greedy continuation
            generated at each step.
        tokenizer: the tokenizer (may also be passed to :meth:`log`).
        methods: attribution methods (see :func:`attrib_mlops.list_methods`).
        engine: ``auto`` / ``native`` / ``inseq``.
        options: :class:`~attrib_mlops.options.AttributeOptions` fields.
        run_id: MLflow run to log to; default: the active run (e.g. the one
            transformers' ``MLflowCallback`` opened), else a new run of our own.
        tracking_uri: MLflow tracking URI (default ``MLFLOW_TRACKING_URI`` or
            MLflow's default).
        experiment_name: experiment of a run we create.
        model_name: name under which results are stored (``model``).
        strict: raise on attribution or tracking failures instead of logging them.
        spool_dir: where steps wait while the tracking server is unreachable.
        baseline_run: live regression check (see :mod:`attrib_mlops.check`): a REF
            (``runs:/<run_id>``, ``runs:/<run_id>@<step>``, ``@latest`` or a results
            folder) to compare every logged step with. ``runs:/<run_id>`` without a
            step compares with the baseline's same step when it has it, else with its
            latest step. The verdict is logged as metric ``attrib/check/pass``
            (1.0 pass, 0.0 regression) at the step; :attr:`last_check` keeps the
            :class:`~attrib_mlops.check.CheckResult`.
        check_policy: :class:`~attrib_mlops.check.Policy`, dict or YAML path (default policy).
        stop_on_regression: ask training to stop when a check finds a regression
            (the HF callback sets ``control.should_training_stop``; a plain loop reads
            :attr:`regressed`). Off by default.
        sources: context sources at every event (``attrib/sources/...`` metrics; ablation ground
            truth, AT2 refits and scores, opt-in faithfulness): True, a splitter name or a dict of
            :class:`~attrib_mlops.callbacks.sources.SourceTracking` keys. Off by default.
        background_upload: upload steps in a background worker while training goes on
            (default: a child process, see :mod:`attrib_mlops.tracking.upload_worker`); False uploads
            inside :meth:`log`.
        flush_timeout_s: at :meth:`close`, wait at most this long for pending uploads; the
            rest stays in the spool (uploaded by the next writer on the run or ``attrib-mlops sync``).

    Example:
        >>> mon = AttributionMonitor(["a b c"], tok, methods=["saliency"])   # doctest: +SKIP
        >>> for step in range(1000):                                        # doctest: +SKIP
        ...     train_step(model)
        ...     if step % 100 == 0:
        ...         mon.log(model, step)
        >>> mon.close()                                                     # doctest: +SKIP
    """

    def __init__(
        self,
        probe: Any,
        tokenizer: Any = None,
        methods: Sequence[str] = ("saliency",),
        engine: str = "auto",
        options: AttributeOptions | dict | None = None,
        *,
        run_id: str | None = None,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        model_name: str = "model",
        strict: bool = False,
        spool_dir: str | os.PathLike | None = None,
        baseline_run: str | None = None,
        check_policy: Any = None,
        stop_on_regression: bool = False,
        sources: Any = None,
        background_upload: bool = True,
        flush_timeout_s: float = 10.0,
    ) -> None:
        from ..api import resolve_engine

        self.probe = normalize_probe(probe)
        self.tokenizer = tokenizer
        if isinstance(methods, str):
            methods = [methods]
        self.methods = list(methods)
        if not self.methods:
            raise InputError("give at least one attribution method")
        for m in self.methods:
            resolve_engine(m, engine)  # unknown method/engine -> clear error now, not mid-training
        self.engine = engine
        self.options = parse_options(options)
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.model_name = model_name
        self.strict = strict
        self.spool_dir = spool_dir
        if not isinstance(flush_timeout_s, (int, float)) or not flush_timeout_s >= 0:
            raise InputError(f"flush_timeout_s must be a number of seconds >= 0, got {flush_timeout_s!r}")
        self.background_upload = bool(background_upload)
        self.flush_timeout_s = float(flush_timeout_s)
        self.logged_steps: set[int] = set()
        self.costs: list[float] = []
        #: seconds spent on the caller's (training) thread, per event: ``{"step", "attribute_s", "setup_s",
        #: "log_s" (metrics, staging; setup included), "check_s", "sources_s", "total_s"}``
        self.timings: list[dict[str, float]] = []
        self.close_s = 0.0  # seconds :meth:`close` held the caller (end-of-training wait for uploads)
        self._setup_s = 0.0
        self.failures: list[tuple[int, str]] = []
        self._writer = None
        self._own_run = False
        self._client = None
        self._pending: list[tuple[int, list, float, str | None]] = []
        self.last_results: list | None = None
        self.health_timeout = 3.0
        self.baseline_run = baseline_run
        self.stop_on_regression = bool(stop_on_regression)
        self._live_check: LiveCheckHook | None = None
        if baseline_run is not None:  # a malformed REF or policy fails now, not mid-training
            self._live_check = LiveCheckHook(baseline_run, check_policy, tracking_uri=tracking_uri,
                                             methods=self.methods, stop_on_regression=stop_on_regression)
        self.checkpoint_models: dict[int, str | None] = {}
        self.sources = None  # context sources at each event (attrib_mlops.callbacks.sources)
        if sources is not None and sources is not False:
            from .sources import SourceHook

            self.sources = SourceHook(sources, self.probe)

    # ------------------------------------------------------------ live check
    @property
    def last_check(self) -> Any:
        """:class:`~attrib_mlops.check.CheckResult` of the last checked step (None without ``baseline_run``)."""
        return self._live_check.last_check if self._live_check is not None else None

    @property
    def regressed(self) -> bool:
        """True once a live check found a regression."""
        return self._live_check is not None and self._live_check.regressed

    def should_stop(self, step: int) -> bool:
        """True when ``stop_on_regression`` is on and the check of ``step`` found a regression."""
        return self._live_check is not None and self._live_check.should_stop(step)

    # ----------------------------------------------------------------- set-up
    def _setup(self) -> None:
        if self._writer is not None:
            return
        t0 = time.perf_counter()
        try:
            self._make_writer()
        finally:
            self._setup_s += time.perf_counter() - t0

    def _make_writer(self) -> None:
        from ..tracking import AttributionWriter
        from ..tracking.runs import get_or_create_run

        handle = get_or_create_run(tracking_uri=self.tracking_uri, run_id=self.run_id, use_active_run=True,
                                   experiment=self.experiment_name, run_name=f"attrib-{int(time.time())}")
        self._client, self.run_id, self._own_run = handle.client, handle.run_id, handle.created
        self._writer = AttributionWriter(
            self._client, run_id=self.run_id, spool_dir=self.spool_dir, strict=self.strict,
            background=self.background_upload, flush_timeout_s=self.flush_timeout_s,
        )
        self._writer.log_probe_set(self.probe)

    # ------------------------------------------------------------------- work
    def log(self, model: Any, step: int, tokenizer: Any = None, checkpoint: str | None = None) -> bool:
        """Attribute the probe set on ``model`` and log it as ``step``.

        Returns True if the step was attributed (logged now, or kept locally
        for a later upload when the tracking server is unreachable), False if
        it was skipped (already logged, or failed in non-strict mode).

        ``checkpoint`` (a saved checkpoint folder) links the step's metrics to
        an MLflow LoggedModel named ``checkpoint-<step>`` of the run.
        """
        step = int(step)
        if step in self.logged_steps:
            return False
        tok = tokenizer if tokenizer is not None else self.tokenizer
        if tok is None:
            raise InputError("AttributionMonitor needs the tokenizer: pass it to the constructor or to log()")
        t0 = time.perf_counter()
        try:
            from ..api import attribute

            results = attribute(
                model,
                tok,
                self.probe.prompts,
                self._targets(),
                methods=self.methods,
                engine=self.engine,
                sample_ids=self.probe.ids,
                options=self.options,
            )
            if self.sources is not None:
                self.sources.add_faithfulness(model, tok, results)
        except Exception as e:  # noqa: BLE001 - never crash the user's training
            return self._failed(step, e)
        cost = time.perf_counter() - t0
        self.last_results = results
        self.logged_steps.add(step)
        self._pending.append((step, results, cost, checkpoint))
        t1, self._setup_s = time.perf_counter(), 0.0
        try:
            self._drain()
        except Exception as e:  # noqa: BLE001
            if self.strict:
                raise
            logger.warning("attribution step %d computed but not logged yet (%s); it will be retried", step, e)
        logger.info(
            "attribution step %d: %d samples x %d methods in %.2fs (run %s)",
            step,
            len(self.probe),
            len(self.methods),
            cost,
            self.run_id,
        )
        t2 = time.perf_counter()
        if self._live_check is not None:
            self._live_check.check(step, results, self.probe, self._client, self.run_id, self.model_name,
                                   strict=self.strict, failures=self.failures)
        t3 = time.perf_counter()
        if self.sources is not None:
            self.sources.run(self, model, tok, step, checkpoint)
        t4 = time.perf_counter()
        self.timings.append({"step": step, "attribute_s": cost, "setup_s": self._setup_s, "log_s": t2 - t1,
                             "check_s": t3 - t2, "sources_s": t4 - t3, "total_s": t4 - t0})
        return True

    def _failed(self, step: int, e: BaseException) -> bool:
        if self.strict:
            raise e
        self.failures.append((step, f"{type(e).__name__}: {e}"))
        logger.exception("attribution at step %d failed and was skipped (strict=False): %s", step, e)
        return False

    def _reachable(self) -> bool:
        """Fast health check of an http(s) tracking server (MLflow's own retries can take minutes)."""
        uri = self.tracking_uri or (self._client.tracking_uri if self._client is not None else None)
        if uri is None:
            import mlflow

            uri = mlflow.get_tracking_uri()
        if not str(uri).startswith(("http://", "https://")):
            return True
        import urllib.request

        try:
            with urllib.request.urlopen(str(uri).rstrip("/") + "/health", timeout=self.health_timeout) as r:
                return r.status == 200
        except OSError:
            return False

    def _drain(self) -> None:
        """Log every computed step not logged yet, oldest first."""
        online = self._reachable()
        if self._writer is None:
            if not online:
                logger.warning(
                    "tracking server unreachable; %d attribution step(s) kept in memory until it answers",
                    len(self._pending),
                )
                return
            self._setup()
        while self._pending:
            step, results, cost, checkpoint = self._pending[0]
            model_id = None
            if online and checkpoint:
                from ..tracking.logged_models import create_checkpoint_model

                model_id = create_checkpoint_model(self._client, self.run_id, step, checkpoint)
                self.checkpoint_models[step] = model_id
            # the cost travels with the step (spooled with it in an outage), so it is logged exactly once
            summary = self._writer.log_step(
                step, results, model=self.model_name, offline=not online, model_id=model_id,
                extra_metrics={"attrib/cost_seconds": cost},
            )
            self._pending.pop(0)
            self.costs.append(cost)
            if not summary.logged and not summary.queued:
                online = False

    def _targets(self) -> list[str] | None:
        targets = self.probe.targets
        if all(t is not None for t in targets):
            return list(targets)
        if any(t is not None for t in targets):
            raise InputError("either every probe sample has a target or none has (then continuations are generated)")
        return None

    def close(self, status: str | None = None) -> None:
        """Upload anything kept locally (waiting at most ``flush_timeout_s``); end the run if we created it.

        Steps of the run not uploaded in time stay in the spool (one warning line says how
        they will be uploaded). If the tracking server still cannot be reached, steps that were never
        assigned to a run are saved as JSON lines under ``spool_dir`` (or the
        default spool) and the path is reported; nothing is dropped.
        """
        t0 = time.perf_counter()
        try:
            if self._pending:
                self._drain()
            if self._writer is not None:
                self._writer.close(hint=self.tracking_uri)
            if self._own_run and self._client is not None and self._reachable():
                self._client.set_terminated(self.run_id, status or "FINISHED")
        except Exception as e:  # noqa: BLE001
            if self.strict:
                raise
            logger.warning("closing the attribution monitor failed: %s", e)
        if self._pending:
            self._dump_pending()
        self.close_s += time.perf_counter() - t0

    def _dump_pending(self) -> None:
        import json
        from pathlib import Path

        from ..tracking.spool import default_spool_dir

        root = Path(self.spool_dir) if self.spool_dir is not None else default_spool_dir()
        out = root / "unassigned"
        out.mkdir(parents=True, exist_ok=True)
        for step, results, *_ in self._pending:
            path = out / f"step-{step:010d}-{int(time.time())}.jsonl"
            path.write_text("\n".join(json.dumps(r.to_dict()) for r in results) + "\n")
            logger.warning("tracking never became reachable: attribution step %d saved to %s", step, path)
        self._pending = []

    # ---------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        return {"logged_steps": sorted(self.logged_steps), "run_id": self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.logged_steps = set(int(s) for s in state.get("logged_steps", []))
        if state.get("run_id") and self.run_id is None:
            self.run_id = state["run_id"]
