"""Attribution engines: ``native`` (batched fast path), ``inseq`` (full catalogue), ``captum`` (LIME, KernelSHAP)."""

from __future__ import annotations

from .base import Engine, engine_names, get_engine, register_engine
from .captum_engine import CaptumEngine
from .inseq_engine import InseqEngine
from .native import NativeEngine

register_engine(NativeEngine)
register_engine(InseqEngine)
register_engine(CaptumEngine)

__all__ = ["Engine", "engine_names", "get_engine", "register_engine", "NativeEngine", "InseqEngine", "CaptumEngine"]
