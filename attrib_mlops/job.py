"""Jobs: models x methods x samples x options, cached on disk and written to sinks.

A job spec (YAML or JSON) names the models, the attribution methods, the probe
samples and the options::

    name: keyvalue-tiny
    models:
      - {name: tiny, ref: models/tiny-kv}
    methods: [saliency, attention]
    samples: {source: "demo:keyvalue", n: 16}
    targets: given            # or: generate, or model:<name>
    options: {batch_size: 8}

:func:`run_job` runs every (model, method) pair over every sample:

* each model is loaded once, and only if something has to be computed;
* results are looked up in a content-keyed :class:`ResultCache` first; each freshly
  computed batch is written to the cache at once (atomically), so an interrupted job
  loses nothing it finished and a re-run computes only what is missing;
* ``targets: model:<name>`` lets the named model generate the continuations once,
  and every model is attributed on those same continuations (teacher forcing), so
  models are comparable cell by cell; generated continuations are cached too;
* complete (model, method) result lists go to every :class:`ResultSink`; the default
  :class:`LocalFolderSink` writes::

      <output_dir>/manifest.json                  job spec, probe set, models, versions, status
      <output_dir>/results/<model>/<method>.jsonl one AttributionResult.to_dict() a line
      <output_dir>/summary.json                   mean metrics per (model, method)

Relative paths in a spec (model refs, samples source, output and cache folders) are
relative to the current working directory. Nothing is pickled: results are JSON.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import gc
import hashlib
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import AttribError, InputError, SpecError
from .options import AttributeOptions
from .result import AttributionResult
from .samples import ProbeSet, SamplesSpec

logger = logging.getLogger(__name__)

__all__ = [
    "ModelSpec",
    "SamplesSpec",
    "JobSpec",
    "load_job",
    "parse_job",
    "ResultCache",
    "cache_key",
    "model_fingerprint",
    "tokenizer_fingerprint",
    "ResultSink",
    "LocalFolderSink",
    "load_local_results",
    "summarize_results",
    "PairOutcome",
    "JobOutcome",
    "run_job",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
CACHE_FORMAT = 1
#: Models with at most this many parameters are fingerprinted from every parameter byte.
FULL_HASH_LIMIT = 1_000_000_000
#: Above the limit, about this many elements (spread over all tensors) are hashed.
SAMPLED_HASH_ELEMENTS = 1 << 24


# =========================================================================== spec
@functools.lru_cache(maxsize=1)
def _method_table() -> dict[str, list[str]]:
    from .api import list_methods

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
        from .model_refs import check_model_ref

        return check_model_ref(v)


class JobSpec(BaseModel):
    """A job: models x methods x samples x options (see the module docstring).

    Attributes:
        name: job name (default output folder ``attrib-results/<name>``).
        models: one or more :class:`ModelSpec`.
        methods: attribution methods (see ``attrib-mlops methods``).
        engine: ``auto`` (native when it supports the method, else inseq), ``native`` or ``inseq``.
        samples: :class:`~attrib_mlops.samples.SamplesSpec`.
        targets: ``given`` (the samples' target field), ``generate`` (each model continues
            its prompts greedily, ``options.max_new_tokens``) or ``model:<name>`` (that model
            generates once; every model is attributed on the same continuations).
        options: :class:`~attrib_mlops.options.AttributeOptions` fields.
        output_dir: where the local sink writes (default ``attrib-results/<name>``).
        cache_dir: content-keyed result cache shared by jobs (default ``.attrib-cache``).
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    models: list[ModelSpec] = Field(min_length=1)
    methods: list[MethodName] = Field(min_length=1)
    engine: Literal["auto", "native", "inseq"] = "auto"
    samples: SamplesSpec
    targets: str = "given"
    options: AttributeOptions = Field(default_factory=AttributeOptions)
    output_dir: str | None = None
    cache_dir: str = ".attrib-cache"

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
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e)
            raise SpecError(f"job file '{p}' is not valid YAML: {' '.join(str(problem).split())}{at}") from None
    if data is None:
        raise SpecError(f"job file '{p}' is empty")
    return parse_job(data, where=f"job spec '{p}'")


# =========================================================================== fingerprints
def model_fingerprint(model: Any, *, full_hash_limit: int = FULL_HASH_LIMIT) -> str:
    """Content hash of a model: its class, config JSON and parameter/buffer bytes (blake2b).

    Path-like config entries (``_name_or_path``, ``transformers_version``) are left out, so
    the same weights loaded from different folders share a fingerprint; dtype changes the
    bytes and therefore the fingerprint.

    Models with at most ``full_hash_limit`` (1e9) parameters hash every byte (a few seconds
    per GB on a CPU). Larger models hash names, shapes and dtypes of every tensor plus a
    strided sample of about 16M elements spread over all tensors. Trade-off: hashing a
    multi-GB model fully on every job start would cost tens of seconds; the sample catches
    any retraining or fine-tuning that touches most tensors, but an edit confined to
    unsampled elements (e.g. a handful of rows changed by hand) would go unnoticed and
    serve stale cached results. Pass ``full_hash_limit=math.inf`` to always hash fully.
    """
    import torch

    h = hashlib.blake2b(digest_size=32)
    cfg = getattr(model, "config", None)
    cfg_d: dict[str, Any] = dict(cfg.to_dict()) if hasattr(cfg, "to_dict") else {}
    for k in ("_name_or_path", "transformers_version", "_commit_hash"):
        cfg_d.pop(k, None)
    header = {
        "class": type(model).__name__,
        "config": cfg_d,
        "attn_implementation": getattr(cfg, "_attn_implementation", None),
    }
    h.update(json.dumps(header, sort_keys=True, default=str).encode())
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    total = sum(t.numel() for _, t in model.named_parameters())
    full = total <= full_hash_limit
    h.update(b"full" if full else b"sampled")
    all_elems = max(1, sum(t.numel() for _, t in tensors))
    with torch.no_grad():
        for name, t in tensors:
            h.update(f"|{name}|{tuple(t.shape)}|{t.dtype}|".encode())
            if t.device.type == "meta":  # offloaded: only the layout is known
                continue
            flat = t.detach().reshape(-1)
            if not full:
                budget = max(4096, math.ceil(SAMPLED_HASH_ELEMENTS * flat.numel() / all_elems))
                if flat.numel() > budget:
                    flat = flat[:: math.ceil(flat.numel() / budget)]
            if flat.numel():
                h.update(flat.contiguous().cpu().view(torch.uint8).numpy())
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Content hash of a tokenizer (its full serialized form when it has a fast backend)."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    special = getattr(tokenizer, "special_tokens_map", {}) or {}
    h.update(json.dumps(special, sort_keys=True, default=str).encode())
    return h.hexdigest()


# =========================================================================== cache
def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def cache_key(
    *,
    model_fingerprint: str,
    method: str,
    engine: str,
    options: dict[str, Any],
    prompt: str,
    target: str,
    versions: dict[str, str],
    tokenizer_fingerprint: str | None = None,
) -> str:
    """sha256 of everything that determines one result (``options`` = ``AttributeOptions.key_dict()``).

    The tokenizer fingerprint is part of the key too: the same model with another
    tokenizer gives other tokens.
    """
    payload = {
        "format": CACHE_FORMAT,
        "model": model_fingerprint,
        "tokenizer": tokenizer_fingerprint,
        "method": method,
        "engine": engine,
        "options": options,
        "prompt": prompt,
        "target": target,
        "versions": versions,
    }
    return hashlib.sha256(_dumps(payload).encode()).hexdigest()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temporary file in the same folder, fsync it, then ``os.replace`` it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


class ResultCache:
    """Content-keyed on-disk cache of attribution results (one JSON file each, no pickle).

    Layout: ``<dir>/results/<key[:2]>/<key>.json`` (``AttributionResult.to_dict()``, NaN as
    null), ``<dir>/generations/...`` (generated continuations) and ``<dir>/fingerprints/...``
    (memoized model fingerprints of local folders). Every file is written atomically, so a
    reader never sees a half-written entry; a corrupt entry counts as a miss.
    """

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)

    def _path(self, kind: str, key: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{16,128}", key):
            raise ValueError(f"cache keys are hex digests, got {key!r}")
        return self.dir / kind / key[:2] / f"{key}.json"

    def get_json(self, kind: str, key: str) -> Any | None:
        p = self._path(kind, key)
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as e:
            logger.warning("ignoring unreadable cache entry %s (%s); it will be recomputed", p, e)
            return None

    def put_json(self, kind: str, key: str, data: Any) -> Path:
        return atomic_write_text(self._path(kind, key), json.dumps(data, ensure_ascii=False, allow_nan=False))

    def get(self, key: str) -> AttributionResult | None:
        d = self.get_json("results", key)
        if d is None:
            return None
        try:
            return AttributionResult.from_dict(d)
        except (KeyError, TypeError, ValueError) as e:
            logger.warning("ignoring malformed cached result %s (%s); it will be recomputed", key, e)
            return None

    def put(self, key: str, result: AttributionResult) -> Path:
        return self.put_json("results", key, result.to_dict())

    def __contains__(self, key: str) -> bool:
        return self._path("results", key).exists()


# =========================================================================== sinks
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def summarize_results(
    results: Sequence[AttributionResult],
    ground_truth: dict[str, list[int] | None] | None = None,
    k: int = 3,
) -> dict[str, float | None]:
    """Mean of :func:`attrib_mlops.analysis.summarize` over results (NaN left out; None if none).

    ``ground_truth`` maps sample ids to prompt token positions; ``hit_at_1``, ``hit_at_3``
    and ``mean_rank`` are averaged over the samples that have one (positions out of range,
    e.g. after truncation, are skipped with a warning).
    """
    from .analysis import summarize

    ground_truth = ground_truth or {}
    sums: dict[str, list[float]] = {}
    for r in results:
        gt = ground_truth.get(r.sample_id) if r.sample_id is not None else None
        try:
            m = summarize(r, k=k, true_positions=gt or None)
        except AttribError as e:
            if not gt:
                raise
            logger.warning("sample %s: ground truth not usable (%s); alignment metrics skipped", r.sample_id, e)
            m = summarize(r, k=k)
        for name, v in m.items():
            sums.setdefault(name, [])
            if v is not None and math.isfinite(v):
                sums[name].append(float(v))
    return {name: (sum(v) / len(v) if v else None) for name, v in sums.items()}


@runtime_checkable
class ResultSink(Protocol):
    """Where a job's results go. Implement these three methods to add a sink (e.g. MLflow).

    Call order: ``begin`` once, then ``write`` once per (model, method) pair as soon as
    that pair is complete (results in probe-set order, cached ones included; a sink must
    treat a repeated pair as a replacement), then ``end`` once, also when the job fails
    (``status="FAILED"``; the exception is re-raised after all sinks ended).
    """

    def begin(self, job: JobSpec, probe_set: ProbeSet) -> None:
        """The job starts: ``job`` is the validated spec, ``probe_set`` the selected samples."""

    def write(self, model_name: str, method: str, results: list[AttributionResult]) -> None:
        """All results of one (model, method) pair."""

    def end(self, status: Literal["FINISHED", "FAILED"]) -> None:
        """The job is over."""


class LocalFolderSink:
    """Writes ``manifest.json``, ``results/<model>/<method>.jsonl`` and ``summary.json``.

    Every file is rewritten atomically after each pair, so the folder is consistent at any
    moment; ``manifest.json``'s ``status`` is ``RUNNING`` until :meth:`end`.
    """

    def __init__(self, output_dir: str | os.PathLike, k: int = 3):
        self.output_dir = Path(output_dir)
        self.k = k
        self._manifest: dict[str, Any] = {}
        self._summary: dict[tuple[str, str], dict[str, Any]] = {}
        self._order: dict[tuple[str, str], tuple[int, int]] = {}
        self._gt: dict[str, list[int] | None] = {}

    def begin(self, job: JobSpec, probe_set: ProbeSet) -> None:
        from .api import library_versions

        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._gt = {s.id: s.ground_truth for s in probe_set}
        self._order = {
            (m.name, meth): (i, j) for i, m in enumerate(job.models) for j, meth in enumerate(job.methods)
        }
        self._summary = {}
        self._manifest = {
            "format": 1,
            "name": job.name,
            "status": "RUNNING",
            "started": _now(),
            "finished": None,
            "job": job.to_dict(),
            "models": [{**m.model_dump(mode="json"), "fingerprint": None} for m in job.models],
            "methods": list(job.methods),
            "versions": library_versions(),
            "probe_set": {
                "source": probe_set.source,
                "fingerprint": probe_set.fingerprint,
                "n": len(probe_set),
                "samples": probe_set.to_records(),
            },
            "pairs": [],
        }
        self._write_manifest()

    def write(self, model_name: str, method: str, results: list[AttributionResult]) -> None:
        rel = Path("results") / model_name / f"{method}.jsonl"
        lines = [json.dumps(r.to_dict(), ensure_ascii=False, allow_nan=False) for r in results]
        atomic_write_text(self.output_dir / rel, "".join(line + "\n" for line in lines))
        engine = results[0].engine if results else None
        fp = results[0].info.get("model_fingerprint") if results else None
        for m in self._manifest.get("models", []):
            if m["name"] == model_name and fp:
                m["fingerprint"] = fp
        pairs = [p for p in self._manifest["pairs"] if (p["model"], p["method"]) != (model_name, method)]
        pairs.append({"model": model_name, "method": method, "engine": engine, "n": len(results),
                      "path": rel.as_posix()})
        pairs.sort(key=lambda p: self._order.get((p["model"], p["method"]), (1 << 30, 0)))
        self._manifest["pairs"] = pairs
        self._summary[(model_name, method)] = {
            "model": model_name,
            "method": method,
            "engine": engine,
            "n": len(results),
            "metrics": summarize_results(results, self._gt, k=self.k),
        }
        self._write_summary()
        self._write_manifest()

    def end(self, status: Literal["FINISHED", "FAILED"]) -> None:
        self._manifest["status"] = status
        self._manifest["finished"] = _now()
        self._write_manifest()

    def _write_manifest(self) -> None:
        atomic_write_text(self.output_dir / "manifest.json", json.dumps(self._manifest, indent=2, ensure_ascii=False))

    def _write_summary(self) -> None:
        rows = sorted(self._summary.values(), key=lambda r: self._order.get((r["model"], r["method"]), (1 << 30, 0)))
        doc = {"name": self._manifest.get("name"), "k": self.k, "pairs": rows}
        atomic_write_text(self.output_dir / "summary.json", json.dumps(doc, indent=2, allow_nan=False))


def load_local_results(output_dir: str | os.PathLike) -> dict[tuple[str, str], list[AttributionResult]]:
    """Read what a :class:`LocalFolderSink` wrote: ``{(model, method): [results in sample order]}``."""
    out_dir = Path(output_dir)
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.exists():
        raise InputError(f"'{out_dir}' holds no manifest.json; is it the output folder of a job?")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    out: dict[tuple[str, str], list[AttributionResult]] = {}
    for pair in manifest.get("pairs", []):
        path = out_dir / pair["path"]
        with path.open(encoding="utf-8") as f:
            out[(pair["model"], pair["method"])] = [
                AttributionResult.from_dict(json.loads(line)) for line in f if line.strip()
            ]
    return out


# =========================================================================== running
@dataclass
class PairOutcome:
    """What happened to one (model, method) pair."""

    model: str
    method: str
    engine: str
    computed: int
    cached: int
    metrics: dict[str, float | None] = field(default_factory=dict)


@dataclass
class JobOutcome:
    """Result of :func:`run_job`: counts per pair and where the results went."""

    name: str
    output_dir: Path
    status: str
    n_samples: int
    probe_fingerprint: str
    pairs: list[PairOutcome] = field(default_factory=list)

    @property
    def computed(self) -> int:
        return sum(p.computed for p in self.pairs)

    @property
    def cached(self) -> int:
        return sum(p.cached for p in self.pairs)

    @property
    def counts(self) -> dict[tuple[str, str], dict[str, int]]:
        return {(p.model, p.method): {"computed": p.computed, "cached": p.cached} for p in self.pairs}


class _ModelHandle:
    """A job's model: loaded lazily (once), fingerprinted (memoized for local folders), released."""

    def __init__(self, spec: ModelSpec, options: AttributeOptions, cache: ResultCache):
        self.spec = spec
        self.options = options
        self.cache = cache
        self._model: Any = None
        self._tok: Any = None
        self._fps: tuple[str, str] | None = None

    def get(self) -> tuple[Any, Any]:
        if self._model is None:
            from .engines.prep import load_model_and_tokenizer

            logger.info("loading model %s from %s", self.spec.name, self.spec.ref)
            self._model, self._tok, _ = load_model_and_tokenizer(self.spec.ref, self.spec.tokenizer, self.options)
        return self._model, self._tok

    def _memo_key(self) -> str | None:
        """Key of the memoized fingerprint: folder path + every file's size and mtime (local folders only)."""
        refs = [self.spec.ref] + ([self.spec.tokenizer] if self.spec.tokenizer else [])
        listing = []
        for ref in refs:
            p = Path(ref)
            if not p.is_dir():
                return None
            files = []
            for root, _dirs, names in os.walk(p):
                for n in names:
                    st = os.stat(os.path.join(root, n))
                    files.append((os.path.relpath(os.path.join(root, n), p), st.st_size, st.st_mtime_ns))
            listing.append([str(p.resolve()), sorted(files)])
        payload = {"format": CACHE_FORMAT, "refs": listing, "dtype": self.options.dtype,
                   "trust_remote_code": self.options.trust_remote_code}
        return hashlib.sha256(_dumps(payload).encode()).hexdigest()

    def fingerprints(self) -> tuple[str, str]:
        """``(model_fingerprint, tokenizer_fingerprint)``."""
        if self._fps is None:
            memo = self._memo_key()
            d = self.cache.get_json("fingerprints", memo) if memo else None
            if isinstance(d, dict) and "model" in d and "tokenizer" in d:
                self._fps = (d["model"], d["tokenizer"])
            else:
                model, tok = self.get()
                self._fps = (model_fingerprint(model), tokenizer_fingerprint(tok))
                if memo:
                    self.cache.put_json("fingerprints", memo, {"model": self._fps[0], "tokenizer": self._fps[1],
                                                               "ref": self.spec.ref})
        return self._fps

    def release(self) -> None:
        if self._model is not None:
            self._model = self._tok = None
            gc.collect()


def _progress(total: int, desc: str, enabled: bool, initial: int = 0):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, unit="sample", leave=True,
                dynamic_ncols=True)


def _generate(
    handle: _ModelHandle, probe: ProbeSet, max_new_tokens: int, cache: ResultCache, progress: bool
) -> list[str]:
    """Greedy continuations of every prompt by one model, cached per (fingerprint, prompt, length)."""
    from .engines.prep import context_limit, generate_targets

    mfp, tfp = handle.fingerprints()
    keys = [
        hashlib.sha256(_dumps({"format": CACHE_FORMAT, "kind": "generation", "model": mfp, "tokenizer": tfp,
                               "prompt": s.prompt, "max_new_tokens": max_new_tokens}).encode()).hexdigest()
        for s in probe
    ]
    texts: list[str | None] = []
    for k in keys:
        d = cache.get_json("generations", k)
        texts.append(d.get("target") if isinstance(d, dict) else None)
    todo = [i for i, t in enumerate(texts) if t is None]
    if todo:
        with _progress(len(todo), f"{handle.spec.name}: generate", progress) as bar:
            model, tok = handle.get()
            limit = context_limit(model)
            for i in todo:
                s = probe[i]
                try:
                    text = generate_targets(model, tok, [s.prompt], max_new_tokens, limit)[0]
                except AttribError as e:
                    raise InputError(f"model {handle.spec.name!r}, sample {s.id!r}: {e}") from e
                cache.put_json("generations", keys[i], {"prompt": s.prompt, "target": text,
                                                        "max_new_tokens": max_new_tokens, "model_fingerprint": mfp})
                texts[i] = text
                bar.update(1)
    return [t for t in texts if t is not None]


def _run_pair(
    handle: _ModelHandle,
    method: str,
    engine: str,
    probe: ProbeSet,
    targets: list[str],
    options: AttributeOptions,
    cache: ResultCache,
    versions: dict[str, str],
    target_source: str,
    progress: bool,
) -> tuple[list[AttributionResult], int, int]:
    from . import api  # module attribute lookup: tests and wrappers can patch api.attribute

    mfp, tfp = handle.fingerprints()
    okey = options.key_dict()
    keys = [
        cache_key(model_fingerprint=mfp, tokenizer_fingerprint=tfp, method=method, engine=engine, options=okey,
                  prompt=s.prompt, target=t, versions=versions)
        for s, t in zip(probe, targets)
    ]
    results: list[AttributionResult | None] = []
    for s, k in zip(probe, keys):
        r = cache.get(k)
        if r is not None:
            r.sample_id = s.id  # content-keyed: the same prompt may carry another id in another job
            r.info["target_source"] = target_source
        results.append(r)
    todo = [i for i, r in enumerate(results) if r is None]
    n_cached = len(probe) - len(todo)
    desc = f"{handle.spec.name} / {method}"
    with _progress(len(probe), desc, progress, initial=n_cached) as bar:
        for start in range(0, len(todo), options.batch_size):
            batch = todo[start : start + options.batch_size]
            model, tok = handle.get()
            out = api.attribute(
                model,
                tok,
                [probe[i].prompt for i in batch],
                [targets[i] for i in batch],
                [method],
                engine,
                sample_ids=[probe[i].id for i in batch],
                options=options,
            )
            if len(out) != len(batch):
                raise RuntimeError(f"attribute returned {len(out)} results for a batch of {len(batch)}")
            for i, r in zip(batch, out):
                r.info["model_fingerprint"] = mfp
                r.info["target_source"] = target_source
                cache.put(keys[i], r)  # at once: a crash later loses nothing computed here
                results[i] = r
            bar.update(len(batch))
    return [r for r in results if r is not None], len(todo), n_cached


def _coerce_spec(spec_or_path: JobSpec | dict | str | os.PathLike) -> JobSpec:
    if isinstance(spec_or_path, JobSpec):
        return spec_or_path
    if isinstance(spec_or_path, dict):
        return parse_job(spec_or_path)
    return load_job(spec_or_path)


def run_job(
    spec_or_path: JobSpec | dict | str | os.PathLike,
    sinks: Iterable[ResultSink] | None = None,
    progress: bool = True,
) -> JobOutcome:
    """Run a job: every (model, method) pair over every sample, cached and resumable.

    Args:
        spec_or_path: a :class:`JobSpec`, its dict form, or the path of a YAML/JSON job file.
        sinks: where results go; ``None`` = ``[LocalFolderSink(spec.output_dir)]``. A given
            list replaces the default (include a ``LocalFolderSink`` to keep the folder).
        progress: show a progress bar per pair (tqdm, on stderr).

    Returns:
        :class:`JobOutcome` with computed/cached counts per pair and mean metrics.

    Raises:
        SpecError, InputError, ModelLoadError, ...: every sink gets ``end("FAILED")`` first.
        Results of finished batches stay in the cache; re-running resumes.
    """
    from .api import library_versions, resolve_engine

    spec = _coerce_spec(spec_or_path)
    probe = ProbeSet.from_spec(spec.samples)
    if len(probe) == 0:
        raise InputError(f"samples source {spec.samples.source!r} gave no samples")
    if spec.targets == "given":
        missing = [s.id for s in probe if not s.target]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise InputError(
                f"{len(missing)} of {len(probe)} samples have no target (samples.target_field="
                f"{spec.samples.target_field!r}): {shown}. Fill the target column, or set targets: generate "
                "or targets: model:<name> to have a model write them"
            )
    engines = {m: resolve_engine(m, spec.engine) for m in spec.methods}
    cache = ResultCache(spec.cache_dir)
    versions = library_versions()
    sink_list: list[ResultSink] = [LocalFolderSink(spec.output_dir)] if sinks is None else list(sinks)
    gt = {s.id: s.ground_truth for s in probe}

    # the model that writes shared targets goes first, so each model is loaded once
    order = list(spec.models)
    shared_name = spec.target_model
    if shared_name is not None:
        order.sort(key=lambda m: m.name != shared_name)
    outcome = JobOutcome(spec.name, Path(spec.output_dir or ""), "RUNNING", len(probe), probe.fingerprint)
    started: list[ResultSink] = []
    try:
        for s in sink_list:
            s.begin(spec, probe)
            started.append(s)
        shared_targets: list[str] | None = None
        for mspec in order:
            opts = spec.model_options(mspec)
            handle = _ModelHandle(mspec, opts, cache)
            try:
                if spec.targets == "given":
                    targets = [s.target or "" for s in probe]
                    source = "given"
                elif spec.targets == "generate":
                    targets = _generate(handle, probe, opts.max_new_tokens, cache, progress)
                    source = f"generated:{mspec.name}"
                else:
                    if shared_targets is None:  # this is the target model (sorted first)
                        shared_targets = _generate(handle, probe, opts.max_new_tokens, cache, progress)
                    targets = shared_targets
                    source = f"generated:{shared_name}"
                for method in spec.methods:
                    results, n_new, n_cached = _run_pair(
                        handle, method, engines[method], probe, targets, opts, cache, versions, source, progress
                    )
                    logger.info("%s / %s: %d computed, %d cached", mspec.name, method, n_new, n_cached)
                    for s in sink_list:
                        s.write(mspec.name, method, results)
                    outcome.pairs.append(
                        PairOutcome(mspec.name, method, engines[method], n_new, n_cached,
                                    summarize_results(results, gt))
                    )
            finally:
                handle.release()
    except BaseException:
        outcome.status = "FAILED"
        for s in started:
            try:
                s.end("FAILED")
            except Exception:  # noqa: BLE001 - never mask the original error
                logger.exception("sink %r failed to end", s)
        raise
    for s in started:
        s.end("FINISHED")
    outcome.status = "FINISHED"
    rank = {(m.name, meth): (i, j) for i, m in enumerate(spec.models) for j, meth in enumerate(spec.methods)}
    outcome.pairs.sort(key=lambda p: rank[(p.model, p.method)])
    return outcome
