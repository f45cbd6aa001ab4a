"""Prompts, targets and sources -> teacher-forced samples with their source/token membership.

The same preparation as :func:`attrib_mlops.attribute_sources` (rendering of
conversations, splitters, explicit substrings, generated targets), so an AT2
result's sources and spans are exactly those of an ablation result on the
same inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import InputError
from ..forward import Prepared

__all__ = ["SourceSample", "prepare_samples", "sample_from_text"]

Span = tuple[int, int]


@dataclass
class SourceSample:
    """One prompt ready for AT2: rendered text, source spans, encoded sample and membership.

    Attributes:
        text: the rendered prompt the spans index into.
        spans: character spans of the sources.
        sample: the teacher-forced sample (prompt ids with offsets, target ids).
        membership: ``[P, S]`` bool, prompt token ``i`` overlaps source ``j``.
        splitter: the splitter name, or ``"explicit"``.
        sample_id: probe id when known.
    """

    text: str
    spans: list[Span]
    sample: Prepared
    membership: np.ndarray
    splitter: str
    sample_id: str | None = None

    @property
    def n_sources(self) -> int:
        return len(self.spans)


def sample_from_text(tokenizer: Any, text: str, spans: Sequence[Span], target: str, *, add_special_tokens: bool,
                     limit: int | None, index: int = 0, splitter: str = "explicit",
                     sample_id: str | None = None) -> SourceSample:
    """Encode a rendered prompt with known source spans (e.g. those of an ablation result)."""
    from ..ablation import token_membership
    from ..forward import encode_prompt

    s = encode_prompt(tokenizer, text, target, add_special_tokens=add_special_tokens, limit=limit, index=index,
                      sample_id=sample_id)
    spans = [(int(a), int(b)) for a, b in spans]
    if not spans:
        raise InputError(f"prompt {index} has zero sources; give a prompt with text to split, or explicit sources")
    return SourceSample(text, spans, s, token_membership(s.offsets, spans, s.n_prompt), splitter, sample_id)


def render_prompts(tokenizer: Any, prompts: Any, opts: Any) -> tuple[list[Any], list[tuple[str, list[Span], bool]]]:
    """``(prompt list, [(rendered text, splitter regions, add_special_tokens)])``."""
    from ..api import _prompt_list, _render

    plist = _prompt_list(prompts)
    return plist, [_render(tokenizer, p, k, opts) for k, p in enumerate(plist)]


def prepare_samples(
    model: Any,
    tokenizer: Any,
    prompts: Any,
    targets: Any,
    sources: Any,
    opts: Any,
    sample_ids: Sequence[str] | None = None,
) -> tuple[list[SourceSample], bool]:
    """Render, split and encode every prompt; generate targets when ``targets`` is None.

    ``opts`` needs ``chat_template``, ``add_generation_prompt`` and ``max_new_tokens``
    (a :class:`~attrib_mlops.sources.options.SourceOptions` or the AT2 options).
    Returns ``(samples, generated)``.
    """
    from ...engines.prep import context_limit
    from ..api import _source_specs, generate_continuations
    from ..splitting import find_substrings, split_text

    plist, rendered = render_prompts(tokenizer, prompts, opts)
    n = len(plist)
    target_list = [targets] if isinstance(targets, str) else (list(targets) if targets is not None else None)
    if target_list is not None and len(target_list) != n:
        raise InputError(f"got {n} prompts but {len(target_list)} targets; give one target per prompt")
    if sample_ids is not None and len(sample_ids) != n:
        raise InputError(f"got {n} prompts but {len(sample_ids)} sample_ids")
    specs = _source_specs(sources, n)
    for k, (spec, p) in enumerate(zip(specs, plist)):
        if spec == "turn" and isinstance(p, str):
            raise InputError(f"prompt {k}: sources='turn' needs a conversation (a list of messages), got a string")
    limit = context_limit(model)
    generated = target_list is None
    if generated:
        target_list = generate_continuations(model, tokenizer, [r[0] for r in rendered], [r[2] for r in rendered],
                                             opts.max_new_tokens, limit)
    out = []
    for k, ((text, regions, add), spec, target) in enumerate(zip(rendered, specs, target_list)):
        if not isinstance(target, str):
            raise InputError(f"targets[{k}] must be a string, got {type(target).__name__}")
        sid = sample_ids[k] if sample_ids is not None else None
        if isinstance(spec, str):
            from ..forward import encode_prompt

            offsets = encode_prompt(tokenizer, text, target, add_special_tokens=add, limit=limit, index=k).offsets
            spans = split_text(text, spec, regions, offsets)
        else:
            spans = find_substrings(text, spec, k)
        if not spans:
            raise InputError(
                f"prompt {k} has zero sources with sources={spec!r}; give a prompt with text to split, "
                "or explicit source substrings"
            )
        out.append(sample_from_text(tokenizer, text, spans, target, add_special_tokens=add, limit=limit, index=k,
                                    splitter=spec if isinstance(spec, str) else "explicit", sample_id=sid))
    return out, generated
