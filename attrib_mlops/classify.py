"""Attribution of sequence classifiers: what :func:`attrib_mlops.attribute` runs for a ``*ForSequenceClassification``.

:func:`attribute_classifier` validates the call, encodes the texts, resolves
the labels and sends each method to its engine: the native classifier engine
(:mod:`attrib_mlops.engines.classifier`) for saliency, input_x_gradient,
integrated_gradients, attention and occlusion, Captum
(:mod:`attrib_mlops.engines.captum_engine`) for lime and kernel_shap.

Example:
    >>> from attrib_mlops.demo.tiny_classifier import build_tiny_classifier
    >>> from attrib_mlops import attribute
    >>> model, tok = build_tiny_classifier("bert", ["good", "bad", "film"])
    >>> r = attribute(model, tok, ["good film"], targets="positive", methods="saliency")[0]
    >>> r.source_tokens, r.target_tokens, r.shape
    (['[CLS]', 'good', 'film', '[SEP]'], ['positive'], (4, 1))
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InputError, UnknownMethodError, UnsupportedMethodError
from .options import AttributeOptions
from .result import AttributionResult

logger = logging.getLogger(__name__)

__all__ = ["attribute_classifier", "classifier_methods", "resolve_classifier_engine"]


def classifier_methods() -> dict[str, list[str]]:
    """Methods for sequence classifiers, per engine (the registered methods declaring the classifier model kind).

    >>> classifier_methods()["captum"]
    ['lime', 'kernel_shap']
    """
    from .engines.registry import CLASSIFIER, method_names

    return {e: method_names(e, model_kind=CLASSIFIER) for e in ("native", "captum")}


def resolve_classifier_engine(method: str, engine: str = "auto") -> str:
    """``native`` or ``captum`` for ``method`` on a classifier; errors name the valid choices."""
    table = classifier_methods()
    known = [m for ms in table.values() for m in ms]
    if method not in known:
        raise UnknownMethodError(
            f"unknown attribution method {method!r} for a sequence classifier; valid methods: {', '.join(known)}"
        )
    if engine == "auto":
        return "native" if method in table["native"] else "captum"
    if engine not in table:
        raise UnsupportedMethodError(
            f"engine {engine!r} does not attribute sequence classifiers; use 'auto', 'native' or 'captum'"
        )
    if method not in table[engine]:
        raise UnsupportedMethodError(
            f"engine {engine!r} does not support {method!r} for classifiers; it supports "
            f"{', '.join(table[engine])}. Use engine='auto'."
        )
    return engine


def attribute_classifier(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    targets: Any,
    methods: Sequence[str],
    engine: str,
    *,
    sample_ids: Sequence[str] | None,
    options: AttributeOptions,
    model_ref: str,
) -> list[AttributionResult]:
    """Attribute each text's class probability to its tokens, with every method.

    Args:
        model, tokenizer: a loaded ``*ForSequenceClassification`` and its tokenizer.
        texts: the inputs (``prompts`` of :func:`attrib_mlops.attribute`).
        targets: the classes to attribute: None (the predicted class), one label
            for every text, ``"*"`` (every class) or one entry per text (None, a
            label, or a list of labels). A label is a name from ``id2label``, an
            index or a digit string.
        methods: method names (see :func:`classifier_methods`).
        engine: ``auto``, ``native`` or ``captum``.
        sample_ids: optional ids carried into each result.
        options: validated options.
        model_ref: provenance string of the model.

    Returns:
        ``len(methods) * len(texts)`` results grouped by method; each has one
        column per attributed class (``target_tokens`` = label names).
    """
    from .api import library_versions
    from .engines.captum_engine import CaptumEngine
    from .engines.classifier import ClassifierEngine
    from .engines.classifier_prep import encode_texts, label_names, normalize_label_targets

    engines = {m: resolve_classifier_engine(m, engine) for m in methods}
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise InputError("no text given; pass one text or a list of texts as prompts")
    if sample_ids is not None and len(sample_ids) != len(texts):
        raise InputError(f"got {len(texts)} texts but {len(sample_ids)} sample_ids")
    names, _ = label_names(model)
    labels = normalize_label_targets(targets, len(texts), names)
    samples = encode_texts(model, tokenizer, texts, labels, truncate=options.truncate,
                           sample_ids=list(sample_ids) if sample_ids is not None else None)
    versions = library_versions()
    impl = {"native": ClassifierEngine(), "captum": CaptumEngine()}
    results: list[AttributionResult] = []
    for m in methods:
        out = impl[engines[m]].attribute(model, tokenizer, samples, m, options, model_ref)
        for r in out:
            r.info.setdefault("versions", versions)
            bad = int((~np.isfinite(r.matrix)).sum())
            r.info["nonfinite_cells"] = bad
            if bad:
                logger.warning("%s/%s on sample %s: %d attribution cells are NaN or inf", r.engine, r.method,
                               r.sample_id, bad)
        results.extend(out)
    return results
