"""The context-source methods (engine ``sources``, kind ``sources``): registered names and descriptions.

They compute through :func:`attrib_mlops.attribute_sources` (jobs: the ``sources`` task kind),
not through a token engine; see :mod:`attrib_mlops.engines.sources_engine`.
"""

from __future__ import annotations

from ..registry import AttributionMethod

__all__ = ["SourceAblation", "SourceAT2", "SourceAttention"]


class SourceAblation(AttributionMethod):
    name, engine, kind, order = "ablation", "sources", "sources", 200
    description = "context sources by random ablations and a sparse linear surrogate (ContextCite)"


class SourceAT2(AttributionMethod):
    name, engine, kind, order = "at2", "sources", "sources", 201
    description = "context sources by a trained attention-weight estimator, one forward (AT2)"


class SourceAttention(AttributionMethod):
    name, engine, kind, order = "attention", "sources", "sources", 202
    description = "context sources by naive attention averaging over heads (AT2's baseline)"
