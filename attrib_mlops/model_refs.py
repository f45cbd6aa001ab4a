"""Model references: a local folder, a hub id, or an MLflow URI (``runs:/``, ``models:/``, ``mlflow-artifacts:/``).

MLflow URIs are downloaded from the tracking store to a local folder first; the
engines then load local folders only (they import no MLflow).

Example:
    >>> is_mlflow_ref("runs:/0a1b/model"), is_mlflow_ref("models/tiny")
    (True, False)
    >>> model, tok, ref = load_model("runs:/0a1b/model")                  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from .errors import ModelLoadError

__all__ = ["MLFLOW_SCHEMES", "is_mlflow_ref", "resolve_model_ref", "load_model"]

MLFLOW_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")


def is_mlflow_ref(ref: Any) -> bool:
    """True for a string that is an MLflow model or artifact URI."""
    return isinstance(ref, (str, os.PathLike)) and str(ref).startswith(MLFLOW_SCHEMES)


def resolve_model_ref(ref: str, *, tracking_uri: str | None = None, dst_dir: str | os.PathLike | None = None) -> str:
    """The local folder of a model reference: MLflow URIs are downloaded (into ``dst_dir``), others returned as is.

    Raises:
        ModelLoadError: the download failed, or the artifact holds no model folder (no config.json).
    """
    ref = str(ref)
    if not is_mlflow_ref(ref):
        return ref
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
