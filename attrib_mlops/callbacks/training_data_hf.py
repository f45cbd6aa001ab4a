"""Hugging Face ``Trainer`` callback: add each saved checkpoint to the run's training-data index.

Example:
    >>> from attrib_mlops.callbacks import TrainingIndexCallback
    >>> cb = TrainingIndexCallback({"dataset": train_rows, "subset": 500, "projection_dim": 512})  # doctest: +SKIP
    >>> Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb]).train()                # doctest: +SKIP
    >>> attrib_mlops.attribute_training_data(cb.run_id, None, None, "k3 = v1 ; ? k3")            # doctest: +SKIP

At every ``on_save`` the checkpoint the Trainer just wrote
(``<output_dir>/checkpoint-<step>``) is indexed with its learning rate (the
mean of the values ``trainer_state.json`` logged since the last indexed
checkpoint, as ``build_training_index`` reads them afterwards; else the
optimizer's current one) and the index is logged to the MLflow run (transformers'
``MLflowCallback`` run when there is one, else ``run_id`` or a run of our own).
Training is unchanged (see :mod:`attrib_mlops.callbacks.training_data`). Only
the world-process-zero rank indexes. ``AttributionCallback(...,
training_data=...)`` runs one of these next to the attribution and logs both
to the same run.

Resume: the callback is an ``ExportableState``; the indexed steps, run id and
index folder are saved in every checkpoint's ``trainer_state.json`` and read
back at train begin. The dataset is not saved, so the Trainer cannot rebuild the
callback itself: keep ``restore_callback_states_from_checkpoint=False`` (the
default); with it on, the rebuild stops with an error saying so.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from .training_data import TrainingIndexMonitor

__all__ = ["TrainingIndexCallback", "current_learning_rate"]


def current_learning_rate(kwargs: dict[str, Any]) -> float | None:
    """The learning rate the Trainer's optimizer (or scheduler) holds now; None when it passed neither."""
    opt = kwargs.get("optimizer")
    if opt is not None and getattr(opt, "param_groups", None):
        return float(opt.param_groups[0]["lr"])
    sched = kwargs.get("lr_scheduler")
    if sched is not None and hasattr(sched, "get_last_lr"):
        return float(sched.get_last_lr()[0])
    return None


class TrainingIndexCallback(TrainerCallback, ExportableState):
    """Build the training-data index at each checkpoint save.

    Args:
        training_data: :class:`~attrib_mlops.callbacks.training_data.TrainingDataConfig`, a dict of
            its fields (``dataset``, ``subset``, ``projection_dim``, ``index``...) or a dataset.
        tokenizer: used when the Trainer has no ``processing_class``.
        run_id, tracking_uri, experiment_name, strict: as for
            :class:`~attrib_mlops.callbacks.training_data.TrainingIndexMonitor`.
    """

    def __init__(self, training_data: Any = None, tokenizer: Any = None, *, run_id: str | None = None,
                 tracking_uri: str | None = None, experiment_name: str | None = None,
                 strict: bool = False) -> None:
        if training_data is None:  # e.g. rebuilt by the Trainer from a checkpoint's state, which has no dataset
            from ..errors import InputError

            raise InputError("TrainingIndexCallback needs training_data={'dataset': ...}; when resuming, keep "
                             "restore_callback_states_from_checkpoint=False (the callback reads its saved state "
                             "from the checkpoint itself)")
        self.monitor = TrainingIndexMonitor(training_data, tokenizer, run_id=run_id, tracking_uri=tracking_uri,
                                            experiment_name=experiment_name, strict=strict)

    def state(self) -> dict[str, Any]:
        """The resumable state (transformers ``ExportableState``): the data is not saved, only progress."""
        return {"args": {}, "attributes": self.monitor.state_dict()}

    def on_train_begin(self, args, state, control, **kwargs):
        saved = (getattr(state, "stateful_callbacks", None) or {}).get(type(self).__name__)
        if isinstance(saved, list):
            saved = saved[0] if saved else None
        if isinstance(saved, dict) and isinstance(saved.get("attributes"), dict):
            self.monitor.load_state_dict(saved["attributes"])
        if self.monitor.out_dir is None and getattr(args, "output_dir", None):
            self.monitor.out_dir = os.path.join(args.output_dir, "training_index")

    def on_save(self, args, state, control, run_id: str | None = None, **kwargs):
        if not state.is_world_process_zero:
            return
        model = kwargs.get("model")
        tok = self.monitor.tokenizer or kwargs.get("processing_class") or kwargs.get("tokenizer")
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        self.monitor.index_checkpoint(model, folder, state.global_step, None,
                                      fallback_learning_rate=current_learning_rate(kwargs), tokenizer=tok,
                                      run_id=run_id)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.monitor.close()

    @property
    def run_id(self) -> str | None:
        return self.monitor.run_id

    @property
    def index(self) -> Any:
        return self.monitor.index
