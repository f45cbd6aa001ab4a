"""Exceptions a user can act on.

Every error raised for bad input derives from :class:`AttribError` (itself a
``ValueError``) and says what was wrong, what was expected and what to do.
The CLI turns these into a one-line message and exit code 2, never a traceback.
"""

from __future__ import annotations

__all__ = [
    "AttribError",
    "UnknownMethodError",
    "UnsupportedMethodError",
    "InputError",
    "SpecError",
    "ContextLengthError",
    "ModelLoadError",
    "UnsupportedModelError",
]


class AttribError(ValueError):
    """Base class for user-actionable errors in attrib-mlops."""


class UnknownMethodError(AttribError):
    """A method name that no engine knows."""


class UnsupportedMethodError(AttribError):
    """A method the chosen engine does not implement."""


class InputError(AttribError):
    """Bad prompts, targets or samples."""


class SpecError(AttribError):
    """A job spec or policy file that does not validate."""


class ContextLengthError(InputError):
    """Prompt plus target longer than the model's context window."""


class ModelLoadError(AttribError):
    """A model or tokenizer reference that cannot be loaded."""


class UnsupportedModelError(InputError):
    """A model whose head attrib-mlops cannot attribute (neither causal LM nor sequence classifier)."""
