"""Attribution engines: ``native`` (batched fast path) and ``inseq`` (full catalogue).

Importing this package imports no torch: engines load on first use
(:func:`get_engine`), and the method registry (:mod:`.registry`) lists methods
without loading their code.
"""

from __future__ import annotations

from typing import Any

from .base import Engine, engine_names, get_engine, register_engine
from .registry import AttributionMethod, get_method, method_classes, method_names

__all__ = ["Engine", "engine_names", "get_engine", "register_engine", "NativeEngine", "InseqEngine",
           "AttributionMethod", "get_method", "method_classes", "method_names"]


def __getattr__(name: str) -> Any:
    if name == "NativeEngine":
        from .native import NativeEngine

        return NativeEngine
    if name == "InseqEngine":
        from .inseq_engine import InseqEngine

        return InseqEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
