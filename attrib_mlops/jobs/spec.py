"""Job specs: models x methods x samples x options, validated (pydantic), from YAML/JSON or a dict.

A job spec names the models, the attribution methods, the probe samples and the options::

    name: keyvalue-tiny
    models:
      - {name: tiny, ref: models/tiny-kv}
    methods: [saliency, attention]
    samples: {source: "demo:keyvalue", n: 16}
    targets: given            # or: generate, or model:<name>
    options: {batch_size: 8}

Relative paths in a spec (model refs, samples source, output and cache folders) are
relative to the current working directory. Methods are validated against the method
registry (``attrib-mlops methods``).

Example:
    >>> spec = parse_job({"name": "j", "models": [{"name": "m", "ref": "x"}], "methods": ["saliency"],
    ...                   "samples": {"source": "s.jsonl"}})
    >>> spec.output_dir.replace("\\", "/"), spec.cache_dir
    ('attrib-results/j', '.attrib-cache')
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import SpecError
from ..options import AttributeOptions, parse_yaml
from ..samples import SamplesSpec
from .kinds.sources import SourceJobOptions
from .kinds.training_data import TRAINING_DATA, TrainingDataJobSpec

__all__ = ["ModelSpec", "SamplesSpec", "JobSpec", "parse_job", "load_job", "coerce_spec"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

@functools.lru_cache(maxsize=1)
def _method_table() -> dict[str, list[str]]:
    """``{engine: methods}`` from the method registry (:func:`attrib_mlops.api.list_methods`)."""
    from ..api import list_methods

    return list_methods()


def _known_methods() -> list[str]:
    return sorted(set().union(*_method_table().values()))


def _check_method(m: str) -> str:
    known = _known_methods()
    if m not in known:
        raise ValueError(f"unknown method {m!r}; valid: {', '.join(known)}")
    return m


def _check_name(v: str, what: str) -> str:
    if not _NAME_RE.match(v):
        raise ValueError(
            f"{what} {v!r} must start with a letter or digit and hold only letters, digits, '.', '_' or '-' "
            "(it names folders)"
        )
    return v


MethodName = Annotated[str, AfterValidator(_check_method)]


class ModelSpec(BaseModel):
    """One model of a job.

    Attributes:
        name: short name used in output paths and tables (letters, digits, ``._-``).
        ref: local folder, hub id, or MLflow URI (``runs:/...``, ``models:/...``).
        tokenizer: tokenizer reference (default: the model's folder).
        dtype: load dtype (``float32``, ``bfloat16``, ``float16``; default: as saved).
        device: ``cpu``, ``cuda``, ``cuda:1``... (default: CPU).
        trust_remote_code: allow custom model code from the model folder/hub (off by default).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    ref: str = Field(min_length=1)
    tokenizer: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    device: str | None = None
    trust_remote_code: bool = False

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        return _check_name(v, "model name")

    @field_validator("ref")
    @classmethod
    def _valid_ref(cls, v: str) -> str:
        from ..model_refs import check_model_ref

        return check_model_ref(v)  # an MLflow reference must stay inside its run / model


class JobSpec(BaseModel):
    """A job: models x methods x samples x options (see the module docstring).

    Attributes:
        name: job name (default output folder ``attrib-results/<name>``).
        models: one or more :class:`ModelSpec`.
        methods: attribution methods (see ``attrib-mlops methods``).
        engine: ``auto`` (native when it supports the method, else inseq; for a sequence
            classifier captum, which runs lime and kernel_shap on it), ``native``, ``inseq`` or
            ``captum``; the context-source methods run on engine ``sources`` (``auto`` picks it for them).
        samples: :class:`~attrib_mlops.samples.SamplesSpec`.
        targets: ``given`` (the samples' target field), ``generate`` (each model continues
            its prompts greedily, ``options.max_new_tokens``) or ``model:<name>`` (that model
            generates once; every model is attributed on the same continuations).
        options: :class:`~attrib_mlops.options.AttributeOptions` fields.
        output_dir: where the local sink writes (default ``attrib-results/<name>``).
        cache_dir: content-keyed result cache shared by jobs (default ``.attrib-cache``; ``null``:
            no cache, every result is computed).
        sources: how the context-source methods (``ablation``, ``at2``, engine ``sources``) cut
            prompts into sources and their options (:class:`~attrib_mlops.jobs.kinds.sources.SourceJobOptions`).
        training_data: training-data queries on the same samples and targets
            (:class:`~attrib_mlops.jobs.kinds.training_data.TrainingDataJobSpec`); ``methods`` may
            then be empty.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    models: list[ModelSpec] = Field(min_length=1)
    methods: list[MethodName] = Field(default_factory=list)
    engine: Literal["auto", "native", "inseq", "captum", "sources"] = "auto"
    samples: SamplesSpec
    targets: str = "given"
    options: AttributeOptions = Field(default_factory=AttributeOptions)
    output_dir: str | None = None
    cache_dir: str | None = ".attrib-cache"
    sources: SourceJobOptions | None = None
    training_data: TrainingDataJobSpec | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        return _check_name(v, "job name")

    @field_validator("targets")
    @classmethod
    def _valid_targets(cls, v: str) -> str:
        if v in ("given", "generate") or (v.startswith("model:") and len(v) > len("model:")):
            return v
        raise ValueError(f"must be 'given', 'generate' or 'model:<name of a model in models>', got {v!r}")

    @model_validator(mode="after")
    def _cross_checks(self) -> JobSpec:
        problems = []
        seen: dict[str, int] = {}
        for i, m in enumerate(self.models):
            if m.name in seen:
                problems.append(f"'models.{i}.name': duplicate model name {m.name!r} (also models.{seen[m.name]})")
            seen.setdefault(m.name, i)
        if self.target_model is not None and self.target_model not in seen:
            problems.append(
                f"'targets': model {self.target_model!r} is not in models (names: {', '.join(seen)})"
            )
        if self.engine != "auto":
            supported = _method_table().get(self.engine, [])
            for i, m in enumerate(self.methods):
                if m not in supported:
                    problems.append(
                        f"'methods.{i}': engine {self.engine!r} does not support {m!r} "
                        f"(it supports {', '.join(supported)}); use engine: auto"
                    )
        if not self.methods and self.training_data is None:
            problems.append("'methods': give at least one attribution method (or a 'training_data' section)")
        dups = sorted({m for m in self.methods if self.methods.count(m) > 1})
        if dups:
            problems.append(f"'methods': listed more than once: {', '.join(dups)}")
        if problems:
            raise ValueError("; ".join(problems))
        if self.output_dir is None:
            self.output_dir = str(Path("attrib-results") / self.name)
        return self

    @property
    def target_model(self) -> str | None:
        """Name of the model that generates shared targets (``targets: model:<name>``), else None."""
        return self.targets.split(":", 1)[1] if self.targets.startswith("model:") else None

    def model_options(self, model: ModelSpec) -> AttributeOptions:
        """The job options with the model's ``dtype``/``device``/``trust_remote_code`` applied."""
        upd: dict[str, Any] = {}
        if model.dtype:
            upd["dtype"] = model.dtype
        if model.device:
            upd["device"] = model.device
        if model.trust_remote_code:
            upd["trust_remote_code"] = True
        return self.options.model_copy(update=upd) if upd else self.options

    @property
    def all_methods(self) -> list[str]:
        """The attribution methods, then the training-data methods (``training_data.methods``)."""
        return [*self.methods, *(self.training_data.methods if self.training_data is not None else [])]

    def method_engines(self) -> dict[str, str]:
        """The engine of each training-data method (the ``training_data`` task kind runs them)."""
        return {m: TRAINING_DATA for m in (self.training_data.methods if self.training_data is not None else [])}

    def method_options(self, model: ModelSpec, method: str) -> AttributeOptions:
        """:meth:`model_options`, with the training-data settings for a training-data method."""
        opts = self.model_options(model)
        if self.training_data is not None and method in self.training_data.methods and method not in self.methods:
            return opts.model_copy(update={"method_kwargs": {**opts.method_kwargs,
                                                             **self.training_data.method_kwargs()}})
        return opts

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict; only the options that were set are kept."""
        d = self.model_dump(mode="json")
        d["options"] = self.options.model_dump(mode="json", exclude_unset=True)
        return d


_KEY_OWNERS: dict[str, type[BaseModel]] = {
    "": JobSpec,
    "models.*": ModelSpec,
    "samples": SamplesSpec,
    "options": AttributeOptions,
    "sources": SourceJobOptions,
    "training_data": TrainingDataJobSpec,
}


def _short(v: Any, n: int = 60) -> str:
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def _format_spec_errors(err: ValidationError, where: str) -> str:
    parts = []
    for e in err.errors():
        loc = tuple(e["loc"])
        key = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            parent = ".".join("*" if isinstance(p, int) else str(p) for p in loc[:-1])
            owner = _KEY_OWNERS.get(parent)
            hint = f" (valid keys: {', '.join(owner.model_fields)})" if owner else ""
            parts.append(f"unknown key '{key}'{hint}")
        elif e["type"] == "missing":
            parts.append(f"missing key '{key}'")
        elif e["type"] == "value_error":
            err_obj = (e.get("ctx") or {}).get("error")
            msg = str(err_obj) if err_obj is not None else e["msg"]
            parts.append(f"'{key}': {msg}" if key else msg)
        else:
            parts.append(f"'{key or '(root)'}': {e['msg']} (got {_short(e.get('input'))})")
    return f"invalid {where}: " + "; ".join(parts)


def parse_job(data: Any, where: str = "job spec") -> JobSpec:
    """Validate a job spec dict; raises :class:`SpecError` naming every bad key."""
    if isinstance(data, JobSpec):
        return data
    if not isinstance(data, dict):
        raise SpecError(f"invalid {where}: expected a mapping of keys (name, models, methods, ...), "
                        f"got {type(data).__name__}")
    try:
        return JobSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(_format_spec_errors(err, where)) from None


def load_job(path: str | os.PathLike) -> JobSpec:
    """Read and validate a job spec (``.yaml``/``.yml`` or ``.json``).

    Raises:
        SpecError: file missing or unreadable, YAML/JSON syntax error, or invalid keys/values.
    """
    p = Path(path)
    if not p.exists():
        raise SpecError(f"job file '{p}' not found (working directory: {Path.cwd()})")
    if p.is_dir():
        raise SpecError(f"job file '{p}' is a folder; give the path of a .yaml or .json job spec")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read job file '{p}': {e}") from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"job file '{p}' is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    else:
        data = parse_yaml(text, f"job file '{p}'")
    if data is None:
        raise SpecError(f"job file '{p}' is empty")
    return parse_job(data, where=f"job spec '{p}'")


def coerce_spec(spec_or_path: JobSpec | dict | str | os.PathLike) -> JobSpec:
    """A :class:`JobSpec` from itself, its dict form, or the path of a YAML/JSON job file."""
    if isinstance(spec_or_path, JobSpec):
        return spec_or_path
    if isinstance(spec_or_path, dict):
        return parse_job(spec_or_path)
    return load_job(spec_or_path)
