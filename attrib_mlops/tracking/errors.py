"""Errors of the tracking layer (writer, reader, artifact layout).

All derive from :class:`~attrib_mlops.errors.AttribError`, so the CLI reports
them as one line. Each message names the run and, where it applies, the
artifact file and what was wrong with it.
"""

from __future__ import annotations

from typing import Any

from attrib_mlops.errors import AttribError

__all__ = [
    "TrackingError",
    "SchemaVersionError",
    "TrackingUnavailableError",
    "IntegrityError",
    "is_unreachable",
    "newer_schema",
    "is_tracking_failure",
]


class TrackingError(AttribError):
    """An attribution artifact that cannot be written or read (missing, corrupt or foreign)."""


class SchemaVersionError(TrackingError):
    """A run written with a newer storage schema than this reader understands."""


class IntegrityError(TrackingError):
    """An artifact file whose bytes no longer match the content hash recorded when it was logged."""


class TrackingUnavailableError(TrackingError):
    """The tracking server could not be reached (raised only by a ``strict=True`` writer)."""


def newer_schema(where: str, version: Any, who: str = "reader") -> SchemaVersionError:
    """The error for ``where`` (a run, a file) written with a newer storage schema than this ``who`` knows."""
    from attrib_mlops.tracking.layout import SCHEMA_VERSION

    return SchemaVersionError(f"{where} was written with schema v{version}; this {who} understands up to "
                              f"v{SCHEMA_VERSION}; upgrade attrib-mlops")


def _exc_chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


_UNREACHABLE_MESSAGES = (
    "Max retries exceeded",
    "Connection refused",
    "timed out",
    "Name or service not known",
    "Response code 50",
    "API request to",
)


def is_unreachable(exc: BaseException) -> bool:
    """A connection-level failure (refused, timeout, DNS, 5xx gateway) rather than a logical error.

    Looks through the exception's cause/context chain, since MLflow wraps the
    ``requests`` error in its own exception.
    """
    try:
        import requests

        net: tuple = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    except ImportError:  # pragma: no cover
        net = ()
    for e in _exc_chain(exc):
        if isinstance(e, (ConnectionError, TimeoutError, *net)):
            return True
        if any(s in str(e) for s in _UNREACHABLE_MESSAGES):
            return True
        if getattr(e, "error_code", None) == "TEMPORARILY_UNAVAILABLE":
            return True
    return False


def is_tracking_failure(exc: BaseException) -> bool:
    """An error that keeps a step in the spool (MLflow, network, file system), not a programming error."""
    from mlflow.exceptions import MlflowException

    try:
        import requests

        req: tuple = (requests.exceptions.RequestException,)
    except ImportError:  # pragma: no cover
        req = ()
    if isinstance(exc, SchemaVersionError):
        return False
    return isinstance(exc, (MlflowException, OSError, *req)) or is_unreachable(exc)
