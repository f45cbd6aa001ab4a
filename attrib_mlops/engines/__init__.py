"""Attribution engines: ``native`` (batched fast path), ``inseq`` (full catalogue), ``captum`` (LIME, KernelSHAP).

Importing this package imports no torch: engines load on first use
(:func:`get_engine`), and the method registry (:mod:`.registry`) lists methods
without loading their code.
"""

from __future__ import annotations

from typing import Any

from .base import Engine, engine_names, get_engine, register_engine
from .registry import AttributionMethod, get_method, method_classes, method_names

__all__ = ["Engine", "engine_names", "get_engine", "register_engine", "NativeEngine", "InseqEngine", "CaptumEngine",
           "AttributionMethod", "get_method", "method_classes", "method_names"]


def __getattr__(name: str) -> Any:
    if name == "NativeEngine":
        from .native import NativeEngine

        return NativeEngine
    if name == "InseqEngine":
        from .inseq_engine import InseqEngine

        return InseqEngine
    if name == "CaptumEngine":
        from .captum_engine import CaptumEngine

        return CaptumEngine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
