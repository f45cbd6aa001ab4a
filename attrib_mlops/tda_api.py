"""The Python API of training-data attribution (entry layer: run ids resolve through MLflow).

    import attrib_mlops
    index = attrib_mlops.build_training_index("out/checkpoints", tok, train_rows, out_dir="out/index")
    res = attrib_mlops.attribute_training_data(index, model, tok, "k3 = v1 ; ? k3", " v1")
    res.top(5)["positive"]

The compute happens in :mod:`attrib_mlops.training_data`; this module only adds
what needs the tracking layer: an ``index`` given as an MLflow run id (or
``runs:/<id>``) is loaded from the run's artifacts.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_training_index", "attribute_training_data", "compare_continuations"]


def _install_uri_resolver() -> None:
    """Checkpoints given as MLflow URIs are downloaded by the one model loader (:mod:`attrib_mlops.model_refs`)."""
    from .model_refs import resolve_model_ref
    from .training_data.checkpoints import set_uri_resolver

    set_uri_resolver(resolve_model_ref)


def build_training_index(checkpoints: Any, tokenizer: Any, train_data: Any, learning_rates: Any = None,
                         **options: Any):
    """Build a training-data index (see :func:`attrib_mlops.training_data.builder.build_training_index`).

    Args:
        checkpoints: checkpoint folders, a folder of ``checkpoint-<step>`` folders, or MLflow model URIs.
        tokenizer: a tokenizer, a reference, or None (the first checkpoint's).
        train_data: a ``datasets.Dataset``, records or plain texts (id: the ``id`` field, else the position).
        learning_rates: None (read from each checkpoint's ``trainer_state.json``), one value, or one per checkpoint.
        **options: :class:`~attrib_mlops.training_data.options.IndexOptions`.

    Returns:
        A :class:`~attrib_mlops.training_data.storage.TrainingIndex`; log it to a run with
        :func:`attrib_mlops.tracking.training_index.log_training_index`.

    Example:
        >>> import attrib_mlops
        >>> index = attrib_mlops.build_training_index("out/ckpts", None, ["a b", "b a"],  # doctest: +SKIP
        ...                                           learning_rates=1e-3, out_dir="out/index")
    """
    _install_uri_resolver()
    from .training_data.builder import build_training_index as build

    return build(checkpoints, tokenizer, train_data, learning_rates, **options)


def _index(index: Any, options: dict[str, Any]) -> Any:
    tracking_uri = options.pop("tracking_uri", None)
    from .training_data.storage import TrainingIndex

    if isinstance(index, TrainingIndex):
        return index
    from .tracking.training_index import resolve_index

    return resolve_index(index, tracking_uri=tracking_uri)


def attribute_training_data(index: Any, model: Any, tokenizer: Any, prompt: str, target: str | None = None,
                            target_tokens: Any = None, method: str = "tracin", top_k: int = 10, **options: Any):
    """Score every training example for the selected target tokens (TracIn-CP, grad-cos or DataInf).

    Args:
        index: a loaded :class:`~attrib_mlops.training_data.storage.TrainingIndex`, an index folder,
            or the id of an MLflow run with a logged index (``tracking_uri=`` picks the server).
        model: the model (object or reference; None = the index's last checkpoint).
        tokenizer: its tokenizer (object, reference or None).
        prompt: the prompt.
        target: the continuation: a user text, or None for the model's greedy generation.
        target_tokens: 0-based positions in the target's tokens (None = all).
        method: ``tracin``, ``grad_cos`` or ``datainf``.
        top_k: default ``k`` of ``result.top()``.
        **options: :class:`~attrib_mlops.training_data.options.QueryOptions`, plus ``tracking_uri``.

    Returns:
        A :class:`~attrib_mlops.training_data.result.TrainingDataAttribution`.

    Example:
        >>> import attrib_mlops
        >>> res = attrib_mlops.attribute_training_data(run_id, None, None, "? kc", " vc")  # doctest: +SKIP
        >>> [it["id"] for it in res.top(3)["positive"]]                                    # doctest: +SKIP
        ['canary-4', 'canary-1', 'canary-7']
    """
    _install_uri_resolver()
    from .training_data.query import attribute_training_data as attribute

    idx = _index(index, options)
    return attribute(idx, model, tokenizer, prompt, target, target_tokens, method, top_k, **options)


def compare_continuations(index: Any, model: Any, tokenizer: Any, prompt: str, user_text: str,
                          generated: str | None = None, method: str = "tracin", top_k: int = 10, **options: Any):
    """The model's generation and a user's continuation side by side, with one shared normalisation.

    Arguments as :func:`attribute_training_data`; ``user_text`` is the user's continuation and
    ``generated`` the model's (None = greedy generation). Returns a
    :class:`~attrib_mlops.training_data.compare.SideBySide`.

    Example:
        >>> import attrib_mlops
        >>> sbs = attrib_mlops.compare_continuations("out/index", None, None, "? kc", " v3")  # doctest: +SKIP
        >>> [s["op"] for s in sbs.diff]                                                       # doctest: +SKIP
        ['replace']
    """
    _install_uri_resolver()
    from .training_data.compare import compare_continuations as compare

    idx = _index(index, options)
    return compare(idx, model, tokenizer, prompt, user_text, generated, method, top_k, **options)
