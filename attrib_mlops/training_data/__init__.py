"""Training-data attribution: which training examples drove an output (TracIn-CP, gradient cosine, DataInf).

The compute layer: per-example gradients over a parameter subset at each
checkpoint, a seeded random projection, a float16 safetensors index with a
JSON manifest, and chunked scoring. It imports torch, transformers and
safetensors, never mlflow, tracking or the dashboard (MLflow runs are handled
by :mod:`attrib_mlops.tracking.training_index`).

    from attrib_mlops.training_data import build_training_index, attribute_training_data

Names are imported lazily, so ``import attrib_mlops.training_data`` is cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "build_training_index",
    "attribute_training_data",
    "compare_continuations",
    "TrainingIndex",
    "TrainingDataAttribution",
    "SideBySide",
    "IndexOptions",
    "QueryOptions",
    "METHODS",
]

_WHERE = {
    "build_training_index": "builder",
    "attribute_training_data": "query",
    "compare_continuations": "compare",
    "TrainingIndex": "storage",
    "TrainingDataAttribution": "result",
    "SideBySide": "compare",
    "IndexOptions": "options",
    "QueryOptions": "options",
    "METHODS": "scoring",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
