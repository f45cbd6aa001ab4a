"""MLflow model references (``runs:/``, ``models:/``, ``mlflow-artifacts:/``): parsed and checked in one place.

A reference names something *inside* the tracking store: the artifact path of a
``runs:/<run_id>/<path>`` reference stays inside that run. :func:`check_model_ref` refuses
a reference that could walk out of it or be read another way by another component: a ``..``
or ``.`` segment (also percent-encoded, e.g. ``%2e%2e``), an empty segment (``runs://x``,
``runs:/<id>//etc``: an absolute path), a backslash, or a control character. Every entry
point that loads a model by reference goes through it (the engines' model loader, job specs,
the dashboard's New job form and its worker).

Local folders and hub ids are not MLflow references and are returned unchanged.

Example:
    >>> check_model_ref("runs:/0a1b2c/checkpoint-100")
    'runs:/0a1b2c/checkpoint-100'
    >>> split_runs_uri("runs:/0a1b2c/checkpoint-100/model")
    ('0a1b2c', 'checkpoint-100/model')
    >>> check_model_ref("runs:/0a1b2c/../../..")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    attrib_mlops.errors.InputError: model reference 'runs:/0a1b2c/../../..' has a '..' segment ...
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from .errors import InputError

__all__ = ["MLFLOW_SCHEMES", "is_mlflow_ref", "check_model_ref", "split_runs_uri"]

#: Reference prefixes resolved through MLflow (everything else is a local folder or a hub id).
MLFLOW_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*")
_WHAT_TO_DO = ("give a path inside the run or model, e.g. runs:/<run_id>/checkpoint-100 or "
               "models:/<name>/<version>")


def is_mlflow_ref(ref: object) -> bool:
    """Whether ``ref`` is a string naming something in the tracking store (one of :data:`MLFLOW_SCHEMES`)."""
    return isinstance(ref, str) and ref.startswith(MLFLOW_SCHEMES)


def _bad(ref: str, why: str) -> InputError:
    return InputError(f"model reference {ref!r} {why}; {_WHAT_TO_DO}")


def check_model_ref(ref: str) -> str:
    """Return ``ref`` unchanged when it is safe; raise :class:`~attrib_mlops.errors.InputError` if not.

    Only MLflow references are checked (see the module docstring); any other string is returned as it is.

    Raises:
        InputError: a ``..`` / ``.`` / empty segment, a backslash or a control character, raw or
            percent-encoded; a ``runs:/`` reference without a run id.
    """
    if not is_mlflow_ref(ref):
        return ref
    scheme, _, rest = ref.partition(":/")
    views = [rest]
    decoded = rest
    for _ in range(3):  # %252e%252e decodes twice
        nxt = unquote(decoded)
        if nxt == decoded:
            break
        views.append(nxt)
        decoded = nxt
    for text in views:
        if "\\" in text:
            raise _bad(ref, "has a backslash (artifact paths use '/')")
        if _CONTROL.search(text):
            raise _bad(ref, "has a control character")
        if scheme == "mlflow-artifacts" and text.startswith("/"):
            text = text[1:].partition("/")[2]  # mlflow-artifacts://<host>/<path>
        segments = text.split("/")
        if segments and segments[-1] == "":
            segments = segments[:-1]  # a trailing '/' is harmless
        if not segments:
            raise _bad(ref, "names nothing after the scheme")
        if ".." in segments:
            raise _bad(ref, "has a '..' segment (it would leave the run or model)")
        if "." in segments:
            raise _bad(ref, "has a '.' segment")
        if "" in segments:
            raise _bad(ref, "has an empty path segment (an absolute path such as runs://... or //...)")
    if scheme == "runs" and not _RUN_ID.fullmatch(rest.split("/", 1)[0]):
        raise _bad(ref, "does not start with a run id (letters, digits, '_' or '-')")
    return ref


def split_runs_uri(ref: str) -> tuple[str, str]:
    """``(run_id, artifact_path)`` of a checked ``runs:/<run_id>/<path>`` reference (path may be ``""``)."""
    check_model_ref(ref)
    if not ref.startswith("runs:/"):
        raise InputError(f"{ref!r} is not a runs:/<run_id>/<path> reference")
    run_id, _, path = ref[len("runs:/"):].partition("/")
    return run_id, path.rstrip("/")
