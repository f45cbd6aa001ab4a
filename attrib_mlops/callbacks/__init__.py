"""Training hooks: the HF ``Trainer`` callback and a monitor for plain PyTorch loops."""

from __future__ import annotations

from .base import AttributionMonitor, normalize_probe

__all__ = ["AttributionCallback", "AttributionMonitor", "TrainingIndexCallback", "TrainingIndexMonitor",
           "normalize_probe"]


def __getattr__(name: str):
    if name == "AttributionCallback":  # imports transformers only when used
        from .hf import AttributionCallback

        return AttributionCallback
    if name == "TrainingIndexCallback":
        from .training_data_hf import TrainingIndexCallback

        return TrainingIndexCallback
    if name == "TrainingIndexMonitor":
        from .training_data import TrainingIndexMonitor

        return TrainingIndexMonitor
    raise AttributeError(name)
