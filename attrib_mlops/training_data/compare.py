"""Side by side: the model's generation and a user's continuation of one prompt, both attributed.

As LLM Attributor does: a word-level diff of the two continuations (added and
deleted spans), the generation attributed on the tokens of its deleted or
replaced words, the user's text on the tokens of its added or replaced words
(all tokens of a side that has no changed word), and one normalisation shared
by both score vectors so their bars and histograms compare directly.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from attrib_mlops._util import json_clean

from .options import parse_query_options
from .query import Query, load_query_model, open_index, prepare_query, provenance, score_queries
from .result import TrainingDataAttribution

__all__ = ["word_diff", "target_char_spans", "SideBySide", "compare_continuations"]

_WORD = re.compile(r"\S+")


def word_diff(generated: str, user: str) -> list[dict[str, Any]]:
    """Word-level diff: spans ``{op, generated, user, g_start, g_end, u_start, u_end}`` (character offsets).

    ``op`` is ``equal``, ``delete`` (only in the generation), ``insert`` (only
    in the user's text) or ``replace``.

    >>> [(s["op"], s["generated"], s["user"]) for s in word_diff(" the cat sat", " the dog sat")]
    [('equal', 'the', 'the'), ('replace', 'cat', 'dog'), ('equal', 'sat', 'sat')]
    """
    gw = [(m.group(), m.start(), m.end()) for m in _WORD.finditer(generated)]
    uw = [(m.group(), m.start(), m.end()) for m in _WORD.finditer(user)]
    sm = difflib.SequenceMatcher(None, [w for w, _, _ in gw], [w for w, _, _ in uw], autojunk=False)
    spans = []
    for op, a0, a1, b0, b1 in sm.get_opcodes():
        g_start = gw[a0][1] if a0 < a1 else (gw[a0 - 1][2] if a0 > 0 else 0)
        g_end = gw[a1 - 1][2] if a0 < a1 else g_start
        u_start = uw[b0][1] if b0 < b1 else (uw[b0 - 1][2] if b0 > 0 else 0)
        u_end = uw[b1 - 1][2] if b0 < b1 else u_start
        spans.append({"op": op, "generated": generated[g_start:g_end], "user": user[u_start:u_end],
                      "g_start": g_start, "g_end": g_end, "u_start": u_start, "u_end": u_end})
    return spans


def target_char_spans(tokenizer: Any, q: Query) -> list[tuple[int, int]]:
    """Character span, in ``q.target``, of each target token (by incremental decoding)."""
    spans = []
    prev = 0
    target_ids = q.ids[q.n_prompt:]
    for j in range(len(target_ids)):
        text = tokenizer.decode(target_ids[: j + 1], skip_special_tokens=True)
        # word-level tokenizers decode without the leading space the target has
        shift = len(q.target) - len(q.target.lstrip()) if not text[:1].isspace() else 0
        end = min(len(text) + shift, len(q.target))
        spans.append((prev, end))
        prev = end
    return spans


def _changed_tokens(tokenizer: Any, q: Query, ranges: list[tuple[int, int]]) -> list[int]:
    out = []
    for j, (s, e) in enumerate(target_char_spans(tokenizer, q)):
        if any(s < r1 and e > r0 for r0, r1 in ranges):
            out.append(j)
    return out


@dataclass
class SideBySide:
    """A generation and a user's continuation of one prompt, attributed with a shared normalisation.

    Attributes:
        prompt: the prompt.
        generated / user: the two attributions (their ``scale`` is the shared one).
        diff: the word-level diff (:func:`word_diff`).
        scale: the shared normalisation, max |score| over both.
        selection: which tokens each side attributes (``changed`` or ``all``).
    """

    prompt: str
    generated: TrainingDataAttribution
    user: TrainingDataAttribution
    diff: list[dict[str, Any]]
    scale: float
    selection: dict[str, str] = field(default_factory=dict)

    def top(self, k: int | None = None) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """``{"generated": top(k), "user": top(k)}`` with ``relative`` scores on the shared scale."""
        return {"generated": self.generated.top(k), "user": self.user.top(k)}

    def histogram(self, bins: int = 20, k: int | None = None) -> dict[str, Any]:
        """Histograms of both sides over the same bins of the shared scale."""
        return {"generated": self.generated.histogram(bins, k), "user": self.user.histogram(bins, k)}

    def to_dict(self, include_scores: bool = True) -> dict[str, Any]:
        return json_clean({"kind": "training_data_side_by_side", "prompt": self.prompt, "diff": self.diff,
                           "scale": self.scale, "selection": self.selection,
                           "generated": self.generated.to_dict(include_scores),
                           "user": self.user.to_dict(include_scores)})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SideBySide:
        return cls(d["prompt"], TrainingDataAttribution.from_dict(d["generated"]),
                   TrainingDataAttribution.from_dict(d["user"]), list(d["diff"]), float(d["scale"]),
                   dict(d.get("selection", {})))


def compare_continuations(index: Any, model: Any, tokenizer: Any, prompt: str, user_text: str,
                          generated: str | None = None, method: str = "tracin", top_k: int = 10,
                          **options: Any) -> SideBySide:
    """Attribute the model's generation and a user's continuation of ``prompt`` side by side.

    Args:
        index: a :class:`TrainingIndex` or an index folder.
        model / tokenizer: as in :func:`attribute_training_data`.
        prompt: the prompt.
        user_text: the user's continuation.
        generated: the model's continuation (None = greedy generation).
        method: ``tracin``, ``grad_cos`` or ``datainf``.
        top_k: default ``k`` of the results' ``top``.
        **options: :class:`~attrib_mlops.training_data.options.QueryOptions`.

    Example:
        >>> sbs = compare_continuations("out/index", None, None, "k3 = v1 ; ? k3", " v2")   # doctest: +SKIP
        >>> [s["op"] for s in sbs.diff], sbs.top(3)["user"]["positive"][0]["relative"]      # doctest: +SKIP
        (['replace'], 0.82)
    """
    opts = parse_query_options(**options)
    idx = open_index(index)
    model, tokenizer, model_ref = load_query_model(idx, model, tokenizer, opts)
    qg = prepare_query(model, tokenizer, prompt, generated, None, opts)
    qu = prepare_query(model, tokenizer, prompt, user_text, None, opts)
    diff = word_diff(qg.target, qu.target)
    g_ranges = [(s["g_start"], s["g_end"]) for s in diff if s["op"] in ("delete", "replace")]
    u_ranges = [(s["u_start"], s["u_end"]) for s in diff if s["op"] in ("insert", "replace")]
    selection = {}
    for side, q, ranges in (("generated", qg, g_ranges), ("user", qu, u_ranges)):
        changed = _changed_tokens(tokenizer, q, ranges)
        if changed:
            q.selected, selection[side] = changed, "changed"
        else:
            selection[side] = "all"
    g_scores, u_scores = score_queries(idx, model, [qg, qu], method, opts)
    scale = float(max(abs(g_scores).max(initial=0.0), abs(u_scores).max(initial=0.0))) or 1.0
    info = provenance(idx, method, model_ref, opts)
    results = [TrainingDataAttribution(s, idx.ids, idx.texts, method, q.prompt, q.target, q.target_tokens, q.selected,
                                       scale, {**info, "side": side}, top_k)
               for side, q, s in (("generated", qg, g_scores), ("user", qu, u_scores))]
    return SideBySide(prompt, results[0], results[1], diff, scale, selection)
