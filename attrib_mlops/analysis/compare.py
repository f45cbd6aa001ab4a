"""Compare two result sets by sample id, with token checks: the one place that pairs results.

Two sets of :class:`~attrib_mlops.result.AttributionResult` (two checkpoints, two
models, a baseline and a candidate) are matched by sample id. A matched pair is
compared only when both sides saw the same tokens; otherwise it is *skipped*
with a reason and counted, never compared cell by cell:

``different_prompt_tokens``
    the prompt tokens (or their number) differ: another tokenizer or another prompt;
``different_continuation``
    the target tokens differ (``match="exact"``), or differ from the first token on
    (``match="target_prefix"``);
``different_source_tokens``
    the source rows differ (``match="source"`` compares nothing else).

With ``match="target_prefix"`` two continuations that share a prefix of ``p >= 1``
tokens are compared on that prefix only (the prompt rows and the first ``p``
target columns: every cell there sees exactly the same tokens) and the pair is
marked ``truncated``.

Example:
    >>> import numpy as np
    >>> def r(sid, tgt):
    ...     return AttributionResult(np.ones((2, len(tgt))), ["a", "b"], tgt, "saliency", "native",
    ...                              n_prompt=2, sample_id=sid)
    >>> p = pair_samples([r("s0", ["x"]), r("s1", ["x", "y"])], [r("s1", ["x", "z"]), r("s2", ["x"])],
    ...                  match="target_prefix")
    >>> [(q.sample_id, q.truncated) for q in p.pairs], p.n_shared, p.only_a, p.only_b
    ([('s1', True)], 1, ['s0'], ['s2'])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple

from attrib_mlops.analysis.aggregate import common_prefix_alignment
from attrib_mlops.errors import InputError
from attrib_mlops.result import AttributionResult

__all__ = [
    "Match",
    "SamplePair",
    "Pairing",
    "count_reasons",
    "by_sample_id",
    "shared_ids",
    "first_difference",
    "truncate_targets",
    "pair_samples",
    "PrefixAlignment",
    "align_prefix",
]

Match = Literal["exact", "target_prefix", "source"]
_MATCHES = ("exact", "target_prefix", "source")


def by_sample_id(results: Iterable[AttributionResult]) -> dict[str, AttributionResult]:
    """``{sample id: result}`` (the position as id when a result has none; the first of a repeated id wins)."""
    out: dict[str, AttributionResult] = {}
    for i, r in enumerate(results):
        out.setdefault(str(r.sample_id) if r.sample_id is not None else str(i), r)
    return out


def shared_ids(a: Iterable[str], b: Iterable[str]) -> list[str]:
    """Ids present in both, in the order of ``a``.

    >>> shared_ids(["s2", "s0", "s1"], ["s1", "s2"])
    ['s2', 's1']
    """
    in_b = set(b)
    return [sid for sid in a if sid in in_b]


def first_difference(a: Sequence[str], b: Sequence[str]) -> str:
    """Where two token lists first differ, e.g. ``"position 2: 'x' vs 'y'"`` (or their lengths).

    >>> first_difference(["a", "b"], ["a", "c"]), first_difference(["a"], ["a", "b"])
    ("position 1: 'b' vs 'c'", 'lengths 1 vs 2')
    """
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"position {i}: {x!r} vs {y!r}"
    return f"lengths {len(a)} vs {len(b)}"


def truncate_targets(r: AttributionResult, p: int) -> AttributionResult:
    """The result restricted to its first ``p`` target tokens (and the source rows they can see)."""
    n_prompt = int(r.n_prompt)
    rows = n_prompt + p if r.is_decoder_only else len(r.source_tokens)
    return type(r)(**{
        **vars(r), "matrix": r.matrix[:rows, :p], "source_tokens": r.source_tokens[:rows],
        "target_tokens": r.target_tokens[:p], "step_scores": {k: v[:p] for k, v in r.step_scores.items()},
        "n_prompt": n_prompt,
    })


class SamplePair(NamedTuple):
    """Two results of one sample that may be compared cell by cell.

    Attributes:
        sample_id: the shared id.
        a, b: the two results (truncated to the common target prefix when ``truncated``).
        truncated: compared on a common target prefix only (``match="target_prefix"``).
    """

    sample_id: str
    a: AttributionResult
    b: AttributionResult
    truncated: bool = False


class Pairing:
    """What :func:`pair_samples` found.

    Attributes:
        pairs: comparable pairs, in the order of the first set.
        skipped: ``[{"id", "reason", "detail"}]`` shared samples that are not comparable.
        n_a, n_b: samples on each side; ``only_a``/``only_b``: ids present on one side only.
    """

    def __init__(self, n_a: int = 0, n_b: int = 0, only_a: Sequence[str] = (), only_b: Sequence[str] = ()):
        self.pairs: list[SamplePair] = []
        self.skipped: list[dict[str, Any]] = []
        self.n_a, self.n_b, self.only_a, self.only_b = n_a, n_b, list(only_a), list(only_b)

    @property
    def n_shared(self) -> int:
        """Samples present on both sides (compared or skipped)."""
        return len(self.pairs) + len(self.skipped)

    @property
    def shared_ids(self) -> list[str]:
        return [p.sample_id for p in self.pairs] + [s["id"] for s in self.skipped]

    @property
    def skipped_counts(self) -> dict[str, int]:
        """``{reason: count}`` of the skipped samples."""
        return count_reasons(self.skipped)


def count_reasons(skipped: Iterable[dict[str, Any]]) -> dict[str, int]:
    """``{reason: count}`` of skipped samples (``{"id", "reason", "detail"}`` records), in order of appearance."""
    out: dict[str, int] = {}
    for s in skipped:
        out[s["reason"]] = out.get(s["reason"], 0) + 1
    return out


def _skip_reason(a: AttributionResult, b: AttributionResult, match: str) -> tuple[str, str] | None:
    if match == "source":
        if a.source_tokens != b.source_tokens:
            return "different_source_tokens", first_difference(a.source_tokens, b.source_tokens)
        return None
    if a.prompt_tokens != b.prompt_tokens or int(a.n_prompt) != int(b.n_prompt):
        return "different_prompt_tokens", first_difference(a.prompt_tokens, b.prompt_tokens)
    if match == "exact" and (a.target_tokens != b.target_tokens or a.source_tokens != b.source_tokens):
        return "different_continuation", first_difference(a.target_tokens, b.target_tokens)
    if match == "target_prefix" and common_prefix_alignment(a.target_tokens, b.target_tokens) == 0:
        return "different_continuation", first_difference(a.target_tokens, b.target_tokens)
    return None


def pair_samples(a: Iterable[AttributionResult], b: Iterable[AttributionResult], match: Match = "exact") -> Pairing:
    """Match two result sets by sample id and keep the pairs whose tokens allow a comparison.

    Args:
        a, b: the two result sets (ids: ``sample_id``, or the position when missing).
        match: ``"exact"`` same prompt and target tokens; ``"target_prefix"`` same prompt
            tokens, targets compared on their common prefix; ``"source"`` same source rows only
            (importance vectors of the source tokens).

    Returns:
        :class:`Pairing` (see the module docstring for the skip reasons).
    """
    if match not in _MATCHES:
        raise InputError(f"unknown match {match!r}; valid: {', '.join(_MATCHES)}")
    da, db = by_sample_id(a), by_sample_id(b)
    out = Pairing(n_a=len(da), n_b=len(db), only_a=[s for s in da if s not in db],
                  only_b=[s for s in db if s not in da])
    for sid in shared_ids(da, db):
        ra, rb = da[sid], db[sid]
        why = _skip_reason(ra, rb, match)
        if why is not None:
            out.skipped.append({"id": sid, "reason": why[0], "detail": why[1]})
            continue
        truncated = False
        if match == "target_prefix":
            p = common_prefix_alignment(ra.target_tokens, rb.target_tokens)
            truncated = p < len(ra.target_tokens) or p < len(rb.target_tokens)
            if truncated:
                ra, rb = truncate_targets(ra, p), truncate_targets(rb, p)
        out.pairs.append(SamplePair(sid, ra, rb, truncated))
    return out


class PrefixAlignment(NamedTuple):
    """Common prefixes of two results' source and target tokens.

    Attributes:
        n_source, n_target: lengths of the common prefixes.
        differences: what differs (empty when the tokens are identical).
    """

    n_source: int
    n_target: int
    differences: tuple[str, ...] = ()

    @property
    def same_tokens(self) -> bool:
        return not self.differences


def _mismatch(kind: str, a: Sequence[str], b: Sequence[str], k: int) -> str:
    left = repr(a[k]) if k < len(a) else "<end>"
    right = repr(b[k]) if k < len(b) else "<end>"
    return f"{kind} tokens differ from position {k} ({left} vs {right}; lengths {len(a)} and {len(b)})"


def align_prefix(a: AttributionResult, b: AttributionResult) -> PrefixAlignment:
    """The cells two results share: the common prefixes of their source and of their target tokens.

    >>> import numpy as np
    >>> x = AttributionResult(np.ones((2, 1)), ["a", "b"], ["c"], "saliency", "native", n_prompt=2)
    >>> y = AttributionResult(np.ones((2, 1)), ["a", "z"], ["c"], "saliency", "native", n_prompt=2)
    >>> align_prefix(x, y)
    PrefixAlignment(n_source=1, n_target=1, differences=("source tokens differ from position 1 ('b' vs 'z'; lengths 2 and 2)",))
    """
    ks = common_prefix_alignment(a.source_tokens, b.source_tokens)
    kt = common_prefix_alignment(a.target_tokens, b.target_tokens)
    parts = []
    if not ks == len(a.source_tokens) == len(b.source_tokens):
        parts.append(_mismatch("source", a.source_tokens, b.source_tokens, ks))
    if not kt == len(a.target_tokens) == len(b.target_tokens):
        parts.append(_mismatch("target", a.target_tokens, b.target_tokens, kt))
    return PrefixAlignment(ks, kt, tuple(parts))
