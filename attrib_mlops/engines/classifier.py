"""The native fast path for sequence classifiers: batched attribution of class probabilities.

Encoder classifiers (BERT, RoBERTa, DistilBERT style) and decoder classifiers
(``GPT2ForSequenceClassification`` and the like) are attributed with the native
methods of the method registry that declare the ``classifier`` model kind
(:mod:`attrib_mlops.engines.methods`: saliency, input_x_gradient,
integrated_gradients, attention, occlusion); each method's ``compute_classifier``
gets one padded batch (:class:`~.classifier_kernels.ClassifierRun`) and shares its
kernels with the causal LM side (:mod:`.native_kernels`).

``p(c)`` is the softmax probability of class ``c``; ``x`` the input token
embeddings. Per-cell vectors are reduced by ``dim_aggregation`` (L2 by
default), baselines are ``unk`` (the unknown token at every non-special
position) or ``zeros``: the same conventions as the native causal engine. Each
result has one column per attributed class (the predicted class by default),
``target_tokens`` = the label names, every token as a row (special tokens
flagged in ``info["special_tokens_mask"]``) and ``n_prompt`` = the number of
rows (no future mask). Results equal Captum's cell by cell
(``tests/engines/test_classifier.py``).

Example:
    >>> from attrib_mlops.engines.classifier_prep import encode_texts          # doctest: +SKIP
    >>> samples = encode_texts(model, tok, ["a fine film"], [None])             # doctest: +SKIP
    >>> ClassifierEngine().attribute(model, tok, samples, "saliency", AttributeOptions(), "m")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import numpy as np
import torch

from ..errors import InputError, UnsupportedMethodError
from ..options import AttributeOptions
from ..result import AttributionResult
from .base import Engine
from .classifier_kernels import ClassifierRun
from .classifier_trim import pooled_is_exact, pooled_last_layer
from .classifier_prep import (
    ClassifierBatch,
    ClassifierForward,
    ClassifierSample,
    batching_is_exact,
    classifier_guard,
    label_names,
    pooling_of,
)
from .native_kernels import chunks, eager_attention, progress
from .prep import model_device, model_guard
from .registry import CLASSIFIER, get_method, method_names

logger = logging.getLogger(__name__)

__all__ = ["ClassifierEngine", "classifier_info", "classifier_result", "eager_attention"]


def __getattr__(name: str) -> tuple[str, ...]:
    # derived from the method registry (kept for callers of the former constant)
    if name == "METHODS":
        return tuple(method_names("native", model_kind=CLASSIFIER))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def classifier_info(model: Any, names: list[str], from_config: bool, pooling: str) -> dict[str, Any]:
    """Provenance shared by every classifier result of one call."""
    return {
        "task": "sequence_classification",
        "labels": list(names),
        "label_names": "id2label" if from_config else (
            "indices: the model config has no id2label (or only the default LABEL_<i> names)"),
        "pooling": pooling,
        "padding_side": "left" if pooling == "last" else "right",
        "model_class": type(model).__name__,
    }


def classifier_result(tokenizer, s: ClassifierSample, mat, p, classes, names, method, options, model_ref,
                      common, engine: str = "native", method_info: dict[str, Any] | None = None) -> AttributionResult:
    """One :class:`AttributionResult` of a classifier sample: ``mat`` [tokens, classes], ``p`` class probabilities.

    ``method_info`` is what the method adds to ``info`` (its dimension aggregation, ...).
    """
    tokens = tokenizer.convert_ids_to_tokens(s.ids)
    pred = int(np.argmax(p))
    ent = float(-(p * np.log(np.clip(p, 1e-45, None))).sum())
    info: dict[str, Any] = {
        "model": model_ref,
        "options": options.key_dict(),
        "dim_aggregation": None,
        "attributed_fn": "probability",
        **common,
        "attributed_labels": [int(c) for c in classes],
        "target_source": "predicted" if s.labels is None else "given",
        "predicted_index": pred,
        "predicted_label": names[pred],
        "predicted_probability": float(p[pred]),
        "special_tokens_mask": [int(x) for x in s.special],
    }
    info.update(method_info or {})
    if s.word_ids is not None:
        info["word_ids"] = list(s.word_ids)
    if s.offsets is not None:
        info["offsets"] = [list(o) for o in s.offsets]
    if s.truncated:
        info["truncated_tokens"] = s.truncated
    target_tokens = [names[c] for c in classes]
    return AttributionResult(
        matrix=mat,
        source_tokens=tokens,
        target_tokens=target_tokens,
        method=method,
        engine=engine,
        step_scores={"probability": p[list(classes)], "entropy": np.full(len(classes), ent)},
        info=info,
        n_prompt=len(tokens),
        prompt=s.text,
        target=", ".join(target_tokens),
        sample_id=s.sample_id,
    )


class ClassifierEngine(Engine):
    """Batched attribution for ``*ForSequenceClassification`` models (see the module docstring)."""

    name = "native"

    def methods(self) -> list[str]:
        return method_names(self.name, model_kind=CLASSIFIER)

    def attribute(
        self,
        model: Any,
        tokenizer: Any,
        samples: list[ClassifierSample],
        method: str,
        options: AttributeOptions,
        model_ref: str,
    ) -> list[AttributionResult]:
        try:
            impl = get_method(method, self.name, CLASSIFIER)()
        except UnsupportedMethodError:
            raise UnsupportedMethodError(
                f"the native classifier engine does not implement {method!r}; it supports "
                f"{', '.join(self.methods())} (lime and kernel_shap run through Captum: engine='auto' or 'captum')"
            ) from None
        device = torch.device(options.device) if options.device else model_device(model)
        if device != model_device(model):
            raise InputError(
                f"options.device={options.device!r} but the model is on {model_device(model)}; "
                "move the model (model.to(...)) or drop the device option"
            )
        names, from_cfg = label_names(model)
        pooling = pooling_of(model)
        left = pooling == "last"
        common = classifier_info(model, names, from_cfg, pooling)
        extra = impl.classifier_info(options)
        with contextlib.ExitStack() as stack, model_guard(model), classifier_guard(model, tokenizer) as pad_id:
            fwd = ClassifierForward(model, left)
            exact = batching_is_exact(model, fwd, samples[0], pad_id, device)
            common["batched_forward"] = exact
            # the attention method reads every position's attention weights: it keeps the full last layer
            trim = method != "attention" and pooled_is_exact(model, fwd, samples[0], pad_id, device)
            common["first_token_last_layer"] = trim
            bar = progress(len(samples), f"native {method}", options.show_progress)
            # batches of similar lengths waste less compute on padding; results go back in input order
            order = sorted(range(len(samples)), key=lambda i: len(samples[i].ids))
            slots: list[AttributionResult | None] = [None] * len(samples)
            stack.enter_context(pooled_last_layer(model, trim))
            for idx in chunks(order, options.batch_size if exact else 1):
                chunk = [samples[i] for i in idx]
                batch = ClassifierBatch(chunk, pad_id, device, left)
                x0 = model.get_input_embeddings()(batch.ids).detach()
                cells, p0, per = impl.compute_classifier(
                    ClassifierRun(model, tokenizer, fwd, batch, x0, options, pooling))
                cells = cells.detach().float().cpu().numpy()  # [N, L, K]
                p = p0.cpu().numpy()
                for b, (i, s) in enumerate(zip(idx, chunk)):
                    mat = cells[b, batch.rows(b), : len(per[b])]
                    slots[i] = classifier_result(tokenizer, s, mat, p[b], per[b], names, method, options,
                                                 model_ref, common, self.name, extra)
                bar.update(len(chunk))
            bar.close()
        return [r for r in slots if r is not None]
