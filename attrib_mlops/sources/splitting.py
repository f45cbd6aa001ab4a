"""Splitting a prompt into sources, and removing sources from its text.

A source is a character span ``[start, end)`` of the rendered prompt. Splitters
work inside *regions*: the whole prompt for a plain string, the content of each
message for a conversation (chat-template markup is never a source).

* ``sentence``: pysbd's rule-based segmenter (Golden Rules, no model, nothing
  downloaded at run time), each sentence trimmed of surrounding whitespace;
* ``line``: non-blank lines, trimmed;
* ``turn``: one source per message (conversations only);
* ``token``: one source per prompt token (from the tokenizer's offsets);
* an explicit list of substrings, found left to right in order.

``remove_spans`` is the text ablation of ContextCite's ``remove`` mode: the
dropped spans are cut out together with one adjacent whitespace run, so
``"A. B. C."`` without ``B.`` reads ``"A. C."``.

Example:
    >>> text = "One. Two.\\nThree"
    >>> [text[a:b] for a, b in split_text(text, "sentence")]
    ['One.', 'Two.', 'Three']
    >>> remove_spans(text, [(0, 4), (5, 9), (10, 15)], [True, False, True])
    'One. Three'
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from ..errors import InputError

__all__ = ["SPLITTERS", "split_text", "find_substrings", "remove_spans", "trim_span"]

#: Splitter names accepted by ``attribute_sources(sources=...)``.
SPLITTERS = ("sentence", "line", "turn", "token")

Span = tuple[int, int]


@functools.lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False, char_span=True)


def trim_span(text: str, a: int, b: int) -> Span:
    """Shrink ``[a, b)`` so it neither starts nor ends with whitespace."""
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def _sentences(text: str, a: int, b: int) -> list[Span]:
    chunk = text[a:b]
    if not chunk.strip():
        return []
    out = []
    cursor = 0
    for seg in _segmenter().segment(chunk):
        # pysbd's spans are consecutive; re-anchor on the text to be safe with repeats
        start = chunk.find(seg.sent, cursor)
        if start < 0:  # pragma: no cover - pysbd returns verbatim pieces when clean=False
            start = seg.start
        end = start + len(seg.sent)
        cursor = end
        s = trim_span(text, a + start, a + end)
        if s[1] > s[0]:
            out.append(s)
    return out


def _lines(text: str, a: int, b: int) -> list[Span]:
    out = []
    pos = a
    for line in text[a:b].splitlines(keepends=True):
        s = trim_span(text, pos, pos + len(line))
        if s[1] > s[0]:
            out.append(s)
        pos += len(line)
    return out


def split_text(
    text: str,
    how: str,
    regions: Sequence[Span] | None = None,
    token_offsets: Sequence[Span] | None = None,
) -> list[Span]:
    """Source spans of ``text`` by splitter name, inside ``regions`` (default: the whole text).

    ``token`` needs ``token_offsets`` (character spans of the prompt tokens, from a
    fast tokenizer); tokens that are only whitespace are not sources.
    """
    regions = list(regions) if regions is not None else [(0, len(text))]
    if how == "sentence":
        return [s for a, b in regions for s in _sentences(text, a, b)]
    if how == "line":
        return [s for a, b in regions for s in _lines(text, a, b)]
    if how == "turn":
        return [trim_span(text, a, b) for a, b in regions if text[a:b].strip()]
    if how == "token":
        if token_offsets is None:
            raise InputError("sources='token' needs a fast tokenizer (one that returns offsets)")
        out = []
        for ta, tb in token_offsets:
            s = trim_span(text, ta, tb)
            if s[1] > s[0] and any(ra <= s[0] and s[1] <= rb for ra, rb in regions):
                out.append(s)
        return out
    raise InputError(f"unknown source splitter {how!r}; valid: {', '.join(SPLITTERS)}, or a list of substrings")


def find_substrings(text: str, subs: Sequence[str], sample: int = 0) -> list[Span]:
    """Spans of ``subs`` found left to right in ``text``; raises if one is missing or out of order."""
    out: list[Span] = []
    cursor = 0
    for i, sub in enumerate(subs):
        if not isinstance(sub, str) or not sub:
            raise InputError(f"prompt {sample}: source {i} must be a non-empty string, got {sub!r}")
        at = text.find(sub, cursor)
        if at < 0:
            anywhere = text.find(sub)
            if anywhere >= 0:
                prev = subs[i - 1] if i else ""
                raise InputError(
                    f"prompt {sample}: source {i} {sub[:40]!r} occurs only before the end of source {i - 1} "
                    f"{prev[:40]!r}; list the sources in the order they occur in the prompt, without overlaps"
                )
            raise InputError(
                f"prompt {sample}: source {i} {sub[:40]!r} is not a substring of the prompt; "
                "give sources copied verbatim from the prompt (for a conversation, from the message contents)"
            )
        out.append((at, at + len(sub)))
        cursor = at + len(sub)
    return out


def remove_spans(text: str, spans: Sequence[Span], keep: Sequence[bool]) -> str:
    """``text`` without the spans whose ``keep`` is False (and one adjacent whitespace run each).

    The whitespace run after a dropped span goes with it; at the end of a
    region (no whitespace after, or only text that is not whitespace) the run
    before it goes instead, so no doubled or dangling separator is left.
    """
    if len(spans) != len(keep):
        raise InputError(f"got {len(keep)} keep flags for {len(spans)} sources")
    cuts: list[Span] = []
    for (a, b), k in zip(spans, keep):
        if k:
            continue
        e = b
        while e < len(text) and text[e].isspace():
            e += 1
        if e > b and e < len(text):
            cuts.append((a, e))
            continue
        s = a
        while s > 0 and text[s - 1].isspace():
            s -= 1
        cuts.append((s, b) if e == b or e == len(text) else (a, e))
    if not cuts:
        return text
    cuts.sort()
    merged = [cuts[0]]
    for a, b in cuts[1:]:
        if a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    parts, pos = [], 0
    for a, b in merged:
        parts.append(text[pos:a])
        pos = b
    parts.append(text[pos:])
    return "".join(parts)
