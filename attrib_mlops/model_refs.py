"""Model references: a local folder, a hub id, or an MLflow URI (``runs:/``, ``models:/``, ``mlflow-artifacts:/``).

MLflow URIs are checked, then downloaded from the tracking store to a local
folder; the engines load local folders only (they import no MLflow).

A reference names something *inside* the tracking store: the artifact path of a
``runs:/<run_id>/<path>`` reference stays inside that run. :func:`check_model_ref` refuses
a reference that could walk out of it or be read another way by another component: a ``..``
or ``.`` segment (also percent-encoded, e.g. ``%2e%2e``), an empty segment (``runs://x``,
``runs:/<id>//etc``: an absolute path), a backslash, or a control character. Every entry
point that loads a model by reference goes through it (:func:`load_model`, job specs,
the dashboard's New job form).

Example:
    >>> is_mlflow_ref("runs:/0a1b/model"), is_mlflow_ref("models/tiny")
    (True, False)
    >>> check_model_ref("runs:/0a1b2c/checkpoint-100")
    'runs:/0a1b2c/checkpoint-100'
    >>> split_runs_uri("runs:/0a1b2c/checkpoint-100/model")
    ('0a1b2c', 'checkpoint-100/model')
    >>> check_model_ref("runs:/0a1b2c/../../..")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    attrib_mlops.errors.InputError: model reference 'runs:/0a1b2c/../../..' has a '..' segment ...
    >>> model, tok, ref = load_model("runs:/0a1b/model")                  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any
from urllib.parse import unquote

from .errors import InputError, ModelLoadError

__all__ = ["MLFLOW_SCHEMES", "is_mlflow_ref", "check_model_ref", "split_runs_uri", "resolve_model_ref", "load_model"]

MLFLOW_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")


def is_mlflow_ref(ref: Any) -> bool:
    """True for a string that is an MLflow model or artifact URI."""
    return isinstance(ref, (str, os.PathLike)) and str(ref).startswith(MLFLOW_SCHEMES)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*")
_WHAT_TO_DO = ("give a path inside the run or model, e.g. runs:/<run_id>/checkpoint-100 or "
               "models:/<name>/<version>")


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


def resolve_model_ref(ref: str, *, tracking_uri: str | None = None, dst_dir: str | os.PathLike | None = None) -> str:
    """The local folder of a model reference: MLflow URIs are downloaded (into ``dst_dir``), others returned as is.

    Raises:
        InputError: the reference would leave its run or model (see :func:`check_model_ref`).
        ModelLoadError: the download failed, or the artifact holds no model folder (no config.json).
    """
    ref = str(ref)
    if not is_mlflow_ref(ref):
        return ref
    check_model_ref(ref)  # before anything is downloaded
    try:
        import mlflow
    except ImportError as e:  # pragma: no cover
        raise ModelLoadError(f"'{ref}' is an MLflow URI but mlflow is not installed") from e
    dst = tempfile.mkdtemp(prefix="attrib-mlops-model-", dir=dst_dir)
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=ref, dst_path=dst, tracking_uri=tracking_uri)
    except Exception as e:  # noqa: BLE001 - mlflow raises many types
        raise ModelLoadError(f"could not download model '{ref}' from MLflow: {e}") from e
    for root, _dirs, files in os.walk(local):
        if "config.json" in files:
            return root
    raise ModelLoadError(f"MLflow artifact '{ref}' holds no Hugging Face model folder (no config.json found)")


def load_model(model: Any, tokenizer: Any = None, options: Any = None, *, tracking_uri: str | None = None,
               dst_dir: str | os.PathLike | None = None) -> tuple[Any, Any, str]:
    """:func:`~attrib_mlops.engines.prep.load_model_and_tokenizer` after resolving an MLflow URI.

    Returns ``(model, tokenizer, model_ref)``; ``model_ref`` is the reference as given.
    """
    from .engines.prep import load_model_and_tokenizer

    if not is_mlflow_ref(model):
        return load_model_and_tokenizer(model, tokenizer, options)
    loaded, tok, _ = load_model_and_tokenizer(resolve_model_ref(model, tracking_uri=tracking_uri, dst_dir=dst_dir),
                                             tokenizer, options)
    return loaded, tok, str(model)
