"""LIME through Captum: a ridge surrogate fitted on random token drops (causal LMs and classifiers).

The captum engine (:mod:`attrib_mlops.engines.captum_engine`) runs it; see there for
the perturbation, the kernel and ``method_kwargs``.
"""

from __future__ import annotations

from ..registry import CAUSAL_LM, CLASSIFIER, AttributionMethod

__all__ = ["Lime"]


class Lime(AttributionMethod):
    """LIME (Ribeiro et al., 2016), one interpretable feature per token."""

    name = "lime"
    engine = "captum"
    order = 60
    model_kinds = (CAUSAL_LM, CLASSIFIER)
    description = "LIME surrogate (ridge) on token drops, through Captum"
