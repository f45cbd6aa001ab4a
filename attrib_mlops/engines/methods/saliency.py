"""Saliency: the absolute gradient of each target's probability w.r.t. the input embeddings.

``|d p(y_j) / d e(x_i)|`` (causal LMs: target token ``y_j``; classifiers: class ``j``)
reduced over the embedding dimension with ``options.dim_aggregation`` (L2 norm by
default, as Inseq does).
"""

from __future__ import annotations

from typing import Any

from ._gradient import GradientMethod

__all__ = ["Saliency"]


class Saliency(GradientMethod):
    """Gradient magnitude (Simonyan et al., 2014) on the input embeddings."""

    name = "saliency"
    order = 10
    description = "absolute gradient of the target probability w.r.t. the input embeddings"

    @staticmethod
    def cell(g: Any, x0: Any) -> Any:
        return g.abs()
