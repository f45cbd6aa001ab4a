"""Input x gradient: the gradient of each target's probability times the input embedding.

``d p(y_j) / d e(x_i) * e(x_i)`` (causal LMs: target token ``y_j``; classifiers: class
``j``) reduced over the embedding dimension with ``options.dim_aggregation`` (L2 norm by
default, as Inseq does).
"""

from __future__ import annotations

from typing import Any

from ._gradient import GradientMethod

__all__ = ["InputXGradient"]


class InputXGradient(GradientMethod):
    """Gradient times input (Shrikumar et al., 2016) on the input embeddings."""

    name = "input_x_gradient"
    order = 20
    description = "gradient of the target probability times the input embedding"

    @staticmethod
    def cell(g: Any, x0: Any) -> Any:
        return g * x0
