"""Input x gradient: the gradient of each target token's probability times the input embedding.

``d p(y_j) / d e(x_i) * e(x_i)`` reduced over the embedding dimension with
``options.dim_aggregation`` (L2 norm by default, as Inseq does).
"""

from __future__ import annotations

from typing import Any

from ..registry import AttributionMethod

__all__ = ["InputXGradient"]


class InputXGradient(AttributionMethod):
    """Gradient times input (Shrikumar et al., 2016) on the input embeddings."""

    name = "input_x_gradient"
    engine = "native"
    order = 20
    uses_dim_aggregation = True
    description = "gradient of the target probability times the input embedding"

    def compute(self, run: Any) -> Any:
        from ..native_kernels import gradients

        return gradients(run, lambda g, x0: g * x0)
