"""``attribute_sources``: which sources (sentences, documents, turns) a target used, by ablation."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import InputError, UnknownMethodError, UnsupportedMethodError
from .options import SourceOptions, parse_source_options
from .result import SourceAttribution

logger = logging.getLogger(__name__)

__all__ = ["METHODS", "attribute_sources", "generate_continuations"]

#: Source attribution methods: ablation, the AT2 estimator and naive attention averaging.
METHODS = ("ablation", "at2", "attention")

Prompt = str | Sequence[dict]


def _prompt_list(prompts: Any) -> list[Any]:
    from .conversation import is_conversation

    if isinstance(prompts, str) or is_conversation(prompts):
        return [prompts]
    out = list(prompts or [])
    if not out:
        raise InputError("no prompt given; pass a prompt string, a conversation, or a list of them")
    for k, p in enumerate(out):
        if isinstance(p, str):
            if not p.strip():
                raise InputError(f"prompt {k} is empty; every sample needs a non-empty prompt")
        elif not is_conversation(p):
            raise InputError(f"prompt {k} must be a string or a list of {{'role', 'content'}} messages, got {type(p).__name__}")
    return out


def _source_specs(sources: Any, n: int) -> list[Any]:
    """One spec per prompt: a splitter name or a list of substrings."""
    if isinstance(sources, str):
        return [sources] * n
    specs = list(sources)
    if specs and all(isinstance(s, str) for s in specs):
        if n != 1:
            raise InputError(
                f"a flat list of source substrings is for one prompt; for {n} prompts give one list per prompt"
            )
        return [specs]
    if len(specs) != n:
        raise InputError(f"got {n} prompts but {len(specs)} source lists; give one list of substrings per prompt")
    for k, s in enumerate(specs):
        if isinstance(s, str) or not isinstance(s, (list, tuple)):
            raise InputError(f"sources[{k}] must be a list of substrings of prompt {k}")
    return [list(s) for s in specs]


def generate_continuations(
    model: Any, tokenizer: Any, prompts: list[str], add_special: list[bool], max_new_tokens: int,
    limit: int | None = None,
) -> list[str]:
    """Greedy continuations (text; EOS and what follows dropped) of rendered prompts."""
    from ..engines.prep import model_device, model_guard

    eos = getattr(tokenizer, "eos_token_id", None)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos if eos is not None else 0)
    out = []
    with model_guard(model), torch.no_grad():
        for k, (prompt, add) in enumerate(zip(prompts, add_special)):
            ids = list(tokenizer(prompt, add_special_tokens=add)["input_ids"])
            room = max_new_tokens if limit is None else min(max_new_tokens, limit - len(ids))
            if room < 1:
                raise InputError(f"sample {k}: the prompt ({len(ids)} tokens) leaves no room to generate")
            inp = torch.tensor([ids], device=model_device(model))
            gen = model.generate(inp, attention_mask=torch.ones_like(inp), max_new_tokens=room, do_sample=False,
                                 pad_token_id=pad)
            new = gen[0, inp.shape[1]:].tolist()
            if eos is not None and eos in new:
                new = new[: new.index(eos)]
            text = tokenizer.decode(new, skip_special_tokens=True)
            if not text.strip():
                raise InputError(f"sample {k}: the model generated no text; give a target")
            if not prompt[-1:].isspace() and not text[0].isspace():
                joined = list(tokenizer(prompt + text, add_special_tokens=add)["input_ids"])
                if joined[: len(ids)] != ids or joined[len(ids):] != new:
                    text = " " + text  # word-level tokenizers decode without the joining space
            out.append(text)
    return out


def _render(tokenizer: Any, p: Any, k: int, opts: SourceOptions) -> tuple[str, list[tuple[int, int]], bool]:
    """(rendered text, regions splitters work in, add_special_tokens)."""
    from .conversation import render_conversation

    if isinstance(p, str):
        return p, [(0, len(p))], True
    r = render_conversation(tokenizer, p, chat_template=opts.chat_template,
                            add_generation_prompt=opts.add_generation_prompt, index=k)
    return r.text, r.content_spans, False


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
    from ..engines.prep import context_limit, is_encoder_decoder, load_model_and_tokenizer, model_device, model_guard
    from .ablation import ablate_sample
    from .forward import Forwarder, encode_prompt
    from .splitting import find_substrings, split_text

    if method in ("at2", "attention"):  # one forward per batch of samples (attrib_mlops.sources.at2)
        from .at2.attribute import attribute_at2

        return attribute_at2(model, tokenizer, prompts, targets, sources, method, sample_ids=sample_ids, **options)
    opts = parse_source_options(options)
    if method not in METHODS:
        raise UnknownMethodError(f"unknown source attribution method {method!r}; valid: {', '.join(METHODS)}")
    prompt_list = _prompt_list(prompts)
    n = len(prompt_list)
    target_list = [targets] if isinstance(targets, str) else (list(targets) if targets is not None else None)
    if target_list is not None and len(target_list) != n:
        raise InputError(f"got {n} prompts but {len(target_list)} targets; give one target per prompt")
    if sample_ids is not None and len(sample_ids) != n:
        raise InputError(f"got {n} prompts but {len(sample_ids)} sample_ids")
    specs = _source_specs(sources, n)

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

    rendered = [_render(tokenizer, p, k, opts) for k, p in enumerate(prompt_list)]
    for k, (spec, p) in enumerate(zip(specs, prompt_list)):
        if spec == "turn" and isinstance(p, str):
            raise InputError(f"prompt {k}: sources='turn' needs a conversation (a list of messages), got a string")
    limit = context_limit(model)
    generated = target_list is None
    if generated:
        target_list = generate_continuations(model, tokenizer, [r[0] for r in rendered], [r[2] for r in rendered],
                                             opts.max_new_tokens, limit)

    from tqdm.auto import tqdm

    from ..api import library_versions

    versions = library_versions()
    fwd = Forwarder(model, tokenizer, device, opts.max_tokens_per_forward, opts.padding)
    results: list[SourceAttribution] = []
    bar = tqdm(total=n, desc="source ablations", unit="sample", disable=not opts.show_progress)
    with model_guard(model), torch.no_grad():
        for k, ((text, regions, add), spec, target) in enumerate(zip(rendered, specs, target_list)):
            if not isinstance(target, str):
                raise InputError(f"targets[{k}] must be a string, got {type(target).__name__}")
            sid = sample_ids[k] if sample_ids is not None else None
            s = encode_prompt(tokenizer, text, target, add_special_tokens=add, limit=limit, index=k, sample_id=sid)
            if isinstance(spec, str):
                spans = split_text(text, spec, regions, s.offsets)
            else:
                spans = find_substrings(text, spec, k)
            if not spans:
                raise InputError(
                    f"prompt {k} has zero sources with sources={spec!r}; give a prompt with text to split, "
                    "or explicit source substrings"
                )
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
