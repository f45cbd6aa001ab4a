"""The training-data task kind: jobs that ask which training examples drove each probe sample's target.

A job spec gets a ``training_data`` section; each of its methods is run for every model
like an attribution method, on the same targets (given, generated, or ``model:<name>``)::

    name: which-examples
    models: [{name: tuned, ref: runs:/<run id>/model}]
    samples: {source: probes.jsonl}
    training_data:
      index: <run id with a logged index>      # or runs:/<id>, or an index folder
      methods: [tracin, datainf]
      top_k: 10
      target_tokens: null                      # 0-based positions in the target (null = all)
      options: {damping: 0.1}                  # QueryOptions

Results are :class:`~attrib_mlops.training_data.result.TrainingDataAttribution` (one score
per training example), cached by content like every result (the index reference, the
query settings and the index's manifest digest are part of the key) and stored by the
sinks in the training-data storage kind.

Example:
    >>> TrainingDataJobSpec(index="out/index", methods=["tracin"]).top_k
    10
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...analysis.kinds.training_data import TRAINING_DATA, summarize_training_data
from ...training_data.result import TrainingDataAttribution
from . import TaskKind

__all__ = ["TrainingDataJobSpec", "TrainingDataTask", "OPTION_KEY"]

#: Where a job's training-data settings travel in ``AttributeOptions.method_kwargs`` (so they enter cache keys).
OPTION_KEY = "training_data"


class TrainingDataJobSpec(BaseModel):
    """The ``training_data`` section of a job spec.

    Attributes:
        index: the index: an MLflow run id (or ``runs:/<id>``) whose run logged one, or an index folder.
        methods: ``tracin``, ``grad_cos``, ``datainf``.
        top_k: items of ``top()`` per side.
        target_tokens: 0-based positions in each target's tokens (None = all).
        tracking_uri: MLflow server of a run id (default: the current one).
        options: :class:`~attrib_mlops.training_data.options.QueryOptions` fields.
    """

    model_config = ConfigDict(extra="forbid")

    index: str = Field(min_length=1)
    methods: list[Literal["tracin", "grad_cos", "datainf"]] = Field(default_factory=lambda: ["tracin"], min_length=1)
    top_k: int = Field(10, ge=1)
    target_tokens: list[int] | None = None
    tracking_uri: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("options")
    @classmethod
    def _valid_options(cls, v: dict[str, Any]) -> dict[str, Any]:
        from ...training_data.options import parse_query_options

        parse_query_options(v)  # a typo fails when the spec is read, not mid-job
        return v

    def method_kwargs(self) -> dict[str, Any]:
        """What the task needs, as it travels in the options (and into cache keys)."""
        return {OPTION_KEY: {"index": self.index, "top_k": self.top_k, "target_tokens": self.target_tokens,
                             "tracking_uri": self.tracking_uri, "options": dict(self.options),
                             "index_digest": _index_digest(self.index, self.tracking_uri)}}


def _index_digest(index: str, tracking_uri: str | None) -> str:
    """Digest of the index's manifest: an index that grew (more checkpoints) is another cache key.

    Raises:
        NoTrainingIndexError: the run or folder holds no index (the message says how to build one).
    """
    from ...tracking.training_index import resolve_index

    idx = resolve_index(index, tracking_uri=tracking_uri)
    return hashlib.sha256((Path(idx.path) / "manifest.json").read_bytes()).hexdigest()[:16]


class TrainingDataTask(TaskKind):
    """Training-data queries through :func:`attrib_mlops.attribute_training_data`, one per probe sample."""

    name = TRAINING_DATA

    def attribute(self, model, tokenizer, prompts, targets, method, engine, sample_ids, options):
        from ... import tda_api
        from ...tracking.training_index import resolve_index

        cfg = dict(options.method_kwargs.get(OPTION_KEY) or {})
        if not cfg.get("index"):
            from ...errors import InputError

            raise InputError("a training-data job needs training_data.index (a run id with a logged index or an "
                             "index folder)")
        index = resolve_index(cfg["index"], tracking_uri=cfg.get("tracking_uri"))
        qopts = dict(cfg.get("options") or {})
        if options.device and "device" not in qopts:
            qopts["device"] = options.device
        out = []
        for prompt, target, sid in zip(prompts, targets, sample_ids):
            r = tda_api.attribute_training_data(index, model, tokenizer, prompt, target or None,
                                                cfg.get("target_tokens"), method, int(cfg.get("top_k") or 10),
                                                **qopts)
            r.sample_id = str(sid)
            r.info.setdefault("index_ref", os.fspath(cfg["index"]))
            out.append(r)
        return out

    def decode(self, data: dict[str, Any]) -> TrainingDataAttribution:
        return TrainingDataAttribution.from_dict(data)

    def summarize(self, results: list[Any], ground_truth: dict[str, Any], k: int = 3) -> dict[str, float | None]:
        return summarize_training_data(results, k=k)
