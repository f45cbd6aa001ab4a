"""AT2: a one-forward source attributor learned from attention weights (per model and checkpoint).

Seed: Cohen-Wang, Chuang and Madry, "Learning to Attribute with Attention"
(2025). A linear estimator over attention weights (one weight per layer and
head) is trained to predict the effect of ablating sources, measured by the
ablation engine of :mod:`attrib_mlops.sources`; it then attributes unseen
examples at the cost of one forward pass.

* :mod:`.features`: attention from the target to each source, per layer and head;
* :mod:`.estimator`: :class:`SourceEstimator` (weights, provenance, save/load);
* :mod:`.train`: :func:`train_source_estimator` (AT2's recipe);
* :mod:`.attribute`: ``attribute_sources(..., method="at2" | "attention")``;
* :mod:`.quality`: LDS, within-example Pearson, paired LDS, top-1 agreement;
* :mod:`.topk`: top-k log-probability drop of a ranking.

Compute layer: no tracking, MLflow or dashboard imports (an MLflow URI given to
:meth:`SourceEstimator.load` is resolved by :mod:`attrib_mlops.tracking.estimators`).
"""

from __future__ import annotations

__all__ = [
    "SourceEstimator",
    "EstimatorMismatchError",
    "train_source_estimator",
    "attribute_at2",
    "source_features",
    "AT2TrainOptions",
    "AT2Options",
]

_WHERE = {
    "SourceEstimator": "estimator",
    "EstimatorMismatchError": "estimator",
    "train_source_estimator": "train",
    "attribute_at2": "attribute",
    "source_features": "features",
    "AT2TrainOptions": "options",
    "AT2Options": "options",
}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        mod = importlib.import_module(f"{__name__}.{_WHERE[name]}")
        return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
