"""Base of the gradient methods: a subclass says what one cell's vector is (``cell``), the kernels do the rest.

Not a method itself (no ``name``), and a module starting with ``_`` is not listed
as one. Both model kinds run the same ``cell``: causal LMs through
:func:`~attrib_mlops.engines.native_kernels.gradients`, classifiers through
:func:`~attrib_mlops.engines.classifier_kernels.gradients`.
"""

from __future__ import annotations

from typing import Any

from ..registry import CAUSAL_LM, CLASSIFIER, AttributionMethod

__all__ = ["GradientMethod"]


class GradientMethod(AttributionMethod):
    """A method whose cell is a function of the gradient and the input embeddings, reduced over the embedding dim."""

    engine = "native"
    uses_dim_aggregation = True
    model_kinds = (CAUSAL_LM, CLASSIFIER)

    @staticmethod
    def cell(g: Any, x0: Any) -> Any:
        """One cell's vector from the gradient ``g`` [N, L, D] and the input embeddings ``x0`` [N, L, D]."""
        raise NotImplementedError

    def compute(self, run: Any) -> Any:
        from ..native_kernels import gradients

        return gradients(run, self.cell)

    def compute_classifier(self, run: Any) -> Any:
        from ..classifier_kernels import gradients

        return gradients(run, self.cell)
