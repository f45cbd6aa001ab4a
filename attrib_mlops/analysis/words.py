"""Subword-to-word aggregation of attribution rows (pure numpy, any tokenizer).

A word is a run of consecutive subword tokens. Which tokens form a word comes,
in order of preference, from

* ``word_ids`` (a fast tokenizer's ``encoding.word_ids()``; the classifier
  engine stores them in ``info["word_ids"]``),
* character ``offsets`` plus the text (tokens whose spans touch with no gap
  belong to one word, so ``"film,"`` is one word),
* the tokens' own markers: WordPiece continues a word with ``##``, SentencePiece
  starts one with ``▁``, GPT-2's byte-level BPE with ``Ġ``.

Special tokens ([CLS], [SEP], <s>...) never join a word: each stays a row of
its own and keeps its flag. A word's row is the ``sum``, ``mean`` or ``max``
of its pieces' rows; ``max`` keeps the signed value of largest magnitude (the
plain maximum for non-negative attributions). NaN cells are left out; a cell
whose pieces are all NaN stays NaN.

For decoder-only results (rows = prompt then continuation) only the prompt
rows are grouped; the continuation rows stay tokens because they are also the
columns, so the future mask keeps its meaning.

Example:
    >>> import numpy as np
    >>> from attrib_mlops.result import AttributionResult
    >>> r = AttributionResult(np.array([[0.1], [0.3], [0.2], [0.4], [0.1]]),
    ...                       ["[CLS]", "lack", "##lus", "##ter", "[SEP]"], ["negative"], "saliency", "native",
    ...                       n_prompt=5, info={"special_tokens_mask": [1, 0, 0, 0, 1]})
    >>> w = aggregate_words(r, "sum")
    >>> w.source_tokens, [round(float(x), 3) for x in w.matrix[:, 0]]
    (['[CLS]', 'lackluster', '[SEP]'], [0.1, 0.9, 0.1])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from attrib_mlops.errors import InputError
from attrib_mlops.result import AttributionResult

__all__ = [
    "AGGREGATIONS",
    "SCHEMES",
    "detect_scheme",
    "word_ids_from_tokens",
    "word_ids_from_offsets",
    "word_groups",
    "aggregate_rows",
    "word_strings",
    "aggregate_words",
]

AGGREGATIONS = ("sum", "mean", "max")
#: scheme -> (marker, True if the marker starts a word / False if it continues one)
SCHEMES: dict[str, tuple[str, bool]] = {
    "wordpiece": ("##", False),
    "sentencepiece": ("\u2581", True),
    "bytelevel": ("\u0120", True),
}


def detect_scheme(tokens: Sequence[str]) -> str:
    """``wordpiece``, ``sentencepiece``, ``bytelevel`` or ``whitespace`` (one token = one word), from the markers.

    >>> detect_scheme(["\u2581the", "\u2581fil", "m"]), detect_scheme(["the", "film"])
    ('sentencepiece', 'whitespace')
    """
    for name in ("sentencepiece", "bytelevel", "wordpiece"):
        marker = SCHEMES[name][0]
        if any(t.startswith(marker) and (name != "wordpiece" or len(t) > 2) for t in tokens):
            return name
    return "whitespace"


def _special(special_mask: Sequence[int] | None, n: int) -> list[bool]:
    if special_mask is None:
        return [False] * n
    if len(special_mask) != n:
        raise InputError(f"special_mask has {len(special_mask)} entries for {n} tokens")
    return [bool(x) for x in special_mask]


def word_ids_from_tokens(
    tokens: Sequence[str], scheme: str = "auto", special_mask: Sequence[int] | None = None
) -> list[int | None]:
    """Word index of each token from its marker (None for special tokens).

    >>> word_ids_from_tokens(["[CLS]", "un", "##fair", "film", "[SEP]"], special_mask=[1, 0, 0, 0, 1])
    [None, 0, 0, 1, None]
    >>> word_ids_from_tokens(["Great", "\u0120fil", "m", "!"])
    [0, 1, 1, 1]
    """
    tokens = [str(t) for t in tokens]
    special = _special(special_mask, len(tokens))
    if scheme == "auto":
        scheme = detect_scheme([t for t, s in zip(tokens, special) if not s])
    if scheme not in SCHEMES and scheme != "whitespace":
        raise InputError(f"unknown subword scheme {scheme!r}; valid: auto, whitespace, {', '.join(SCHEMES)}")
    out: list[int | None] = []
    word = -1
    prev_word = False  # the previous token belongs to a word (not special, not the start)
    for t, s in zip(tokens, special):
        if s:
            out.append(None)
            prev_word = False
            continue
        if scheme == "whitespace":
            new = True
        else:
            marker, starts = SCHEMES[scheme]
            has = t.startswith(marker)
            new = has if starts else not has
            new = new or not prev_word
        if new:
            word += 1
        out.append(word)
        prev_word = True
    return out


def word_ids_from_offsets(
    offsets: Sequence[Sequence[int]], text: str | None = None, special_mask: Sequence[int] | None = None
) -> list[int | None]:
    """Word index of each token from its character span: touching spans form one word.

    Empty spans (``(0, 0)``, how fast tokenizers mark special tokens) and
    flagged special tokens get None. Without ``text`` any gap separates words;
    with it, only a gap holding whitespace does (characters the tokenizer
    dropped do not break a word).

    >>> word_ids_from_offsets([(0, 0), (0, 2), (2, 6), (7, 11), (11, 12), (0, 0)])
    [None, 0, 0, 1, 1, None]
    """
    special = _special(special_mask, len(offsets))
    out: list[int | None] = []
    word, prev_end = -1, None
    for (a, b), s in zip(offsets, special):
        a, b = int(a), int(b)
        if s or a == b:
            out.append(None)
            prev_end = None
            continue
        joined = prev_end is not None and a == prev_end
        if text is not None and prev_end is not None and prev_end < a:
            gap = text[prev_end:a]
            joined = not any(c.isspace() for c in gap)  # characters the tokenizer dropped, no word break
        if not joined:
            word += 1
        out.append(word)
        prev_end = b
    return out


def word_groups(word_ids: Sequence[int | None], n_group: int | None = None) -> list[list[int]]:
    """Token indices of each output row: consecutive tokens with the same word id; None tokens alone.

    Only the first ``n_group`` tokens are grouped (default: all); later tokens stay alone.

    >>> word_groups([None, 0, 0, 1, None])
    [[0], [1, 2], [3], [4]]
    """
    n = len(word_ids)
    n_group = n if n_group is None else int(n_group)
    groups: list[list[int]] = []
    prev: int | None = None
    for i, w in enumerate(word_ids):
        if w is not None and i < n_group and w == prev:
            groups[-1].append(i)
        else:
            groups.append([i])
        prev = w if i < n_group else None
    return groups


def aggregate_rows(matrix: np.ndarray, groups: Sequence[Sequence[int]], how: str = "sum") -> np.ndarray:
    """One row per group: the ``sum``, ``mean`` or ``max`` (largest magnitude, signed) of its rows.

    >>> aggregate_rows(np.array([[1.0], [-3.0], [2.0]]), [[0], [1, 2]], "max").tolist()
    [[1.0], [-3.0]]
    """
    if how not in AGGREGATIONS:
        raise InputError(f"unknown word aggregation {how!r}; valid: {', '.join(AGGREGATIONS)}")
    a = np.asarray(matrix, dtype=np.float64)
    if a.ndim != 2:
        raise InputError(f"matrix must be 2-D, got shape {a.shape}")
    covered = sorted(i for g in groups for i in g)
    if covered != list(range(a.shape[0])):
        raise InputError(f"groups must cover rows 0..{a.shape[0] - 1} exactly once")
    out = np.full((len(groups), a.shape[1]), np.nan)
    for k, g in enumerate(groups):
        block = a[list(g)]
        ok = ~np.isnan(block)
        any_ok = ok.any(0)
        if how == "sum":
            v = np.where(ok, block, 0.0).sum(0)
        elif how == "mean":
            v = np.where(ok, block, 0.0).sum(0) / np.maximum(ok.sum(0), 1)
        else:
            mag = np.where(ok, np.abs(block), -1.0)
            v = block[mag.argmax(0), np.arange(block.shape[1])]
        out[k] = np.where(any_ok, v, np.nan)
    return out.astype(np.float32)


def word_strings(tokens: Sequence[str], groups: Sequence[Sequence[int]], scheme: str = "auto") -> list[str]:
    """The text of each group, markers removed (``["un", "##fair"]`` -> ``"unfair"``)."""
    tokens = [str(t) for t in tokens]
    if scheme == "auto":
        scheme = detect_scheme(tokens)
    out = []
    for g in groups:
        pieces = [tokens[i] for i in g]
        if len(g) == 1 and scheme == "whitespace":
            out.append(pieces[0])
            continue
        if scheme == "wordpiece":
            s = pieces[0] + "".join(p[2:] if p.startswith("##") else p for p in pieces[1:])
        elif scheme in SCHEMES:
            s = "".join(pieces)
            marker = SCHEMES[scheme][0]
            s = s[len(marker):] if s.startswith(marker) and len(s) > len(marker) else s
        else:
            s = "".join(pieces)
        out.append(s)
    return out


def aggregate_words(
    result: AttributionResult,
    how: str = "sum",
    *,
    word_ids: Sequence[int | None] | None = None,
    scheme: str = "auto",
) -> AttributionResult:
    """A copy of ``result`` whose rows are words instead of subword tokens.

    Args:
        result: any attribution result (classifier, causal or encoder-decoder).
        how: ``sum``, ``mean`` or ``max`` of a word's pieces.
        word_ids: one word id per source token (None = alone); default
            ``info["word_ids"]``, else ``info["offsets"]``, else the token markers.
        scheme: subword scheme for the markers (``auto`` detects it).

    Returns:
        A new result (the input is unchanged) with ``source_tokens`` = words,
        ``info["word_aggregation"]`` = ``{"how", "source", "groups"}`` and
        ``info["special_tokens_mask"]`` remapped to the word rows.
    """
    n = len(result.source_tokens)
    info = result.info or {}
    special = info.get("special_tokens_mask")
    if special is not None and len(special) != n:
        special = None
    if word_ids is not None:
        if len(word_ids) != n:
            raise InputError(f"word_ids has {len(word_ids)} entries but the result has {n} source tokens")
        ids, source = list(word_ids), "word_ids"
    elif info.get("word_ids") is not None and len(info["word_ids"]) == n:
        ids, source = list(info["word_ids"]), "info.word_ids"
    elif info.get("offsets") is not None and len(info["offsets"]) == n:
        ids, source = word_ids_from_offsets(info["offsets"], result.prompt, special), "info.offsets"
    else:
        s = detect_scheme(result.source_tokens) if scheme == "auto" else scheme
        ids, source = word_ids_from_tokens(result.source_tokens, s, special), f"tokens:{s}"
    if special is not None:
        ids = [None if sp else w for w, sp in zip(ids, special)]
    n_prompt = int(result.n_prompt)
    groups = word_groups(ids, n_group=n_prompt)
    matrix = aggregate_rows(result.matrix, groups, how)
    words = word_strings(result.source_tokens, groups, scheme)
    words = [w if g[0] < n_prompt else result.source_tokens[g[0]] for w, g in zip(words, groups)]  # = columns
    new_info = dict(info)  # shallow: nested values are not modified
    for k in ("word_ids", "offsets"):
        new_info.pop(k, None)
    new_info["word_aggregation"] = {"how": how, "source": source, "groups": [list(g) for g in groups]}
    if special is not None:
        new_info["special_tokens_mask"] = [int(len(g) == 1 and bool(special[g[0]])) for g in groups]
    n_prompt_words = sum(1 for g in groups if g[0] < n_prompt)
    return AttributionResult(
        matrix=matrix,
        source_tokens=words,
        target_tokens=list(result.target_tokens),
        method=result.method,
        engine=result.engine,
        step_scores={k: np.array(v) for k, v in result.step_scores.items()},
        info=new_info,
        n_prompt=n_prompt_words,
        prompt=result.prompt,
        target=result.target,
        sample_id=result.sample_id,
    )
