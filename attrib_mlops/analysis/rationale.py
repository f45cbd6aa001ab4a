"""Classifier probe metrics: accuracy and alignment of attributions with human rationales (pure numpy).

A rationale is the set of words a human would point to (character spans of
the text). For one result and its attributed class, tokens (or words, after
:func:`~attrib_mlops.analysis.words.aggregate_words`) are ranked by the
magnitude of their attribution, special tokens left out, and compared with
the binary rationale relevance:

* ``hit@k``: the best-ranked rationale item is within the top ``k`` (ties with
  a non-rationale item count against it, as in ``ground_truth_alignment``);
* ``precision@r``: share of rationale items among the top ``r`` = number of
  rationale items (R-precision);
* ``kendall_tau``: Kendall's tau-b between the scores and the relevance.
  With a binary relevance most pairs are ties, so tau-b cannot reach 1: its
  ceiling ``sqrt(1 - ties / pairs)`` (a perfect ranking) is reported as
  ``kendall_tau_max`` and ``kendall_tau_norm = tau / max`` rescales it to
  ``[-1, 1]`` (1 = every rationale item ranked above every other item). The
  seed's human-annotation figures (0.72 gradient, 0.78 integrated gradients,
  0.65 attention) were rank correlations against graded annotations; compare
  them with ``kendall_tau_norm``, keeping this difference in mind.

Example:
    >>> import numpy as np
    >>> round(kendall_tau_b(np.array([3.0, 2.0, 1.0]), np.array([1, 0, 0])), 4)
    0.8165
    >>> round(kendall_ceiling(np.array([1, 0, 0])), 4)
    0.8165
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from attrib_mlops.errors import InputError
from attrib_mlops.result import AttributionResult

__all__ = [
    "accuracy",
    "kendall_tau_b",
    "kendall_ceiling",
    "rank_alignment",
    "rationale_relevance",
    "rationale_alignment",
    "rationale_report",
    "is_classifier_result",
    "gold_label",
    "rationale_positions",
    "rationale_rank",
]


def accuracy(predicted: Sequence[Any], gold: Sequence[Any]) -> float:
    """Share of equal pairs.

    >>> accuracy(["pos", "neg", "pos"], ["pos", "pos", "pos"])
    0.6666666666666666
    """
    if len(predicted) != len(gold):
        raise InputError(f"accuracy needs as many predictions as labels, got {len(predicted)} and {len(gold)}")
    if not len(gold):
        raise InputError("accuracy of an empty probe set is undefined")
    return float(np.mean([str(p) == str(g) for p, g in zip(predicted, gold)]))


def _pair_signs(v: np.ndarray) -> np.ndarray:
    iu = np.triu_indices(v.size, k=1)
    return np.sign(v[iu[1]] - v[iu[0]])


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b (tie-corrected); NaN when either vector is constant or has fewer than 2 items."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise InputError(f"kendall_tau_b needs two 1-D vectors of the same length, got {x.shape} and {y.shape}")
    if x.size < 2:
        return math.nan
    dx, dy = _pair_signs(x), _pair_signs(y)
    n0 = dx.size
    n1, n2 = int((dx == 0).sum()), int((dy == 0).sum())
    denom = math.sqrt((n0 - n1) * (n0 - n2))
    return float((dx * dy).sum() / denom) if denom > 0 else math.nan


def kendall_ceiling(relevance: np.ndarray) -> float:
    """The largest tau-b any tie-free ranking reaches against ``relevance``: ``sqrt(1 - ties / pairs)``."""
    y = np.asarray(relevance, dtype=np.float64)
    if y.size < 2:
        return math.nan
    dy = _pair_signs(y)
    return math.sqrt(1.0 - (dy == 0).sum() / dy.size) if (dy != 0).any() else math.nan


def rank_alignment(scores: np.ndarray, relevance: np.ndarray, k: int = 1) -> dict[str, float]:
    """``hit@k``, ``precision@r``, ``kendall_tau`` (+ ``_max``, ``_norm``) of scores against a binary relevance.

    Scores are used as given (pass magnitudes); NaN scores rank last.
    """
    s = np.asarray(scores, dtype=np.float64)
    rel = np.asarray(relevance).astype(bool)
    if s.shape != rel.shape or s.ndim != 1:
        raise InputError(f"scores and relevance must be 1-D of the same length, got {s.shape} and {rel.shape}")
    if not rel.any():
        raise InputError("the rationale covers none of the ranked items; check the spans and the text")
    if int(k) < 1:
        raise InputError(f"k must be >= 1, got {k}")
    finite = np.isfinite(s)
    low = float(s[finite].min()) - 1.0 if finite.any() else 0.0
    s = np.where(finite, s, low)  # undefined scores rank last (tied with each other)
    best = min(1 + int(np.sum(s > s[p])) + int(np.sum((s == s[p]) & ~rel)) for p in np.flatnonzero(rel))
    r = int(rel.sum())
    top = np.argsort(-s, kind="stable")[:r]
    tau = kendall_tau_b(s, rel.astype(float))
    tmax = kendall_ceiling(rel.astype(float))
    return {
        f"hit@{int(k)}": float(best <= k),
        "precision@r": float(rel[top].mean()),
        "kendall_tau": tau,
        "kendall_tau_max": tmax,
        "kendall_tau_norm": tau / tmax if tmax and not math.isnan(tau) else math.nan,
    }


def is_classifier_result(result: Any) -> bool:
    """Does ``result`` attribute a sequence classifier's classes (``info["task"]``)?"""
    return isinstance(result, AttributionResult) and (result.info or {}).get("task") == "sequence_classification"


def gold_label(result: AttributionResult) -> str | None:
    """The sample's true label: ``info["gold_label"]`` (jobs set it from the probe set), else the one
    attributed label when it was given (``info["target_source"]`` is not ``predicted``); else None."""
    info = result.info or {}
    if info.get("gold_label") is not None:
        return str(info["gold_label"])
    if info.get("target_source", "predicted") != "predicted" and len(result.target_tokens) == 1:
        return str(result.target_tokens[0])
    return None


def rationale_positions(result: AttributionResult, spans: Sequence[Sequence[int]]) -> list[int]:
    """Rows of the non-special tokens of a classifier result that overlap a rationale span.

    Needs ``info["offsets"]`` (character offsets of a fast tokenizer, stored by the classifier engine).

    >>> r = AttributionResult(np.ones((4, 1)), ["[CLS]", "so", "dull", "[SEP]"], ["negative"], "saliency",
    ...                       "native", n_prompt=4, info={"offsets": [[0, 0], [0, 2], [3, 7], [0, 0]],
    ...                                                   "special_tokens_mask": [1, 0, 0, 1]})
    >>> rationale_positions(r, [[3, 7]])
    [2]
    """
    info = result.info or {}
    offsets = info.get("offsets")
    if offsets is None or len(offsets) != len(result.source_tokens):
        raise InputError("rationale positions need the token offsets in info['offsets'] (a fast tokenizer's "
                         "classifier result)")
    special = info.get("special_tokens_mask") or [0] * len(offsets)
    return [i for i, ((a, b), sp) in enumerate(zip(offsets, special)) if not sp and _overlaps(int(a), int(b), spans)]


def rationale_rank(result: AttributionResult, positions: Sequence[int], k: int = 1,
                   column: int = 0) -> dict[str, float] | None:
    """:func:`rank_alignment` of ``|A[:, column]|`` over the non-special rows against the rationale rows.

    Special tokens ([CLS], [SEP]: ``info["special_tokens_mask"]``) are left out of the ranking.
    None when no rationale row is among the ranked ones (e.g. the rationale was truncated away).

    >>> r = AttributionResult(np.array([[9.0], [0.1], [0.5], [8.0]]), ["[CLS]", "so", "dull", "[SEP]"],
    ...                       ["negative"], "saliency", "native", n_prompt=4,
    ...                       info={"special_tokens_mask": [1, 0, 0, 1]})
    >>> rationale_rank(r, [2])["hit@1"]
    1.0
    """
    info = result.info or {}
    n = len(result.source_tokens)
    special = info.get("special_tokens_mask") or [0] * n
    keep = [i for i in range(n) if not special[i]]
    truth = {int(p) for p in positions}
    rel = np.array([i in truth for i in keep], dtype=bool)
    if not rel.any() or not 0 <= column < result.matrix.shape[1]:
        return None
    return rank_alignment(np.abs(np.asarray(result.matrix, dtype=np.float64)[keep, column]), rel, k)


def _overlaps(a: int, b: int, spans: Sequence[Sequence[int]]) -> bool:
    return a < b and any(a < int(e) and int(s) < b for s, e in spans)


def rationale_relevance(
    result: AttributionResult, spans: Sequence[Sequence[int]], level: str = "word", how: str = "sum",
    column: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(scores, relevance, items)`` of a classifier result's non-special tokens or words.

    ``scores`` = ``|A[:, column]|`` (words: the ``how`` aggregate of their pieces),
    ``relevance`` = the item overlaps a rationale span. Needs ``info["offsets"]``
    (the classifier engine stores them).
    """
    if level not in ("word", "token"):
        raise InputError(f"level must be 'word' or 'token', got {level!r}")
    info = result.info or {}
    offsets = info.get("offsets")
    if offsets is None or len(offsets) != len(result.source_tokens):
        raise InputError("rationale alignment needs the token offsets in info['offsets'] (a fast tokenizer's "
                         "classifier result)")
    if not 0 <= column < len(result.target_tokens):
        raise InputError(f"column {column} out of range for {len(result.target_tokens)} attributed classes")
    special = info.get("special_tokens_mask") or [0] * len(offsets)
    tok_rel = np.array([_overlaps(int(a), int(b), spans) for a, b in offsets])
    if level == "token":
        keep = np.array([not s for s in special])
        return (np.abs(result.matrix[keep, column]), tok_rel[keep],
                [t for t, k in zip(result.source_tokens, keep) if k])
    from attrib_mlops.analysis.words import aggregate_words

    w = aggregate_words(result, how)
    groups = w.info["word_aggregation"]["groups"]
    wspecial = w.info.get("special_tokens_mask") or [0] * len(groups)
    keep = [i for i, sp in enumerate(wspecial) if not sp]
    rel = np.array([bool(tok_rel[groups[i]].any()) for i in keep])
    return np.abs(w.matrix[keep, column]), rel, [w.source_tokens[i] for i in keep]


def rationale_alignment(
    result: AttributionResult, spans: Sequence[Sequence[int]], k: int = 1, level: str = "word", how: str = "sum",
    column: int = 0,
) -> dict[str, float]:
    """:func:`rank_alignment` of one classifier result against its rationale spans."""
    scores, rel, _ = rationale_relevance(result, spans, level, how, column)
    return rank_alignment(scores, rel, k)


def rationale_report(
    results: Sequence[AttributionResult],
    records: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]],
    k: int = 1,
    level: str = "word",
    how: str = "sum",
) -> dict[str, dict[str, float]]:
    """Per method: probe ``accuracy`` and the mean rationale metrics over samples.

    Args:
        results: classifier results (any methods); matched to records by ``sample_id``.
        records: ``{id, label, rationale_spans}`` dicts (a list, or a dict by id), e.g.
            from :func:`attrib_mlops.demo.sentiment.make_sentiment_records`.

    Returns:
        ``{method: {"accuracy", "n", "hit@k", "precision@r", "kendall_tau", "kendall_tau_max",
        "kendall_tau_norm"}}``; accuracy compares ``info["predicted_label"]`` with ``label``.
    """
    by_id = dict(records) if isinstance(records, Mapping) else {str(r["id"]): r for r in records}
    out: dict[str, dict[str, float]] = {}
    groups: dict[str, list[AttributionResult]] = {}
    for r in results:
        groups.setdefault(r.method, []).append(r)
    for method, rs in groups.items():
        rows, pred, gold = [], [], []
        for r in rs:
            rec = by_id.get(str(r.sample_id))
            if rec is None:
                raise InputError(f"result for sample {r.sample_id!r} has no record (records have ids like "
                                 f"{next(iter(by_id), '?')!r})")
            pred.append(r.info.get("predicted_label"))
            gold.append(rec["label"])
            rows.append(rationale_alignment(r, rec["rationale_spans"], k, level, how))
        keys = rows[0].keys()
        m = {key: float(np.nanmean([x[key] for x in rows])) for key in keys}
        m["accuracy"] = accuracy(pred, gold)
        m["n"] = float(len(rs))
        out[method] = m
    return out
