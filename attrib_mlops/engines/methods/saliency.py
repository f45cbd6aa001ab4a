"""Saliency: the absolute gradient of each target token's probability w.r.t. the input embeddings.

``|d p(y_j) / d e(x_i)|`` reduced over the embedding dimension with
``options.dim_aggregation`` (L2 norm by default, as Inseq does).
"""

from __future__ import annotations

from typing import Any

from ..registry import AttributionMethod

__all__ = ["Saliency"]


class Saliency(AttributionMethod):
    """Gradient magnitude (Simonyan et al., 2014) on the input embeddings."""

    name = "saliency"
    engine = "native"
    order = 10
    uses_dim_aggregation = True
    description = "absolute gradient of the target probability w.r.t. the input embeddings"

    def compute(self, run: Any) -> Any:
        from ..native_kernels import gradients

        return gradients(run, lambda g, x0: g.abs())
