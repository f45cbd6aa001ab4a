"""Build the training-data index during training, at each checkpoint save (framework-free core).

:class:`TrainingIndexMonitor` appends every saved checkpoint to one gradient
index (see :mod:`attrib_mlops.training_data`) over the training set or a
configured subset, with the learning rate at that checkpoint, and logs the
index as the run's ``training_index/`` artifact
(:mod:`attrib_mlops.tracking.training_index`). The HF ``Trainer`` wiring is
:class:`~attrib_mlops.callbacks.training_data_hf.TrainingIndexCallback` (or
``AttributionCallback(..., training_data=...)``); in a plain PyTorch loop call
:meth:`TrainingIndexMonitor.index_checkpoint` after each save.

What it guarantees: training is unchanged. The live model is only a template
(the checkpoint's weights are bound with ``functional_call``), its train/eval
mode, ``requires_grad`` flags, gradients and the torch, NumPy and Python RNG
streams are restored, so losses with and without indexing are identical.
Failures are logged and skipped (``strict=True`` raises).

Example (plain loop)::

    from attrib_mlops.callbacks import TrainingIndexMonitor

    tda = TrainingIndexMonitor({"dataset": train_rows, "subset": 200, "projection_dim": 256}, tok)
    for step in range(1, 1001):
        train_step(model)
        if step % 250 == 0:
            model.save_pretrained(f"out/checkpoint-{step}")
            tda.index_checkpoint(model, f"out/checkpoint-{step}", step, optimizer.param_groups[0]["lr"])
    tda.run_id   # the MLflow run that carries the index
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import tempfile
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError
from ..options import parse_model_options

logger = logging.getLogger("attrib_mlops.callbacks")

__all__ = ["TrainingDataConfig", "TrainingIndexMonitor", "parse_training_data", "select_subset"]


class TrainingDataConfig(BaseModel):
    """What the training callback indexes (the ``training_data=`` option).

    Attributes:
        dataset: the training examples: a ``datasets.Dataset``, records (``text``, or
            ``prompt`` + ``target``; ``id`` optional) or plain texts. An example is
            identified by its ``id`` field, else by its position in ``dataset``.
        subset: None (every example), an int ``n`` (a seeded random sample of ``n``
            examples, kept in dataset order) or a list of example ids / positions.
        subset_seed: seed of the random sample.
        out_dir: local folder of the index (None = ``<output_dir>/training_index`` under
            the Trainer, else a new temporary folder).
        index: :class:`~attrib_mlops.training_data.options.IndexOptions` fields
            (``projection_dim``, ``params``, ``last_blocks``...); the top-level keys
            ``projection_dim``, ``params`` and ``last_blocks`` are accepted as shortcuts.
        log_artifact: upload the index to the run after each checkpoint.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    dataset: Any
    subset: int | list[Any] | None = None
    subset_seed: int = 0
    out_dir: str | None = None
    index: dict[str, Any] = Field(default_factory=dict)
    projection_dim: int | None = Field(None, ge=1)
    params: list[str] | None = None
    last_blocks: int | None = Field(None, ge=0)
    log_artifact: bool = True

    def index_options(self) -> dict[str, Any]:
        """The IndexOptions keys (validated now, so a typo fails before training starts)."""
        from ..training_data.options import parse_index_options

        opts = dict(self.index)
        for key in ("projection_dim", "params", "last_blocks"):
            if getattr(self, key) is not None:
                opts[key] = getattr(self, key)
        for key in ("model", "out_dir"):
            if key in opts:
                raise InputError(f"training_data index option '{key}' is set by the callback; remove it "
                                 "(use training_data={'out_dir': ...} for the folder)")
        parse_index_options(opts)
        return opts


def parse_training_data(value: Any) -> TrainingDataConfig:
    """A :class:`TrainingDataConfig` from a config, a dict, or a bare dataset (every example)."""
    if isinstance(value, TrainingDataConfig):
        return value
    if isinstance(value, dict) and "dataset" in value:
        return parse_model_options(TrainingDataConfig, "training_data options", value)
    if value is None:
        raise InputError("training_data needs a dataset: training_data={'dataset': rows, 'subset': 200}")
    return TrainingDataConfig(dataset=value)


def select_subset(dataset: Any, subset: int | list[Any] | None, seed: int = 0) -> list[Any]:
    """The records to index, each carrying its id (its ``id`` field, else its position in ``dataset``).

    >>> select_subset(["a b", "c d", "e f"], [2, 0])
    [{'id': '0', 'text': 'a b'}, {'id': '2', 'text': 'e f'}]
    """
    from ..training_data.data import _records

    rows = _records(dataset)
    if not rows:
        raise InputError("training_data dataset is empty; give at least one training example")
    keyed = []
    for pos, rec in enumerate(rows):
        if isinstance(rec, str):
            rec = {"id": str(pos), "text": rec}
        elif isinstance(rec, dict) and rec.get("id") is None:
            rec = {**rec, "id": str(pos)}
        keyed.append(rec)
    if subset is None:
        return keyed
    if isinstance(subset, int):
        if not 1 <= subset <= len(keyed):
            raise InputError(f"training_data subset={subset}: give 1..{len(keyed)} examples (the dataset size)")
        picked = sorted(random.Random(seed).sample(range(len(keyed)), subset))
        return [keyed[i] for i in picked]
    by_id = {str(r["id"]) if isinstance(r, dict) else str(i): i for i, r in enumerate(keyed)}
    out, missing = [], []
    for ref in subset:
        i = by_id.get(str(ref))
        if i is None and isinstance(ref, int) and 0 <= ref < len(keyed):
            i = ref
        if i is None:
            missing.append(ref)
        else:
            out.append(i)
    if missing:
        raise InputError(f"training_data subset names examples not in the dataset: {missing[:5]}; give ids or "
                         "positions of the dataset")
    return [keyed[i] for i in sorted(set(out))]


@contextlib.contextmanager
def _training_unchanged(model: Any):
    """Python, NumPy and torch RNG states, train mode and ``.grad`` tensors restored on exit."""
    import numpy as np
    import torch

    py, npy, was = random.getstate(), np.random.get_state(), getattr(model, "training", None)
    grads = [(p, p.grad) for p in model.parameters()] if model is not None else []
    try:
        with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        for p, g in grads:
            p.grad = g
        if was is not None:
            model.train(was)


class TrainingIndexMonitor:
    """Append each saved checkpoint to a training-data index and log it to the run.

    Args:
        training_data: a :class:`TrainingDataConfig`, a dict of its fields, or a dataset.
        tokenizer: the tokenizer (may also be passed to :meth:`index_checkpoint`).
        run_id: MLflow run to log to (default: the active run, else a new one).
        tracking_uri: MLflow tracking URI.
        experiment_name: experiment of a run this monitor creates.
        strict: raise failures instead of logging them.
    """

    def __init__(self, training_data: Any, tokenizer: Any = None, *, run_id: str | None = None,
                 tracking_uri: str | None = None, experiment_name: str | None = None, strict: bool = False) -> None:
        self.config = parse_training_data(training_data)
        self.options = self.config.index_options()
        self.records = select_subset(self.config.dataset, self.config.subset, self.config.subset_seed)
        self.tokenizer = tokenizer
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.strict = strict
        self.out_dir = self.config.out_dir
        self.indexed_steps: list[int] = []
        self._own_run: Any = None  # (client, run id) of a run this monitor created, ended by close()
        self.failures: list[tuple[int | None, str]] = []
        self.index = None

    def _folder(self) -> str:
        if self.out_dir is None:
            self.out_dir = tempfile.mkdtemp(prefix="attrib-mlops-index-")
        return self.out_dir

    def _log(self, index: Any, step: int | None, learning_rate: float) -> None:
        from ..tracking.runs import get_or_create_run
        from ..tracking.training_index import log_training_index

        handle = get_or_create_run(tracking_uri=self.tracking_uri, run_id=self.run_id, use_active_run=True,
                                   experiment=self.experiment_name, run_name=f"attrib-{int(time.time())}")
        self.run_id = handle.run_id
        if handle.created:
            self._own_run = (handle.client, handle.run_id)
        log_training_index(index, self.run_id, client=handle.client)
        handle.client.log_metric(self.run_id, "attrib/tda/learning_rate", float(learning_rate),
                                 step=int(step or 0))

    def _learning_rate(self, folder: str, given: float | None, fallback: float | None) -> float:
        """Given; else ``trainer_state.json``'s mean over (last indexed step, step]; else ``fallback``."""
        from pathlib import Path

        from ..training_data.checkpoints import learning_rate_of
        from ..training_data.errors import MissingLearningRateError

        if given is not None:
            return float(given)
        try:
            return learning_rate_of(Path(folder), self.indexed_steps[-1] if self.indexed_steps else None)[0]
        except MissingLearningRateError:
            if fallback is None:
                raise
            return float(fallback)

    def index_checkpoint(self, model: Any, checkpoint: str | os.PathLike, step: int | None = None,
                         learning_rate: float | None = None, *, fallback_learning_rate: float | None = None,
                         tokenizer: Any = None, run_id: str | None = None) -> Any:
        """Add the checkpoint saved at ``checkpoint`` to the index; returns the index (None on a skipped failure).

        Args:
            model: the live model (a template only: its weights come from ``checkpoint``).
            checkpoint: the folder just saved (``save_pretrained`` / Trainer ``checkpoint-<step>``).
            step: the global step (recorded when the folder has no ``trainer_state.json``).
            learning_rate: the learning rate at this checkpoint (None = the mean of the values
                ``trainer_state.json`` logged since the last indexed checkpoint, as
                ``build_training_index`` reads them afterwards).
            fallback_learning_rate: used when ``learning_rate`` is None and the folder logs none
                (the HF callback passes the optimizer's current one).
            tokenizer: overrides the constructor's.
            run_id: log to this run (the HF callback passes the attribution run).
        """
        tok = tokenizer if tokenizer is not None else self.tokenizer
        if run_id is not None:
            self.run_id = run_id
        if step is not None and int(step) in self.indexed_steps:
            return self.index
        try:
            from ..training_data.builder import build_training_index

            lr = self._learning_rate(os.fspath(checkpoint), learning_rate, fallback_learning_rate)
            with _training_unchanged(model):
                index = build_training_index([os.fspath(checkpoint)], tok, self.records, [lr],
                                             model=model, out_dir=self._folder(), show_progress=False,
                                             **self.options)
            ck = index.checkpoints[-1]
            if self.config.log_artifact:
                self._log(index, step if step is not None else ck.get("step"), ck["learning_rate"])
        except Exception as e:  # noqa: BLE001 - never crash the user's training
            if self.strict:
                raise
            self.failures.append((step, f"{type(e).__name__}: {e}"))
            logger.exception("training-data index at step %s failed and was skipped (strict=False): %s", step, e)
            return None
        self.index = index
        if step is not None:
            self.indexed_steps.append(int(step))
        logger.info("training-data index: checkpoint %s added (%d examples, run %s)", checkpoint, index.n_examples,
                    self.run_id)
        return index

    def close(self, status: str = "FINISHED") -> None:
        """End the run this monitor created (a run given or active is left alone)."""
        if self._own_run is not None:
            client, run_id = self._own_run
            self._own_run = None
            try:
                client.set_terminated(run_id, status)
            except Exception as e:  # noqa: BLE001 - never crash the user's training
                if self.strict:
                    raise
                logger.warning("could not end run %s: %s", run_id, e)

    def state_dict(self) -> dict[str, Any]:
        """Resumable state: the indexed steps, the run id and the index folder."""
        return {"indexed_steps": list(self.indexed_steps), "run_id": self.run_id, "out_dir": self.out_dir}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.indexed_steps = [int(s) for s in state.get("indexed_steps", [])]
        self.run_id = self.run_id or state.get("run_id")
        self.out_dir = self.out_dir or state.get("out_dir")
