"""KernelSHAP through Captum: Shapley-kernel weighted regression on token drops (causal LMs and classifiers).

The captum engine (:mod:`attrib_mlops.engines.captum_engine`) runs it; see there for
the perturbation and ``method_kwargs``.
"""

from __future__ import annotations

from ..registry import CAUSAL_LM, CLASSIFIER, AttributionMethod

__all__ = ["KernelShap"]


class KernelShap(AttributionMethod):
    """KernelSHAP (Lundberg and Lee, 2017), one interpretable feature per token."""

    name = "kernel_shap"
    engine = "captum"
    order = 70
    model_kinds = (CAUSAL_LM, CLASSIFIER)
    description = "Shapley values estimated by KernelSHAP on token drops, through Captum"
