"""A generated sentiment dataset whose rationale words are known.

Each text is a short review built from templates: neutral subjects, verbs,
openers and neutral adjectives around one or two *sentiment words* from a
positive or a negative lexicon. The label is the polarity of the sentiment
words, so they are exactly the rationale a human would point to; nothing
else in the text carries the label. About half of the lexicon is split into
several WordPiece pieces by BERT's tokenizer (``lack ##lus ##ter``), which
exercises word-level aggregation.

Generation is deterministic: ``numpy.random.default_rng(seed)``, never the
global RNG. Different seeds give different texts from the same lexicon (use
one seed to train and another for the probe set).

Example:
    >>> recs = make_sentiment_records(4, seed=0)
    >>> sorted(recs[0])
    ['id', 'label', 'label_id', 'rationale', 'rationale_spans', 'text']
    >>> all(recs[0]["text"][a:b] == w for w, (a, b) in zip(recs[0]["rationale"], recs[0]["rationale_spans"]))
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "LABELS",
    "POSITIVE",
    "NEGATIVE",
    "make_sentiment_records",
    "make_sentiment_dataset",
    "rationale_token_positions",
    "to_probe_records",
]

LABELS = ("negative", "positive")
POSITIVE = (
    "wonderful", "delightful", "superb", "charming", "brilliant", "enjoyable", "splendid", "marvelous",
    "heartwarming", "uplifting", "masterful", "captivating", "exquisite", "refreshing", "dazzling",
)
NEGATIVE = (
    "dreadful", "awful", "disappointing", "boring", "clumsy", "unbearable", "bland", "sloppy",
    "tedious", "lackluster", "forgettable", "mediocre", "dismal", "insipid", "overwrought",
)
_SUBJECTS = (
    "the film", "this movie", "the plot", "the soundtrack", "the ending", "the cast", "the script",
    "the second act", "the cinematography", "the dialogue", "the director's new picture", "the sequel",
)
_VERBS = ("was", "felt", "seemed", "is", "looked", "sounded", "turned out")
_OPENERS = ("honestly", "overall", "on sunday", "in the end", "for what it is worth", "frankly", "at first glance")
_ADVERBS = ("rather", "quite", "fairly", "somewhat", "mostly", "again")
_NEUTRAL = ("long", "short", "loud", "colorful", "french", "animated", "familiar", "recent", "quiet", "expected")
_TEMPLATES = (
    "{subj} {verb} {s1}.",
    "{opener}, {subj} {verb} {adv} {s1}.",
    "{subj} {verb} {s1} and {subj2} {verb2} {neutral}.",
    "{subj} {verb} {neutral}, but {subj2} {verb2} {s1}.",
    "{subj} {verb} {s1} and {s2}.",
    "{opener}, {subj2} {verb2} {neutral} and {subj} {verb} {s1}.",
)


def _pick(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _one(rng: np.random.Generator, label_id: int) -> tuple[str, list[str], list[list[int]]]:
    lex = POSITIVE if label_id == 1 else NEGATIVE
    s1 = _pick(rng, lex)
    s2 = _pick(rng, [w for w in lex if w != s1])
    subj = _pick(rng, _SUBJECTS)
    subj2 = _pick(rng, [s for s in _SUBJECTS if s != subj])
    fields = {
        "subj": subj, "subj2": subj2, "verb": _pick(rng, _VERBS), "verb2": _pick(rng, _VERBS),
        "opener": _pick(rng, _OPENERS), "adv": _pick(rng, _ADVERBS), "neutral": _pick(rng, _NEUTRAL),
        "s1": "\x00S1\x00", "s2": "\x00S2\x00",
    }
    template = _pick(rng, _TEMPLATES)
    text = template.format(**fields)
    text = text[0].upper() + text[1:]
    words, spans = [], []
    while True:  # replace the markers in reading order, recording where each word lands
        found = [(text.find(m), m, w) for m, w in (("\x00S1\x00", s1), ("\x00S2\x00", s2)) if m in text]
        if not found:
            break
        at, marker, word = min(found)
        text = text[:at] + word + text[at + len(marker):]
        words.append(word)
        spans.append([at, at + len(word)])
    return text, words, spans


def make_sentiment_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` records ``{id, text, label, label_id, rationale, rationale_spans}``, labels balanced.

    ``rationale`` lists the sentiment words in reading order and
    ``rationale_spans`` their ``[start, end)`` character spans in ``text``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    labels = np.array([i % 2 for i in range(n)])
    rng.shuffle(labels)
    out = []
    for i, label_id in enumerate(labels.tolist()):
        text, words, spans = _one(rng, int(label_id))
        out.append({
            "id": f"sentiment-{seed}-{i}",
            "text": text,
            "label": LABELS[label_id],
            "label_id": int(label_id),
            "rationale": words,
            "rationale_spans": spans,
        })
    return out


def make_sentiment_dataset(n: int, seed: int = 0):
    """The records as a ``datasets.Dataset`` (columns of :func:`make_sentiment_records`)."""
    from datasets import Dataset

    return Dataset.from_list(make_sentiment_records(n, seed))


def rationale_token_positions(tokenizer: Any, text: str, spans: Sequence[Sequence[int]]) -> list[int]:
    """Positions (special tokens included, as in attribution rows) of the tokens inside a rationale span.

    Needs a fast tokenizer (character offsets).
    """
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)
    out = []
    for i, (a, b) in enumerate(enc["offset_mapping"]):
        if a == b:
            continue
        if any(a < e and s < b for s, e in spans):
            out.append(i)
    return out


def to_probe_records(records: Sequence[dict[str, Any]], tokenizer: Any = None) -> list[dict[str, Any]]:
    """Probe samples for the callback / jobs: prompt = text, target = label name.

    With a (fast) ``tokenizer``, ``ground_truth`` holds the rationale's token
    positions, so the tracking writer's ``hit_at_k`` metrics measure rationale
    alignment; ``rationale``, ``rationale_spans`` and ``label_id`` are kept (a
    :class:`~attrib_mlops.samples.ProbeSet` puts them in each sample's ``meta``).
    """
    out = []
    for r in records:
        gt = rationale_token_positions(tokenizer, r["text"], r["rationale_spans"]) if tokenizer is not None else None
        out.append({
            "id": r["id"],
            "prompt": r["text"],
            "target": r["label"],
            "ground_truth": gt,
            "rationale": list(r["rationale"]),
            "rationale_spans": [list(s) for s in r["rationale_spans"]],
            "label_id": r["label_id"],
        })
    return out
