"""The context-sources task kind: jobs run ``ablation``, ``at2`` and ``attention`` (engine ``sources``).

A job names source methods like any other method; their engine is ``sources``
(``engine: auto`` finds ``ablation`` and ``at2``; naive attention averaging is
``attention`` with ``engine: sources``, since ``attention`` alone is the token method).
The ``sources:`` section of the spec (:class:`SourceJobOptions`) says how to cut each
prompt into sources and carries the method options::

    methods: [ablation, at2]
    samples: {source: probes.jsonl}           # rows may hold "sources" and "true_sources"
    sources:
      split: sentence                         # default splitter (sentence, line, turn, token)
      field: sources                          # per-sample: a list of substrings, or a splitter name
      truth_field: true_sources               # per-sample: indices of the true sources (hit@1)
      estimator: models:/kv-at2/3             # at2: a folder, models:/ or runs:/ URI
      options: {n_ablations: 32, ablation: mask}

Results are :class:`~attrib_mlops.sources.result.SourceAttribution` objects, cached by
content like token results: the key holds the sample's sources, the source options and
the estimator's content fingerprint (not its URI), so a re-run computes nothing and a
new estimator version recomputes only its method.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...errors import InputError
from ...sources.result import SourceAttribution
from . import TaskKind

__all__ = ["SourcesTask", "SourceJobOptions", "SOURCES"]

SOURCES = "sources"
#: Option keys of the AT2 methods that the job's ``options`` may hold but the ablation does not take.
_AT2_ONLY = ("estimator", "max_attention_elements")


class SourceJobOptions(BaseModel):
    """The ``sources:`` section of a job spec (see the module docstring).

    Attributes:
        split: splitter of samples that name no sources (``sentence``, ``line``, ``turn``, ``token``).
        field: the sample field holding its sources: a list of substrings in prompt order, or a
            splitter name.
        truth_field: the sample field holding the indices of its true sources (for ``hit_at_1``).
        estimator: AT2 estimator of ``at2``: a folder saved with ``SourceEstimator.save`` or an
            MLflow ``models:/`` / ``runs:/`` URI.
        options: :class:`~attrib_mlops.sources.options.SourceOptions` fields for ``ablation``,
            :class:`~attrib_mlops.sources.at2.options.AT2Options` fields for ``at2``/``attention``
            (a key only one of them takes goes only to it).
    """

    model_config = ConfigDict(extra="forbid")

    split: str = "sentence"
    field: str = "sources"
    truth_field: str = "true_sources"
    estimator: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("options")
    @classmethod
    def _known_options(cls, v: dict[str, Any]) -> dict[str, Any]:
        from ...sources.at2.options import AT2Options
        from ...sources.options import SourceOptions

        valid = set(SourceOptions.model_fields) | set(AT2Options.model_fields)
        bad = sorted(k for k in v if k not in valid)
        if bad:
            raise ValueError(f"unknown source option(s) {', '.join(bad)}; valid: {', '.join(sorted(valid))}")
        return v


def _estimator_ref(config: SourceJobOptions) -> str:
    if not config.estimator:
        raise InputError("method 'at2' needs an estimator: set sources.estimator in the job spec to a folder saved "
                         "with SourceEstimator.save or an MLflow models:/ or runs:/ URI")
    return config.estimator


class SourcesTask(TaskKind):
    """Source attributions through :func:`attrib_mlops.attribute_sources` (one call per batch)."""

    name = SOURCES

    def __init__(self) -> None:
        self.config = SourceJobOptions()
        self.method: str | None = None
        self._estimators: dict[str, Any] = {}

    def bind(self, spec: Any, method: str | None = None) -> SourcesTask:
        """Take the spec's ``sources:`` section (and the method, for its cache key)."""
        self.config = getattr(spec, "sources", None) or SourceJobOptions()
        self.method = method
        return self

    def _estimator(self, ref: str) -> Any:
        if ref not in self._estimators:
            from ...sources.at2.estimator import SourceEstimator

            self._estimators[ref] = SourceEstimator.load(ref)
        return self._estimators[ref]

    def _method_options(self, method: str, config: SourceJobOptions) -> dict[str, Any]:
        opts = dict(config.options)
        if method == "ablation":
            for k in _AT2_ONLY:
                opts.pop(k, None)
            from ...sources.options import SourceOptions

            return {k: v for k, v in opts.items() if k in SourceOptions.model_fields}
        from ...sources.at2.options import AT2Options

        return {k: v for k, v in opts.items() if k in AT2Options.model_fields}

    def key_extra(self, sample: Any) -> dict[str, Any]:
        """The sample's sources and true sources, the source options and, for ``at2``, the
        estimator's content fingerprint (its URI is kept for the worker that loads it).

        Raises:
            InputError: the sample's sources field is neither a list nor a splitter name.
        """
        meta = getattr(sample, "meta", None) or {}
        spec = meta.get(self.config.field)
        spec = self.config.split if spec is None else spec  # a row without sources: the splitter
        if isinstance(spec, (list, tuple)):
            spec = [str(s) for s in spec]
        elif not isinstance(spec, str):
            raise InputError(f"sample {getattr(sample, 'id', '?')!r}: field {self.config.field!r} must be a list of "
                             f"source substrings or a splitter name, got {type(spec).__name__}")
        truth = meta.get(self.config.truth_field)
        if truth is not None:
            truth = [int(truth)] if isinstance(truth, (int, float)) else [int(t) for t in truth]
        out = {"sources": spec, "true_sources": truth, "source_options": dict(self.config.options)}
        if self.method == "at2":
            ref = _estimator_ref(self.config)
            out.update(estimator=ref, estimator_fingerprint=self._estimator(ref).fingerprint())
        return out

    def attribute(self, model: Any, tokenizer: Any, prompts: Sequence[str], targets: Sequence[str], method: str,
                  engine: str, sample_ids: Sequence[str], options: Any,
                  extras: Sequence[dict[str, Any]] | None = None) -> list[SourceAttribution]:
        from ...sources.api import attribute_sources

        extras = list(extras or [{} for _ in prompts])
        config = self.config
        if extras and "source_options" in extras[0]:  # what the runner resolved (also on a remote worker)
            config = SourceJobOptions(split=config.split, options=extras[0]["source_options"],
                                      estimator=extras[0].get("estimator", config.estimator))
        kw = self._method_options(method, config)
        if method == "at2":
            kw["estimator"] = self._estimator(_estimator_ref(config))
        specs = [e.get("sources", config.split) for e in extras]
        # one call per run of samples that share a splitter (explicit lists are per prompt)
        out: list[SourceAttribution] = []
        start = 0
        while start < len(prompts):
            end = start + 1
            if isinstance(specs[start], str):
                while end < len(prompts) and specs[end] == specs[start]:
                    end += 1
                sources: Any = specs[start]
            else:
                while end < len(prompts) and not isinstance(specs[end], str):
                    end += 1
                sources = specs[start:end]
            out += attribute_sources(model, tokenizer, list(prompts[start:end]), list(targets[start:end]),
                                     sources, method, sample_ids=list(sample_ids[start:end]), **kw)
            start = end
        for r, e in zip(out, extras):
            if e.get("true_sources") is not None:
                r.info["true_sources"] = list(e["true_sources"])
            r.info["engine"] = engine
        return out

    def decode(self, data: dict[str, Any]) -> SourceAttribution:
        return SourceAttribution.from_dict(data)
