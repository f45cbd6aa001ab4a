"""The ``sources`` engine: context-source methods in the method registry (kind ``sources``).

``ablation`` (ContextCite-style ablations and a sparse surrogate), ``at2`` (a trained
attention estimator) and ``attention`` (naive attention averaging) return
:class:`~attrib_mlops.sources.result.SourceAttribution` objects, not token matrices, so
they run through :func:`attrib_mlops.attribute_sources` and the job runner's ``sources``
task kind; registering them here lets ``list_methods()``, the CLI, job validation and the
dashboard's job form list them like every other method (the classes are in
:mod:`attrib_mlops.engines.methods.sources`). No torch at import time.

Example:
    >>> from attrib_mlops.api import list_methods
    >>> list_methods()["sources"]
    ['ablation', 'at2', 'attention']
"""

from __future__ import annotations

from typing import Any

from ..errors import UnsupportedMethodError
from .base import Engine, register_engine
from .registry import method_names

__all__ = ["SourcesEngine"]


@register_engine
class SourcesEngine(Engine):
    """Lists the source methods; their results come from :func:`attrib_mlops.attribute_sources`."""

    name = "sources"

    def methods(self) -> list[str]:
        return method_names(self.name)

    def attribute(self, model: Any, tokenizer: Any, samples: list, method: str, options: Any,
                  model_ref: str) -> list:
        raise UnsupportedMethodError(
            f"{method!r} is a context-source method: its results are per-source scores, not token matrices. "
            "Call attrib_mlops.attribute_sources(...) or run it in a job (attrib-mlops run)")
