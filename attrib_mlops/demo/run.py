"""Moved: the demo runner is :mod:`attrib_mlops.demo_runner` (an entry point next to the CLI).

This module keeps ``from attrib_mlops.demo.run import run_demo`` working. It imports
nothing at import time, so the :mod:`attrib_mlops.demo` package stays below the
layers the runner uses (callbacks, tracking).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DemoConfig", "run_demo", "EXPERIMENT"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        import importlib

        return getattr(importlib.import_module("attrib_mlops.demo_runner"), name)
    raise AttributeError(name)
