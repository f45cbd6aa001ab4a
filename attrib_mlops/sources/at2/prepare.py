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
    from ..prepare import prompt_list, render_prompt

    plist = prompt_list(prompts)
    return plist, [render_prompt(tokenizer, p, k, opts) for k, p in enumerate(plist)]


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
    (a :class:`~attrib_mlops.sources.options.SourceOptions` or the AT2 options); the inputs
    are prepared as for the ablation (:func:`attrib_mlops.sources.prepare.prepare_inputs`).
    Returns ``(samples, generated)``.
    """
    from ..forward import encode_prompt
    from ..prepare import prepare_inputs, source_spans

    prep = prepare_inputs(model, tokenizer, prompts, targets, sources, opts, sample_ids)
    limit = prep.limit
    out = []
    for k, ((text, regions, add), spec, target) in enumerate(zip(prep.rendered, prep.specs, prep.targets)):
        sid = sample_ids[k] if sample_ids is not None else None
        offsets = None
        if isinstance(spec, str):  # splitters may cut at token boundaries ("token")
            offsets = encode_prompt(tokenizer, text, target, add_special_tokens=add, limit=limit, index=k).offsets
        spans = source_spans(text, spec, regions, offsets, k)
        out.append(sample_from_text(tokenizer, text, spans, target, add_special_tokens=add, limit=limit, index=k,
                                    splitter=spec if isinstance(spec, str) else "explicit", sample_id=sid))
    return out, prep.generated
