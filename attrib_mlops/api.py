"""The Python API: :func:`attribute` and :func:`list_methods`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._util import library_versions
from .errors import InputError, UnknownMethodError, UnsupportedMethodError
from .options import AttributeOptions, parse_options
from .result import AttributionResult

logger = logging.getLogger(__name__)

__all__ = ["attribute", "list_methods", "resolve_engine", "library_versions"]

def list_methods() -> dict[str, list[str]]:
    """Methods each engine supports, e.g. ``{"native": [...], "inseq": [...]}``.

    Derived from the method registry (:mod:`attrib_mlops.engines.registry`) and, for the
    ``inseq`` engine, from Inseq's own registry.

    >>> "saliency" in list_methods()["native"]
    True
    """
    from .engines import engine_names, get_engine

    return {name: get_engine(name).methods() for name in engine_names()}


def resolve_engine(method: str, engine: str = "auto", model_kind: str | None = None) -> str:
    """Which engine runs ``method``: ``auto`` = native when it can, else inseq (causal LMs).

    For ``model_kind="classifier"`` the choice is among the engines that attribute
    sequence classifiers (native, else captum: lime and kernel_shap), as
    :func:`attrib_mlops.classify.resolve_classifier_engine`.

    >>> resolve_engine("lime", model_kind="classifier")
    'captum'
    """
    from .engines import get_engine, method_names
    from .engines.registry import CLASSIFIER

    if model_kind == CLASSIFIER:
        from .classify import resolve_classifier_engine

        return resolve_classifier_engine(method, engine)

    # the common case needs no catalogue of Inseq's methods (importing Inseq takes seconds)
    if engine in ("auto", "native") and method in method_names("native"):
        return "native"
    table = list_methods()
    known = sorted(set().union(*table.values()))
    if method not in known:
        raise UnknownMethodError(f"unknown attribution method {method!r}; valid methods: {', '.join(known)}")
    if engine == "auto":
        if method in table.get("native", []) or method in table.get("inseq", []):
            return "native" if method in table.get("native", []) else "inseq"
        return next(name for name, ms in table.items() if method in ms)  # e.g. kernel_shap -> captum
    eng = get_engine(engine)  # raises on an unknown engine name
    if not eng.supports(method):
        raise UnsupportedMethodError(
            f"engine {engine!r} does not support {method!r}; it supports {', '.join(eng.methods())}. "
            "Use engine='auto' to pick one that does."
        )
    return engine


def _as_list(x: str | Sequence[str] | None, name: str) -> list[str] | None:
    if x is None:
        return None
    if isinstance(x, str):
        return [x]
    out = list(x)
    for k, v in enumerate(out):
        if not isinstance(v, str):
            raise InputError(f"{name}[{k}] must be a string, got {type(v).__name__}")
    return out


def attribute(
    model: Any,
    tokenizer: Any = None,
    prompts: str | Sequence[str] = (),
    targets: str | Sequence[str] | None = None,
    methods: str | Sequence[str] = ("saliency",),
    engine: str = "auto",
    *,
    sample_ids: Sequence[str] | None = None,
    options: AttributeOptions | dict | None = None,
    **kwargs: Any,
) -> list[AttributionResult]:
    """Attribute each prompt's continuation to its tokens, with every method.

    Sequence classifiers (``*ForSequenceClassification``) are attributed by
    :func:`attrib_mlops.classify.attribute_classifier`: ``prompts`` are the
    texts, ``targets`` the labels to attribute (None = the predicted class; a
    name, an index, ``"*"`` or one entry per text), engines ``auto``/``native``/``captum``.

    Args:
        model: a loaded ``transformers`` model, or a reference (local folder,
            hub id, ``runs:/``/``models:/`` MLflow URI).
        tokenizer: a loaded tokenizer or a reference; defaults to the model's folder.
        prompts: one prompt or a list.
        targets: continuation texts, teacher-forced: the model sees
            ``prompt + target`` as one string (include the leading space the
            tokenizer needs). ``None`` generates them greedily
            (``max_new_tokens`` option); every method then attributes the
            same generated continuation.
        methods: method names (see :func:`list_methods`).
        engine: ``"auto"`` (native when it supports the method, else inseq),
            ``"native"`` or ``"inseq"``.

        sample_ids: optional ids carried into each result.
        options / **kwargs: :class:`~attrib_mlops.options.AttributeOptions`
            fields (``batch_size``, ``n_steps``, ``dim_aggregation``, ...).

    Returns:
        ``len(methods) * len(prompts)`` results, grouped by method in the
        order given, samples in order within each method.

    Example:
        >>> from attrib_mlops.demo.tiny import build_tiny_model
        >>> model, tok = build_tiny_model(["a", "b", "c"], n_layer=1, n_embd=16, n_head=2)
        >>> [r.shape for r in attribute(model, tok, "a b", " c")]
        [(3, 1)]
    """
    from .engines import get_engine
    from .engines.classifier_prep import model_head
    from .engines.prep import (
        context_limit,
        encode_samples,
        generate_targets,
        is_encoder_decoder,
    )
    from .model_refs import load_model

    opts = parse_options(options, **kwargs)
    method_list = _as_list(methods, "methods") or []
    if not method_list:
        raise InputError("no attribution method given; pass methods=('saliency',) or see list_methods()")
    model, tokenizer, model_ref = load_model(model, tokenizer, opts)
    if model_head(model) == "sequence_classification":  # raises for heads that are neither LM nor classifier
        from .classify import attribute_classifier

        return attribute_classifier(model, tokenizer, prompts, targets, method_list, engine,
                                    sample_ids=sample_ids, options=opts, model_ref=model_ref)
    engines = {m: resolve_engine(m, engine) for m in method_list}
    prompt_list = _as_list(prompts, "prompts") or []
    if not prompt_list:
        raise InputError("no prompt given; pass one prompt or a list of prompts")
    for k, p in enumerate(prompt_list):
        if not p.strip():
            raise InputError(f"prompt {k} is empty; every sample needs a non-empty prompt")
    target_list = _as_list(targets, "targets")
    if target_list is not None and len(target_list) != len(prompt_list):
        raise InputError(f"got {len(prompt_list)} prompts but {len(target_list)} targets; give one target per prompt")
    if sample_ids is not None and len(sample_ids) != len(prompt_list):
        raise InputError(f"got {len(prompt_list)} prompts but {len(sample_ids)} sample_ids")

    if engine == "auto" and is_encoder_decoder(model):
        engines = {m: "inseq" for m in method_list}  # the native path is decoder-only
    limit = context_limit(model)
    if target_list is None:
        target_list = generate_targets(model, tokenizer, prompt_list, opts.max_new_tokens, limit)
        generated = True
    else:
        generated = False
    if is_encoder_decoder(model):
        # the decoder reads the target on its own: no prompt+target concatenation
        from .engines.prep import Encoded

        ids = list(sample_ids) if sample_ids is not None else [None] * len(prompt_list)
        samples = [Encoded([], 0, p, t, i) for p, t, i in zip(prompt_list, target_list, ids)]
    else:
        samples = encode_samples(
            tokenizer,
            prompt_list,
            target_list,
            limit=limit,
            truncate=opts.truncate,
            sample_ids=list(sample_ids) if sample_ids is not None else None,
        )
    versions = library_versions()
    results: list[AttributionResult] = []
    for m in method_list:
        eng = get_engine(engines[m])
        out = eng.attribute(model, tokenizer, samples, m, opts, model_ref)
        for r in out:
            r.info.setdefault("versions", versions)
            r.info["target_source"] = "generated" if generated else "given"
            _flag_nonfinite(r)
        results.extend(out)
    return results


def _flag_nonfinite(r: AttributionResult) -> None:
    vals = r.matrix[r.valid_mask()]
    bad = int((~np.isfinite(vals)).sum())
    r.info["nonfinite_cells"] = bad
    if bad:
        logger.warning(
            "%s/%s on sample %s: %d attribution cells are NaN or inf; they are flagged in info['nonfinite_cells'] "
            "and excluded from aggregations",
            r.engine,
            r.method,
            r.sample_id,
            bad,
        )
