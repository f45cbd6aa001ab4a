"""Task kinds: what a job does for a method of one attribution kind (one class per kind).

The runner is the same for every kind; what differs lives in a :class:`TaskKind`:
how one batch of samples is attributed, how a result is stored in the cache (its
JSON codec) and which extra inputs make its cache key. A method's kind comes from
the method registry (:attr:`~attrib_mlops.engines.registry.AttributionMethod.kind`;
Inseq's methods are token matrices). Sinks receive each kind's results as they are
(``write(model, method, results)``) and store them in that kind's format.

Adding a kind to jobs: one module in this package (``token_matrix.py`` is the model) with
a subclass of :class:`TaskKind` whose ``name`` is the kind's name; modules are discovered,
and the class registers itself. Copy ``tests/jobs/test_kinds.py``.

Example:
    >>> task_kind("token_matrix").name
    'token_matrix'
    >>> method_kind("saliency", "native")
    'token_matrix'
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence
from typing import Any, ClassVar

from ...analysis.registry import TOKEN_MATRIX
from ...errors import InputError
from ...options import AttributeOptions

__all__ = ["TaskKind", "task_kind", "task_kind_names", "method_kind", "load_task_kinds", "run_unit"]

_TASKS: dict[str, type[TaskKind]] = {}
_LOADED: list[bool] = []


class TaskKind:
    """How jobs handle the results of one attribution kind (subclasses with a ``name`` register themselves)."""

    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            _TASKS[cls.name] = cls

    def attribute(self, model: Any, tokenizer: Any, prompts: Sequence[str], targets: Sequence[str], method: str,
                  engine: str, sample_ids: Sequence[str], options: AttributeOptions) -> list[Any]:
        """Attribute one batch: one result per prompt, in order.

        A kind whose :meth:`key_extra` returns per-sample inputs also takes ``extras=`` (those dicts,
        aligned with ``prompts``; see :func:`run_unit`).
        """
        raise NotImplementedError

    def bind(self, spec: Any, method: str | None = None) -> TaskKind:
        """Called by the runner with the job spec and the method before :meth:`key_extra` (default: nothing)."""
        return self

    def encode(self, result: Any) -> dict[str, Any]:
        """JSON form of one result (for the cache)."""
        return result.to_dict()

    def decode(self, data: dict[str, Any]) -> Any:
        """A result from :meth:`encode`'s output."""
        raise NotImplementedError

    def annotate(self, result: Any, sample: Any) -> None:
        """Add what the sample knows beyond the model's inputs to a result (after the cache; default: nothing)."""

    def summarize(self, results: list[Any], ground_truth: dict[str, Any], k: int = 3) -> dict[str, float | None]:
        """Mean metrics of one (model, method) for the job summary (default: the token-matrix ones)."""
        from ...analysis.summary import summarize_results

        return summarize_results(results, ground_truth, k=k)

    def key_extra(self, sample: Any) -> dict[str, Any]:
        """Inputs of a sample beyond prompt and target that determine its result (part of the cache key)."""
        return {}


def run_unit(model: Any, tokenizer: Any, unit: Any) -> list[Any]:
    """Attribute one work unit with its kind; per-sample ``unit.extras`` go along to a kind whose
    ``attribute`` takes ``extras``."""
    import inspect

    task = task_kind(unit.kind)
    kw = {}
    if getattr(unit, "extras", None) and any(unit.extras) and "extras" in inspect.signature(task.attribute).parameters:
        kw["extras"] = unit.extras
    return task.attribute(model, tokenizer, unit.prompts, unit.targets, unit.method, unit.engine, unit.sample_ids,
                          unit.options, **kw)


def load_task_kinds() -> None:
    """Import every module of this package once (each defines one task kind, which registers itself)."""
    if _LOADED:
        return
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    _LOADED.append(True)


def task_kind(name: str) -> TaskKind:
    """The task kind registered as ``name``; the error lists the valid ones."""
    load_task_kinds()
    if name not in _TASKS:
        raise InputError(f"jobs cannot run methods of kind {name!r} yet; kinds: {', '.join(task_kind_names())}")
    return _TASKS[name]()


def task_kind_names() -> list[str]:
    load_task_kinds()
    return list(_TASKS)


def method_kind(method: str, engine: str) -> str:
    """The attribution kind of ``method`` run by ``engine`` (registered class, else a token matrix).

    An engine named after a task kind (``training_data``) runs that kind's methods.
    """
    from ...engines.registry import method_classes

    load_task_kinds()
    if engine in _TASKS:
        return engine
    for cls in method_classes(engine):
        if cls.name == method:
            return cls.kind
    return TOKEN_MATRIX
