"""AT2 inference: source scores from one batched forward (``attribute_sources(method="at2")``).

``method="at2"`` scores each source with a trained
:class:`~attrib_mlops.sources.at2.estimator.SourceEstimator`; ``method="attention"``
is the naive baseline AT2 is compared with: the same features averaged with
uniform weights over every layer and head. Either costs one forward pass per
batch of samples (no ablation), so the result carries no ablation data and no
held-out quality of its own; compare it with an ablation result with
:func:`~attrib_mlops.sources.at2.quality.score_lds`.

Example:
    >>> from attrib_mlops.demo.tiny import build_tiny_model
    >>> from attrib_mlops.sources.at2.estimator import SourceEstimator
    >>> model, tok = build_tiny_model(["a", "b", "c", "."], n_layer=1, n_embd=16, n_head=2)
    >>> est = SourceEstimator.uniform_for(model)
    >>> [r] = attribute_at2(model, tok, "a b . c a .", " b", estimator=est)
    >>> r.sources, r.method, r.info["n_forwards"]
    (['a b .', 'c a .'], 'at2', 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ...errors import InputError, UnknownMethodError
from ..result import SourceAttribution
from .estimator import SourceEstimator
from .options import parse_at2_options

__all__ = ["AT2_METHODS", "attribute_at2", "resolve_estimator"]

#: Source methods served by this module.
AT2_METHODS = ("at2", "attention")


def resolve_estimator(estimator: Any, model: Any, method: str) -> SourceEstimator:
    """The estimator to use: given (object, folder or URI) for ``at2``, uniform for ``attention``."""
    if method == "attention":
        if estimator is not None:
            raise InputError("method='attention' is uniform attention averaging and takes no estimator; "
                             "use method='at2' with estimator=...")
        return SourceEstimator.uniform_for(model)
    if estimator is None:
        raise InputError(
            "method='at2' needs estimator=: a SourceEstimator, a folder saved with SourceEstimator.save, or an "
            "MLflow URI of a logged estimator; train one with attrib_mlops.train_source_estimator"
        )
    est = estimator if isinstance(estimator, SourceEstimator) else SourceEstimator.load(estimator)
    est.check_model(model)
    return est


def attribute_at2(
    model: Any,
    tokenizer: Any = None,
    prompts: Any = (),
    targets: str | Sequence[str] | None = None,
    sources: Any = "sentence",
    method: str = "at2",
    *,
    sample_ids: Sequence[str] | None = None,
    **options: Any,
) -> list[SourceAttribution]:
    """Score each source with attention features and an estimator (one forward per batch of samples).

    Args:
        model / tokenizer / prompts / targets / sources / sample_ids: as in
            :func:`attrib_mlops.attribute_sources`.
        method: ``"at2"`` (a trained estimator) or ``"attention"`` (uniform weights).
        **options: :class:`~attrib_mlops.sources.at2.options.AT2Options` fields, ``estimator`` first.

    Returns:
        One :class:`~attrib_mlops.sources.result.SourceAttribution` per prompt, ``info`` holding the
        estimator's provenance, ``n_forwards`` (1 per sample) and per-target-token scores
        (``token_scores``, ``[S][T]``).

    Raises:
        EstimatorMismatchError: the estimator was trained for another architecture or shape.
        UnsupportedMethodError: the model returns no attention weights (the message names the fix).
    """
    from tqdm.auto import tqdm

    from ..._util import library_versions
    from ...engines.prep import is_encoder_decoder, load_model_and_tokenizer, model_device, model_guard
    from ...errors import UnsupportedMethodError
    from .features import source_features
    from .prepare import prepare_samples

    if method not in AT2_METHODS:
        raise UnknownMethodError(f"unknown AT2 method {method!r}; valid: {', '.join(AT2_METHODS)}")
    opts = parse_at2_options(options)
    model, tokenizer, model_ref = load_model_and_tokenizer(model, tokenizer, opts.load_options())
    if is_encoder_decoder(model):
        raise UnsupportedMethodError("source attribution handles decoder-only causal LMs; this model is encoder-decoder")
    if opts.device and torch.device(opts.device) != model_device(model):
        raise InputError(f"options.device={opts.device!r} but the model is on {model_device(model)}; "
                         "move the model or drop the option")
    est = resolve_estimator(opts.estimator, model, method)
    samples, generated = prepare_samples(model, tokenizer, prompts, targets, sources, opts, sample_ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    versions = library_versions()
    results: list[SourceAttribution] = []
    batch = max(1, min(len(samples), 64))
    bar = tqdm(total=len(samples), desc=f"{method} source scores", unit="sample", disable=not opts.show_progress)
    with model_guard(model), torch.no_grad():
        for start in range(0, len(samples), batch):
            chunk = samples[start : start + batch]
            counter: dict[str, int] = {}
            feats = source_features(model, [s.sample for s in chunk], [s.membership for s in chunk], pad_id=pad,
                                    max_attention_elements=opts.max_attention_elements, counter=counter)
            for k, (s, f) in enumerate(zip(chunk, feats)):
                T = s.sample.n_target
                span = opts.target_span or (0, T)
                if span[1] > T:
                    raise InputError(f"target_span {span} is outside the target's {T} tokens; "
                                     f"give 0 <= start < end <= {T}")
                token_scores = est.scores(f)  # [T, S]
                scores = token_scores[span[0] : span[1]].mean(axis=0)
                info: dict[str, Any] = {
                    "model": model_ref,
                    "method": method,
                    "estimator": est.provenance(),
                    "n_forwards": 1,
                    "n_forward_calls": counter.get("n_forward_calls", 0),
                    "batch_samples": len(chunk),
                    "splitter": s.splitter,
                    "target_source": "generated" if generated else "given",
                    "token_scores": np.asarray(token_scores.T, dtype=np.float64).tolist(),
                    "options": opts.key_dict(),
                    "versions": versions,
                }
                results.append(SourceAttribution(
                    sources=[s.text[a:b] for a, b in s.spans], spans=s.spans, scores=scores,
                    target=s.sample.target, method=method, info=info, prompt=s.text,
                    target_tokens=s.sample.target_tokens, target_span=span, sample_id=s.sample_id,
                ))
                bar.update(1)
    bar.close()
    return results
