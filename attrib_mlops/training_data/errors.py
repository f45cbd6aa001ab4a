"""Errors of training-data attribution a user can act on.

All derive from :class:`~attrib_mlops.errors.AttribError` (a ``ValueError``), so
the CLI reports them as one line with exit code 2. Each message says what was
wrong and what to do.
"""

from __future__ import annotations

from attrib_mlops.errors import AttribError, InputError

__all__ = [
    "TrainingIndexError",
    "IndexMismatchError",
    "TrainDataMismatchError",
    "MissingLearningRateError",
    "CheckpointError",
    "NoTrainingIndexError",
    "TargetTokenError",
]


class TrainingIndexError(AttribError):
    """A training-data index that cannot be written, read or used."""


class IndexMismatchError(TrainingIndexError):
    """An index built for another model, parameter subset, tokenizer or projection."""


class TrainDataMismatchError(TrainingIndexError):
    """A training set whose fingerprint differs from the one the index was built on."""


class MissingLearningRateError(TrainingIndexError):
    """A checkpoint with no recorded learning rate (TracIn-CP needs one per checkpoint)."""


class CheckpointError(TrainingIndexError):
    """A checkpoint folder or URI that cannot be read (no safetensors weights, missing weights)."""


class NoTrainingIndexError(TrainingIndexError):
    """A run or folder that holds no training-data index."""


class TargetTokenError(InputError):
    """Selected target tokens outside the target."""
