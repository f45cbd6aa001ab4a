"""Inputs of a source attribution, prepared once for every method (ablation, AT2, attention).

The one home of what :func:`attrib_mlops.attribute_sources` and the AT2 modules
(:mod:`attrib_mlops.sources.at2.prepare`, training) do before any forward pass: the list of
prompts (strings or conversations), their rendering (chat template), one source spec per
prompt (a splitter name or explicit substrings), the ``turn`` check, the targets (given, or
generated greedily) and the model's context limit.

Example:
    >>> from attrib_mlops.demo.tiny import build_tiny_model
    >>> from attrib_mlops.sources.options import SourceOptions
    >>> model, tok = build_tiny_model(["a", "b", "."], n_layer=1, n_embd=16, n_head=2)
    >>> p = prepare_inputs(model, tok, ["a b . b a ."], [" a"], "sentence", SourceOptions())
    >>> p.texts, p.specs, p.targets, p.generated
    (['a b . b a .'], ['sentence'], [' a'], False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InputError

__all__ = ["PreparedInputs", "prepare_inputs", "prompt_list", "source_specs", "render_prompt",
           "generate_continuations", "source_spans"]


def prompt_list(prompts: Any) -> list[Any]:
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


def source_specs(sources: Any, n: int) -> list[Any]:
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


def render_prompt(tokenizer: Any, p: Any, k: int, opts: SourceOptions) -> tuple[str, list[tuple[int, int]], bool]:
    """(rendered text, regions splitters work in, add_special_tokens)."""
    from .conversation import render_conversation

    if isinstance(p, str):
        return p, [(0, len(p))], True
    r = render_conversation(tokenizer, p, chat_template=opts.chat_template,
                            add_generation_prompt=opts.add_generation_prompt, index=k)
    return r.text, r.content_spans, False



@dataclass
class PreparedInputs:
    """Prompts ready for a source method.

    Attributes:
        prompts: the prompts as given (strings or conversations), one per sample.
        rendered: ``(rendered text, splitter regions, add_special_tokens)`` per prompt.
        specs: one source spec per prompt: a splitter name or a list of substrings.
        targets: the targets (given or generated).
        generated: True when the targets were generated.
        limit: the model's context length (None when unknown).
    """

    prompts: list[Any]
    rendered: list[tuple[str, list[tuple[int, int]], bool]]
    specs: list[Any]
    targets: list[str]
    generated: bool
    limit: int | None

    @property
    def texts(self) -> list[str]:
        return [r[0] for r in self.rendered]


def prepare_inputs(model: Any, tokenizer: Any, prompts: Any, targets: Any, sources: Any, opts: Any,
                   sample_ids: Sequence[str] | None = None) -> PreparedInputs:
    """Validate and render prompts, pair them with source specs and targets (generated when None).

    ``opts`` needs ``chat_template``, ``add_generation_prompt`` and ``max_new_tokens`` (a
    :class:`~attrib_mlops.sources.options.SourceOptions` or an AT2 options object).

    Raises:
        InputError: no or empty prompts, counts of targets / sample ids / source lists that do not
            match the prompts, ``sources="turn"`` for a string prompt, a target that is not a string.
    """
    from ..engines.prep import context_limit

    plist = prompt_list(prompts)
    n = len(plist)
    target_list = [targets] if isinstance(targets, str) else (list(targets) if targets is not None else None)
    if target_list is not None and len(target_list) != n:
        raise InputError(f"got {n} prompts but {len(target_list)} targets; give one target per prompt")
    if sample_ids is not None and len(sample_ids) != n:
        raise InputError(f"got {n} prompts but {len(sample_ids)} sample_ids")
    specs = source_specs(sources, n)
    rendered = [render_prompt(tokenizer, p, k, opts) for k, p in enumerate(plist)]
    for k, (spec, p) in enumerate(zip(specs, plist)):
        if spec == "turn" and isinstance(p, str):
            raise InputError(f"prompt {k}: sources='turn' needs a conversation (a list of messages), got a string")
    limit = context_limit(model)
    generated = target_list is None
    if generated:
        target_list = generate_continuations(model, tokenizer, [r[0] for r in rendered], [r[2] for r in rendered],
                                             opts.max_new_tokens, limit)
    for k, t in enumerate(target_list):
        if not isinstance(t, str):
            raise InputError(f"targets[{k}] must be a string, got {type(t).__name__}")
    return PreparedInputs(plist, rendered, specs, target_list, generated, limit)


def source_spans(text: str, spec: Any, regions: list[tuple[int, int]], offsets: Any, index: int = 0
                 ) -> list[tuple[int, int]]:
    """Character spans of one prompt's sources: a splitter over ``regions`` or explicit substrings.

    >>> source_spans("a b . c .", "sentence", [(0, 9)], None)
    [(0, 5), (6, 9)]

    Raises:
        InputError: a substring not found (or out of order), or zero sources.
    """
    from .splitting import find_substrings, split_text

    spans = split_text(text, spec, regions, offsets) if isinstance(spec, str) else find_substrings(text, spec, index)
    if not spans:
        raise InputError(
            f"prompt {index} has zero sources with sources={spec!r}; give a prompt with text to split, "
            "or explicit source substrings"
        )
    return spans
