"""attrib-mlops: attribution as a tracked signal of model development.

Small public API::

    from attrib_mlops import attribute, list_methods, AttributionResult
    from attrib_mlops import build_training_index, attribute_training_data, compare_continuations
"""

from __future__ import annotations

from .errors import AttribError
from .result import AttributionResult

__version__ = "0.1.0"

__all__ = [
    "attribute",
    "list_methods",
    "AttributionResult",
    "AttribError",
    "__version__",
    "build_training_index",
    "attribute_training_data",
    "compare_continuations",
    "TrainingIndex",
    "TrainingDataAttribution",
]


def __getattr__(name: str):
    # torch and transformers load only when attribution is actually used
    if name in ("attribute", "list_methods"):
        from . import api

        return getattr(api, name)
    if name in ("build_training_index", "attribute_training_data", "compare_continuations"):
        from . import tda_api

        return getattr(tda_api, name)
    if name in ("TrainingIndex", "TrainingDataAttribution"):
        from . import training_data

        return getattr(training_data, name)
    raise AttributeError(f"module 'attrib_mlops' has no attribute {name!r}")
