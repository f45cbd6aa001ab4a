"""Hugging Face ``Trainer`` callback: attribution at evaluate / save / every N steps.

Example:
    >>> from attrib_mlops.callbacks import AttributionCallback
    >>> cb = AttributionCallback(probe_dataset, methods=["saliency"], every_n_steps=200)  # doctest: +SKIP
    >>> Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb]).train()        # doctest: +SKIP

The callback logs to the MLflow run that transformers' ``MLflowCallback``
opened when there is one (``report_to="mlflow"``), else to ``run_id`` or a run
of its own. Only the world-process-zero rank attributes and logs; other ranks
return at once (our code runs no collective operation, so nothing waits on
them). It keeps the set of logged steps in ``TrainerState`` so a resumed
training neither redoes nor skips a step.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

from transformers import TrainerCallback

from ..errors import InputError
from ..options import AttributeOptions
from .base import AttributionMonitor

logger = logging.getLogger("attrib_mlops.callbacks")

__all__ = ["AttributionCallback"]

_STATE_KEY = "attrib_mlops"


class AttributionCallback(TrainerCallback):
    """Run attribution on a fixed probe set during ``Trainer`` training.

    Args:
        probe: probe samples (``datasets.Dataset``, records, prompts or ``ProbeSet``).
        methods: attribution methods.
        engine: ``auto`` / ``native`` / ``inseq``.
        every_n_steps: attribute every N optimizer steps (None = off).
        on_evaluate: attribute after each evaluation.
        on_save: attribute at each checkpoint save.
        at_train_end: attribute the final model once more if its step was not logged.
        options: :class:`~attrib_mlops.options.AttributeOptions` fields.
        run_id, tracking_uri, experiment_name, model_name, strict, spool_dir:
            as for :class:`~attrib_mlops.callbacks.AttributionMonitor`.
        tokenizer: used when the Trainer has no ``processing_class``.
        baseline_run, check_policy: live regression check against a baseline run at each
            logged step (metric ``attrib/check/pass``); see
            :class:`~attrib_mlops.callbacks.AttributionMonitor`.
        stop_on_regression: set ``control.should_training_stop`` when a check finds a
            regression (off by default).
    """

    def __init__(
        self,
        probe: Any,
        methods: Sequence[str] = ("saliency",),
        engine: str = "auto",
        *,
        every_n_steps: int | None = None,
        on_evaluate: bool = False,
        on_save: bool = True,
        at_train_end: bool = True,
        options: AttributeOptions | dict | None = None,
        run_id: str | None = None,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        model_name: str = "model",
        strict: bool = False,
        spool_dir: str | os.PathLike | None = None,
        tokenizer: Any = None,
        baseline_run: str | None = None,
        check_policy: Any = None,
        stop_on_regression: bool = False,
    ) -> None:
        if every_n_steps is not None and (not isinstance(every_n_steps, int) or every_n_steps < 1):
            raise InputError(f"every_n_steps must be a positive integer or None, got {every_n_steps!r}")
        if every_n_steps is None and not (on_evaluate or on_save or at_train_end):
            raise InputError("the callback would never run: set every_n_steps, on_evaluate, on_save or at_train_end")
        self.every_n_steps = every_n_steps
        self.on_evaluate_ = on_evaluate
        self.on_save_ = on_save
        self.at_train_end = at_train_end
        self.monitor = AttributionMonitor(
            probe,
            tokenizer,
            methods,
            engine,
            options,
            run_id=run_id,
            tracking_uri=tracking_uri,
            experiment_name=experiment_name,
            model_name=model_name,
            strict=strict,
            spool_dir=spool_dir,
            baseline_run=baseline_run,
            check_policy=check_policy,
            stop_on_regression=stop_on_regression,
        )
        self._initialized = False

    # --------------------------------------------------------------- helpers
    def _setup(self, args, state, kwargs) -> None:
        if self._initialized:
            return
        self._initialized = True
        if self.monitor.tokenizer is None:
            tok = kwargs.get("processing_class") or kwargs.get("tokenizer")
            if tok is None:
                raise InputError(
                    "AttributionCallback needs a tokenizer: pass Trainer(processing_class=tokenizer) "
                    "or AttributionCallback(..., tokenizer=tokenizer)"
                )
            self.monitor.tokenizer = tok
        # resume: steps recorded in the TrainerState by an earlier run of this callback
        saved = getattr(state, "stateful_callbacks", {}) or {}
        mine = saved.get(_STATE_KEY)
        if isinstance(mine, str):
            mine = json.loads(mine)
        if isinstance(mine, dict):
            self.monitor.load_state_dict(mine)

    def _run(self, args, state, kwargs, control=None, checkpoint: str | None = None) -> None:
        if not state.is_world_process_zero:
            return
        model = kwargs.get("model")
        if model is None:
            logger.warning("AttributionCallback: the Trainer passed no model; skipping step %d", state.global_step)
            return
        if self.monitor.log(model, state.global_step, checkpoint=checkpoint):
            state.stateful_callbacks = dict(getattr(state, "stateful_callbacks", {}) or {})
            state.stateful_callbacks[_STATE_KEY] = self.monitor.state_dict()
            # ---- live regression check: stop training on a regression (opt-in, attrib_mlops.check)
            check = self.monitor.last_check
            if (control is not None and self.monitor.stop_on_regression and check is not None
                    and check.candidate.get("step") == state.global_step and check.verdict == "regression"):
                logger.warning("stopping training at step %d: attribution regression (stop_on_regression=True)",
                               state.global_step)
                control.should_training_stop = True

    # ---------------------------------------------------------------- events
    def on_train_begin(self, args, state, control, **kwargs):
        self._setup(args, state, kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        if self.every_n_steps and state.global_step % self.every_n_steps == 0:
            self._setup(args, state, kwargs)
            self._run(args, state, kwargs, control)

    def on_evaluate(self, args, state, control, **kwargs):
        if self.on_evaluate_:
            self._setup(args, state, kwargs)
            self._run(args, state, kwargs, control)

    def on_save(self, args, state, control, **kwargs):
        if self.on_save_:
            self._setup(args, state, kwargs)
            ckpt = None
            if getattr(args, "output_dir", None):
                ckpt = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            self._run(args, state, kwargs, control, checkpoint=ckpt)

    def on_train_end(self, args, state, control, **kwargs):
        self._setup(args, state, kwargs)
        if self.at_train_end and state.global_step not in self.monitor.logged_steps:
            self._run(args, state, kwargs, control)
        if state.is_world_process_zero:
            self.monitor.close()

    # ------------------------------------------------------------- accessors
    @property
    def run_id(self) -> str | None:
        return self.monitor.run_id

    @property
    def logged_steps(self) -> list[int]:
        return sorted(self.monitor.logged_steps)
