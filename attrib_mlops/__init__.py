"""attrib-mlops: attribution as a tracked signal of model development.

Small public API::

    from attrib_mlops import attribute, list_methods, AttributionResult
    from attrib_mlops import attribute_sources, SourceAttribution
"""

from __future__ import annotations

from .errors import AttribError
from .result import AttributionResult

__version__ = "0.1.0"

__all__ = [
    "attribute",
    "list_methods",
    "attribute_sources",
    "AttributionResult",
    "SourceAttribution",
    "AttribError",
    "__version__",
]
__all__ += ["train_source_estimator", "SourceEstimator"]  # AT2 (attrib_mlops.sources.at2)

_AT2 = {"train_source_estimator": "train", "SourceEstimator": "estimator"}


def __getattr__(name: str):
    # torch and transformers load only when attribution is actually used
    if name in ("attribute", "list_methods"):
        from . import api

        return getattr(api, name)
    if name in _AT2:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.sources.at2.{_AT2[name]}"), name)
    if name == "attribute_sources":
        from .sources.api import attribute_sources

        return attribute_sources
    if name == "SourceAttribution":  # numpy only: no torch import
        from .sources.result import SourceAttribution

        return SourceAttribution
    raise AttributeError(f"module 'attrib_mlops' has no attribute {name!r}")
