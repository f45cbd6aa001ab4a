"""Attribution engines: ``native`` (batched fast path) and ``inseq`` (full catalogue)."""

from __future__ import annotations

from .base import Engine, engine_names, get_engine, register_engine
from .inseq_engine import InseqEngine
from .native import NativeEngine

register_engine(NativeEngine)
register_engine(InseqEngine)

__all__ = ["Engine", "engine_names", "get_engine", "register_engine", "NativeEngine", "InseqEngine"]
