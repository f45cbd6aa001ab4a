"""Engine interface and the tiny registry that names them.

An engine turns encoded samples into :class:`~attrib_mlops.result.AttributionResult`
objects for one method. Engines never import tracking or the dashboard. The
methods an engine implements are registered classes (:mod:`.registry`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ..errors import AttribError
from ..options import AttributeOptions
from ..result import AttributionResult

__all__ = ["Engine", "register_engine", "get_engine", "engine_names"]


class Engine(ABC):
    """Computes attributions for one method over a list of encoded samples."""

    name: str = ""

    @abstractmethod
    def methods(self) -> list[str]:
        """Method names this engine implements."""

    @abstractmethod
    def attribute(
        self,
        model: Any,
        tokenizer: Any,
        samples: list,
        method: str,
        options: AttributeOptions,
        model_ref: str,
    ) -> list[AttributionResult]:
        """One result per sample, in order."""

    def supports(self, method: str) -> bool:
        return method in self.methods()


_REGISTRY: dict[str, type[Engine]] = {}
_INSTANCES: dict[str, Engine] = {}


def register_engine(cls: type[Engine]) -> type[Engine]:
    """Class decorator: make an engine available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin() -> None:
    """Import the built-in engine modules (each registers its engine with :func:`register_engine`)."""
    from . import captum_engine, inseq_engine, native, sources_engine  # noqa: F401


def engine_names() -> list[str]:
    """Names of the registered engines."""
    _load_builtin()
    return sorted(_REGISTRY)


def get_engine(name: str) -> Engine:
    """The engine registered under ``name``; the error lists the valid names."""
    _load_builtin()
    if name not in _REGISTRY:
        raise AttribError(f"unknown engine {name!r}; valid engines: {', '.join(engine_names() + ['auto'])}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _REGISTRY[name]()
    return _INSTANCES[name]
