"""Hugging Face ``Trainer`` callback: attribution at evaluate / save / every N steps.

Example:
    >>> from attrib_mlops.callbacks import AttributionCallback
    >>> cb = AttributionCallback(probe_dataset, methods=["saliency"], every_n_steps=200)  # doctest: +SKIP
    >>> Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb]).train()        # doctest: +SKIP

The callback logs to the MLflow run that transformers' ``MLflowCallback``
opened when there is one (``report_to="mlflow"``), else to ``run_id`` or a run
of its own. Only the world-process-zero rank attributes and logs; other ranks
return at once (our code runs no collective operation, so nothing waits on
them).

Resume: the callback is a transformers ``ExportableState``: every checkpoint's
``trainer_state.json`` holds its :meth:`~AttributionCallback.state` (the logged
steps and the run id as ``attributes``, the JSON-able constructor arguments as
``args``), so a training resumed from a checkpoint neither redoes nor skips a
step and keeps logging to the same run. The callback reads its entry back at
train begin; with ``restore_callback_states_from_checkpoint=True`` the Trainer
rebuilds it from that state instead. Checkpoints written before (the entry
``attrib_mlops`` holding ``{"logged_steps", "run_id"}``) load too.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from .._util import dumps
from ..errors import InputError
from ..options import AttributeOptions
from .base import AttributionMonitor

logger = logging.getLogger("attrib_mlops.callbacks")

__all__ = ["AttributionCallback"]

#: Where checkpoints written before the callback was an ``ExportableState`` keep its state.
_LEGACY_STATE_KEY = "attrib_mlops"


class AttributionCallback(TrainerCallback, ExportableState):
    """Run attribution on a fixed probe set during ``Trainer`` training.

    Args:
        probe: probe samples (``datasets.Dataset``, records, prompts or ``ProbeSet``).
        methods: attribution methods.
        engine: ``auto`` / ``native`` / ``inseq``.
        every_n_steps: attribute every N optimizer steps (None = off).
        on_evaluate: attribute after each evaluation.
        on_save: attribute at each checkpoint save, its metrics linked to the checkpoint as an MLflow
            LoggedModel ``checkpoint-<step>`` (a step that is both an ``every_n_steps`` step and a save
            step is attributed once, on save).
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
        sources: context sources at every event (see
            :class:`~attrib_mlops.callbacks.sources.SourceTracking`): ``attrib/sources/...`` metrics,
            AT2 refits at chosen checkpoints, opt-in faithfulness metrics. Off by default.
        training_data: also build the training-data index at each save, logged to the same run
            (see :class:`~attrib_mlops.callbacks.training_data_hf.TrainingIndexCallback`).
        background_upload, flush_timeout_s: upload in a background worker while training
            goes on; at train end wait at most ``flush_timeout_s`` seconds for the uploads
            (see :class:`~attrib_mlops.callbacks.AttributionMonitor`).
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
        sources: Any = None,
        training_data: Any = None,
        background_upload: bool = True,
        flush_timeout_s: float = 10.0,
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
            sources=sources,
            background_upload=background_upload,
            flush_timeout_s=flush_timeout_s,
        )
        self.training_index = None
        if training_data is not None:  # training-data index at each save: its own module
            from .training_data_hf import TrainingIndexCallback

            self.training_index = TrainingIndexCallback(training_data, tokenizer, tracking_uri=tracking_uri,
                                                        experiment_name=experiment_name, strict=strict)
        self._initialized = False
        self._args = {
            "methods": list(self.monitor.methods), "engine": engine, "every_n_steps": every_n_steps,
            "on_evaluate": on_evaluate, "on_save": on_save, "at_train_end": at_train_end,
            "options": _json(self.monitor.options.model_dump(exclude_defaults=True)), "run_id": run_id,
            "tracking_uri": tracking_uri, "experiment_name": experiment_name, "model_name": model_name,
            "strict": strict, "spool_dir": None if spool_dir is None else os.fspath(spool_dir),
            "baseline_run": baseline_run, "check_policy": _json_policy(check_policy),
            "stop_on_regression": stop_on_regression,
            "sources": self.monitor.sources.config.model_dump(mode="json") if self.monitor.sources else None,
            "background_upload": background_upload, "flush_timeout_s": flush_timeout_s,
        }

    # --------------------------------------------------------------- state
    def state(self) -> dict[str, Any]:
        """The resumable state (transformers ``ExportableState``), saved in every checkpoint.

        ``args``: the constructor arguments that JSON can hold (the probe as records; not the
        tokenizer, which the Trainer gives back). ``attributes``: ``logged_steps`` and ``run_id``.
        """
        probe = [{**s.meta, "id": s.id, "prompt": s.prompt, "target": s.target, "ground_truth": s.ground_truth}
                 for s in self.monitor.probe]
        return {"args": {"probe": probe, **self._args}, "attributes": self.monitor.state_dict()}

    def _restore(self, state: Any) -> None:
        """Load what an earlier run of this callback left in ``state.stateful_callbacks``."""
        saved = getattr(state, "stateful_callbacks", None) or {}
        mine = saved.get(type(self).__name__)
        if isinstance(mine, list):  # several callbacks of this class: the first one's
            mine = mine[0] if mine else None
        if isinstance(mine, dict) and isinstance(mine.get("attributes"), dict):
            self.monitor.load_state_dict(mine["attributes"])
            return
        legacy = saved.get(_LEGACY_STATE_KEY)
        if isinstance(legacy, str):
            legacy = json.loads(legacy)
        if isinstance(legacy, dict):
            self.monitor.load_state_dict(legacy)

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
        self._restore(state)

    def _run(self, args, state, kwargs, control=None, checkpoint: str | None = None) -> None:
        if not state.is_world_process_zero:
            return
        model = kwargs.get("model")
        if model is None:
            logger.warning("AttributionCallback: the Trainer passed no model; skipping step %d", state.global_step)
            return
        if self.monitor.log(model, state.global_step, checkpoint=checkpoint):
            if control is not None and self.monitor.should_stop(state.global_step):
                logger.warning("stopping training at step %d: attribution regression (stop_on_regression=True)",
                               state.global_step)
                control.should_training_stop = True

    # ---------------------------------------------------------------- events
    def on_train_begin(self, args, state, control, **kwargs):
        self._setup(args, state, kwargs)
        if self.training_index is not None:
            self.training_index.on_train_begin(args, state, control, **kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        if self.every_n_steps and state.global_step % self.every_n_steps == 0:
            if self.on_save_ and getattr(control, "should_save", False) and getattr(args, "output_dir", None):
                return  # this step's checkpoint is saved next: on_save attributes it, linked to the checkpoint
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
        if self.training_index is not None:
            self.training_index.on_save(args, state, control, run_id=self.monitor.run_id, **kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        self._setup(args, state, kwargs)
        if self.at_train_end and state.global_step not in self.monitor.logged_steps:
            self._run(args, state, kwargs, control)
        if state.is_world_process_zero:
            self.monitor.close()
            if self.training_index is not None:
                self.training_index.monitor.close()

    # ------------------------------------------------------------- accessors
    @property
    def run_id(self) -> str | None:
        return self.monitor.run_id

    @run_id.setter
    def run_id(self, value: str | None) -> None:  # the Trainer's restore sets the saved attributes
        self.monitor.load_state_dict({"run_id": value, "logged_steps": sorted(self.monitor.logged_steps)})

    @property
    def logged_steps(self) -> list[int]:
        return sorted(self.monitor.logged_steps)

    @logged_steps.setter
    def logged_steps(self, steps: Any) -> None:
        self.monitor.logged_steps = {int(s) for s in steps or ()}


def _json(value: Any) -> Any:
    """``value`` as JSON can hold it (what JSON cannot hold becomes its ``str``); never raises."""
    return json.loads(dumps(value, canonical=True))


def _json_policy(policy: Any) -> Any:
    """A check policy as ``state()`` can hold it: a path or dict as is, a Policy object as its fields."""
    if isinstance(policy, os.PathLike):
        return os.fspath(policy)
    dump = getattr(policy, "model_dump", None)
    return _json(dump() if dump is not None else policy)
