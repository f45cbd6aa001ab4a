"""Executors: where the work units of a job are computed (in this process today).

The runner (:mod:`attrib_mlops.jobs.runner`) plans the work and owns the cache, the
sinks and the progress; an :class:`Executor` only computes. A work unit is one
``(model, method, batch of samples)``; the runner asks for the units that the cache
does not hold and writes each one's results to the cache as soon as it comes back,
so an executor may return units in any order and from anywhere. A distributed
executor (e.g. Ray: one task per unit, models loaded on the workers) implements the
same four methods; nothing else in the job layer changes.

Example:
    >>> ex = LocalExecutor()                                                       # doctest: +SKIP
    >>> ex.open(ModelSpec(name="tiny", ref="models/tiny"), AttributeOptions())     # doctest: +SKIP
    >>> for unit, results in ex.map(units): ...                                     # doctest: +SKIP
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .._util import content_hash
from ..errors import AttribError, InputError
from ..options import AttributeOptions
from .cache import CACHE_FORMAT, ResultCache, model_fingerprint, tokenizer_fingerprint
from .kinds import run_unit
from .spec import ModelSpec

logger = logging.getLogger(__name__)

__all__ = ["WorkUnit", "Executor", "LocalExecutor", "ModelLoader"]

#: ``loader(model_spec, options) -> (model, tokenizer)``; the default loads ``spec.ref`` / ``spec.tokenizer``.
ModelLoader = Callable[[ModelSpec, AttributeOptions], tuple[Any, Any]]


@dataclass
class WorkUnit:
    """One batch of samples for one (model, method): what an executor computes.

    Attributes:
        model: the model's name (opened with :meth:`Executor.open`).
        method, engine, kind: the method, the engine that runs it and its attribution kind.
        indices: positions of the samples in the probe set.
        prompts, targets, sample_ids: the samples' inputs, aligned with ``indices``.
        options: the attribution options of this model.
        extras: per-sample inputs of the kind beyond prompt and target (``TaskKind.key_extra``), or None.
    """

    model: str
    method: str
    engine: str
    kind: str
    indices: list[int]
    prompts: list[str]
    targets: list[str]
    sample_ids: list[str]
    options: AttributeOptions = field(default_factory=AttributeOptions)
    extras: list[dict[str, Any]] | None = None


@runtime_checkable
class Executor(Protocol):
    """Computes work units. The runner calls ``open`` once per model before anything else of that
    model, then ``fingerprints``/``generate``/``map`` as needed, then ``release``."""

    def open(self, model: ModelSpec, options: AttributeOptions) -> None:
        """Make the model available (loading may wait until it is needed)."""

    def fingerprints(self, model: str) -> tuple[str, str]:
        """``(model fingerprint, tokenizer fingerprint)`` of an opened model (content hashes)."""

    def generate(self, model: str, prompt: str, max_new_tokens: int) -> str:
        """The model's greedy continuation of ``prompt``."""

    def model_kind(self, model: str) -> str:
        """``"classifier"`` or ``"causal_lm"`` (picks the engine of ``engine: auto``; may load the model)."""

    def map(self, units: Iterable[WorkUnit]) -> Iterator[tuple[WorkUnit, list[Any]]]:
        """Compute the units; yield each with its results (one per sample, in order) as it completes."""

    def release(self, model: str) -> None:
        """The runner is done with the model."""


def _default_loader(spec: ModelSpec, options: AttributeOptions) -> tuple[Any, Any]:
    from ..model_refs import load_model

    model, tok, _ = load_model(spec.ref, spec.tokenizer, options)
    return model, tok


class _ModelHandle:
    """A job's model: loaded lazily (once), fingerprinted (memoized for local folders), released."""

    def __init__(self, spec: ModelSpec, options: AttributeOptions, cache: ResultCache | None, loader: ModelLoader):
        self.spec, self.options, self.cache, self.loader = spec, options, cache, loader
        self._model: Any = None
        self._tok: Any = None
        self._fps: tuple[str, str] | None = None

    def get(self) -> tuple[Any, Any]:
        if self._model is None:
            logger.info("loading model %s from %s", self.spec.name, self.spec.ref)
            self._model, self._tok = self.loader(self.spec, self.options)
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
        return content_hash({"format": CACHE_FORMAT, "refs": listing, "dtype": self.options.dtype,
                             "trust_remote_code": self.options.trust_remote_code})

    def fingerprints(self) -> tuple[str, str]:
        if self._fps is None:
            memo = self._memo_key() if self.cache is not None else None
            d = self.cache.get_json("fingerprints", memo) if memo else None
            if isinstance(d, dict) and "model" in d and "tokenizer" in d:
                self._fps = (d["model"], d["tokenizer"])
            else:
                self._fps = self._compute_fingerprints()
                if memo:
                    self.cache.put_json("fingerprints", memo, {"model": self._fps[0], "tokenizer": self._fps[1],
                                                               "ref": self.spec.ref})
        return self._fps

    def model_kind(self) -> str:
        """``"classifier"`` or ``"causal_lm"`` (loads the model)."""
        from ..engines.classifier_prep import model_kind

        return model_kind(self.get()[0])

    def _compute_fingerprints(self) -> tuple[str, str]:
        """Hash the loaded model and tokenizer (a remote executor overrides this to hash on a worker)."""
        model, tok = self.get()
        return model_fingerprint(model), tokenizer_fingerprint(tok)

    def release(self) -> None:
        if self._model is not None:
            self._model = self._tok = None
            gc.collect()


class LocalExecutor:
    """Computes every unit in this process, one after the other, each model loaded once.

    Args:
        cache: where model fingerprints of local folders are memoized (None: not memoized).
        loader: how a model is loaded (default: from ``spec.ref``, see
            :func:`~attrib_mlops.model_refs.load_model`, MLflow URIs included).
    """

    def __init__(self, cache: ResultCache | None = None, loader: ModelLoader | None = None):
        self.cache = cache
        self.loader = loader or _default_loader
        self._handles: dict[str, _ModelHandle] = {}

    def open(self, model: ModelSpec, options: AttributeOptions) -> None:
        self._handles[model.name] = _ModelHandle(model, options, self.cache, self.loader)

    def fingerprints(self, model: str) -> tuple[str, str]:
        return self._handles[model].fingerprints()

    def generate(self, model: str, prompt: str, max_new_tokens: int) -> str:
        from ..engines.prep import context_limit, generate_targets

        m, tok = self._handles[model].get()
        return generate_targets(m, tok, [prompt], max_new_tokens, context_limit(m))[0]

    def model_kind(self, model: str) -> str:
        return self._handles[model].model_kind()

    def map(self, units: Iterable[WorkUnit]) -> Iterator[tuple[WorkUnit, list[Any]]]:
        for unit in units:
            m, tok = self._handles[unit.model].get()
            out = run_unit(m, tok, unit)
            if len(out) != len(unit.indices):
                raise RuntimeError(f"attribute returned {len(out)} results for a batch of {len(unit.indices)}")
            yield unit, out

    def release(self, model: str) -> None:
        handle = self._handles.pop(model, None)
        if handle is not None:
            handle.release()


def generation_error(model: str, sample_id: str, err: AttribError) -> InputError:
    """The error of a failed generation, naming the model and the sample."""
    return InputError(f"model {model!r}, sample {sample_id!r}: {err}")
