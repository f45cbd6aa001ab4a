"""attrib-mlops: attribution as a tracked signal of model development.

Small public API (names load lazily: torch and transformers are imported only
when attribution is actually used)::

    from attrib_mlops import attribute, list_methods, AttributionResult          # token matrices
    from attrib_mlops import attribute_sources, SourceAttribution                # context sources
    from attrib_mlops import train_source_estimator, SourceEstimator            # AT2
    from attrib_mlops import build_training_index, attribute_training_data      # training data
    from attrib_mlops import compare_continuations, TrainingIndex, TrainingDataAttribution
"""

from __future__ import annotations

import importlib

from .errors import AttribError
from .result import AttributionResult

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "attribute": "api",
    "list_methods": "api",
    "attribute_sources": "sources.api",
    "SourceAttribution": "sources.result",  # numpy only: no torch import
    "train_source_estimator": "sources.at2.train",
    "SourceEstimator": "sources.at2.estimator",
    "build_training_index": "tda_api",
    "attribute_training_data": "tda_api",
    "compare_continuations": "tda_api",
    "TrainingIndex": "training_data",
    "TrainingDataAttribution": "training_data",
}

__all__ = ["AttributionResult", "AttribError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'attrib_mlops' has no attribute {name!r}")
