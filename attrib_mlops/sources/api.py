"""``attribute_sources``: which sources (sentences, documents, turns) a target used, by ablation."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import InputError, UnknownMethodError, UnsupportedMethodError
from .options import parse_source_options
from .prepare import generate_continuations, prepare_inputs, source_spans
from .result import SourceAttribution

logger = logging.getLogger(__name__)

__all__ = ["METHODS", "attribute_sources", "generate_continuations"]

#: Source attribution methods: ablation, the AT2 estimator and naive attention averaging.
METHODS = ("ablation", "at2", "attention")

Prompt = str | Sequence[dict]


def attribute_sources(
    model: Any,
    tokenizer: Any = None,
    prompts: Prompt | Sequence[Prompt] = (),
    targets: str | Sequence[str] | None = None,
    sources: str | Sequence[str] | Sequence[Sequence[str]] = "sentence",
    method: str = "ablation",
    *,
    sample_ids: Sequence[str] | None = None,
    **options: Any,
) -> list[SourceAttribution]:
    """Score each source of each prompt by how much ablating it lowers the target.

    Args:
        model: a loaded causal LM or a reference (local folder, hub id, ``runs:/``/``models:/`` URI).
        tokenizer: a loaded tokenizer or a reference (default: the model's folder).
        prompts: a string, a conversation (``[{"role", "content"}, ...]`` rendered with the
            chat template), or a list of them.
        targets: teacher-forced continuations (one per prompt, with the leading space the
            tokenizer needs), or None to generate them greedily (``max_new_tokens``).
        sources: ``"sentence"``, ``"line"``, ``"turn"`` (conversations), ``"token"``, or per
            prompt a list of substrings that occur in that order in the prompt (for a
            conversation: in the rendered text, usually inside message contents).
        method: ``"ablation"``; ``"at2"`` (a trained estimator: pass ``estimator=``, see
            :func:`attrib_mlops.train_source_estimator`) or ``"attention"`` (naive attention
            averaging), both one forward per batch of samples with the options of
            :class:`~attrib_mlops.sources.at2.options.AT2Options`.
        sample_ids: optional ids carried into the results.
        **options: :class:`~attrib_mlops.sources.options.SourceOptions` fields (``n_ablations``,
            ``ablation="remove"|"mask"``, ``estimator``, ``seed``, ``n_holdout``, ...).

    Returns:
        One :class:`SourceAttribution` per prompt, in order.

    Raises:
        InputError: a source not found or out of order, zero sources, a target adding no
            token, a conversation for a tokenizer without a chat template, ...
        SpecError: an unknown or invalid option (named).

    Example:
        >>> from attrib_mlops.demo.tiny import build_tiny_model
        >>> model, tok = build_tiny_model(["a", "b", "c", "."], n_layer=1, n_embd=16, n_head=2)
        >>> [r] = attribute_sources(model, tok, "a b . c a .", " b", n_ablations=8, n_holdout=0)
        >>> r.sources, r.scores.shape
        (['a b .', 'c a .'], (2,))
    """
    from ..engines.prep import is_encoder_decoder, load_model_and_tokenizer, model_device, model_guard
    from .ablation import ablate_sample
    from .forward import Forwarder, encode_prompt

    if method in ("at2", "attention"):  # one forward per batch of samples (attrib_mlops.sources.at2)
        from .at2.attribute import attribute_at2

        return attribute_at2(model, tokenizer, prompts, targets, sources, method, sample_ids=sample_ids, **options)
    opts = parse_source_options(options)
    if method not in METHODS:
        raise UnknownMethodError(f"unknown source attribution method {method!r}; valid: {', '.join(METHODS)}")
    model, tokenizer, model_ref = load_model_and_tokenizer(model, tokenizer, opts.load_options())
    if is_encoder_decoder(model):
        raise UnsupportedMethodError("source attribution handles decoder-only causal LMs; this model is encoder-decoder")
    impl = str(getattr(getattr(model, "config", None), "_attn_implementation", "") or "")
    if opts.ablation == "mask" and impl.startswith("flash"):
        raise UnsupportedMethodError(
            f"ablation='mask' needs an attention that honours holes in the attention mask; {impl} treats zeros "
            "as padding. Load the model with attn_implementation='sdpa' or 'eager', or use ablation='remove'"
        )
    device = model_device(model)
    if opts.device and torch.device(opts.device) != device:
        raise InputError(f"options.device={opts.device!r} but the model is on {device}; move the model or drop the option")

    prep = prepare_inputs(model, tokenizer, prompts, targets, sources, opts, sample_ids)
    rendered, specs, target_list, generated, limit = prep.rendered, prep.specs, prep.targets, prep.generated, prep.limit
    n = len(rendered)

    from tqdm.auto import tqdm

    from .._util import library_versions

    versions = library_versions()
    fwd = Forwarder(model, tokenizer, device, opts.max_tokens_per_forward, opts.padding)
    results: list[SourceAttribution] = []
    bar = tqdm(total=n, desc="source ablations", unit="sample", disable=not opts.show_progress)
    with model_guard(model), torch.no_grad():
        for k, ((text, regions, add), spec, target) in enumerate(zip(rendered, specs, target_list)):
            sid = sample_ids[k] if sample_ids is not None else None
            s = encode_prompt(tokenizer, text, target, add_special_tokens=add, limit=limit, index=k, sample_id=sid)
            spans = source_spans(text, spec, regions, s.offsets, k)
            out = ablate_sample(fwd, s, spans, opts)
            info: dict[str, Any] = {
                "model": model_ref,
                "method": method,
                "ablation": opts.ablation,
                "estimator": opts.estimator,
                "seed": opts.seed,
                "n_ablations": int(out["ablation"].masks.shape[0]),
                "keep_prob": opts.keep_prob,
                "lasso_alpha": opts.lasso_alpha,
                "n_forwards": out["n_forwards"],
                "n_forward_calls": out["n_forward_calls"],
                "splitter": spec if isinstance(spec, str) else "explicit",
                "quality": out["quality"],
                "target_source": "generated" if generated else "given",
                "options": opts.key_dict(),
                "versions": versions,
            }
            if out["warning"]:
                info["warnings"] = [out["warning"]]
            results.append(
                SourceAttribution(
                    sources=[text[a:b] for a, b in spans],
                    spans=spans,
                    scores=out["scores"],
                    target=target,
                    method=method,
                    info=info,
                    prompt=text,
                    target_tokens=s.target_tokens,
                    target_span=out["span"],
                    bias=out["bias"],
                    sample_id=sid,
                    ablation=out["ablation"],
                )
            )
            bar.update(1)
    bar.close()
    if fwd.n_empty_prompts:
        logger.info("%d ablations removed every prompt token; the BOS token stood for the empty context",
                    fwd.n_empty_prompts)
    return results
