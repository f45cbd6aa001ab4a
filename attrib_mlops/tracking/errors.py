"""Errors of the tracking layer (writer, reader, artifact layout).

All derive from :class:`~attrib_mlops.errors.AttribError`, so the CLI reports
them as one line. Each message names the run and, where it applies, the
artifact file and what was wrong with it.
"""

from __future__ import annotations

from attrib_mlops.errors import AttribError

__all__ = ["TrackingError", "SchemaVersionError", "TrackingUnavailableError"]


class TrackingError(AttribError):
    """An attribution artifact that cannot be written or read (missing, corrupt or foreign)."""


class SchemaVersionError(TrackingError):
    """A run written with a newer storage schema than this reader understands."""


class TrackingUnavailableError(TrackingError):
    """The tracking server could not be reached (raised only by a ``strict=True`` writer)."""
