"""The result of a training-data query: one score per training example.

Imports neither torch nor mlflow, so the dashboard and tracking readers can
use it. Scores are positive for training examples that *support* the selected
target tokens (a gradient step on the example raises their log-probability)
and negative for those that *oppose* them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from attrib_mlops._util import json_clean

__all__ = ["TrainingDataAttribution"]


@dataclass
class TrainingDataAttribution:
    """Scores of every training example for one query.

    Attributes:
        scores: float32 ``[N]``, in the order of the index's examples.
        ids: example ids, same order.
        texts: example texts, same order.
        method: ``tracin``, ``grad_cos`` or ``datainf``.
        prompt: the query prompt.
        target: the attributed continuation (the model's generation or a user text).
        target_tokens: the continuation's tokens (strings).
        selected: 0-based positions (in ``target_tokens``) whose log-probability was attributed.
        scale: normalisation of :meth:`top` items' ``relative`` and of the
            histogram: max |score| of this result, or a scale shared with
            another result (side by side).
        info: provenance (index, checkpoints, learning rates, projection, versions).
        top_k: default ``k`` of :meth:`top` and :meth:`histogram`.
        sample_id: the probe sample this query answers (jobs and storage key results by it).

    Example:
        >>> import numpy as np
        >>> r = TrainingDataAttribution(np.array([0.5, -1.0, 2.0], np.float32), ["a", "b", "c"],
        ...                             ["x", "y", "z"], "tracin")
        >>> [it["id"] for it in r.top(1)["positive"]], [it["id"] for it in r.top(1)["negative"]]
        (['c'], ['b'])
    """

    scores: np.ndarray
    ids: list[str]
    texts: list[str]
    method: str
    prompt: str = ""
    target: str = ""
    target_tokens: list[str] = field(default_factory=list)
    selected: list[int] = field(default_factory=list)
    scale: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    top_k: int = 10
    sample_id: str | None = None

    #: the attribution kind (every layer's module name) and the "engine" jobs report
    kind: ClassVar[str] = "training_data"
    engine: ClassVar[str] = "training_data"

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if not (len(self.scores) == len(self.ids) == len(self.texts)):
            raise ValueError(f"scores ({len(self.scores)}), ids ({len(self.ids)}) and texts ({len(self.texts)}) "
                             "must have one entry per training example")

    @property
    def n_examples(self) -> int:
        return len(self.scores)

    def norm_scale(self) -> float:
        """The normalisation in use: ``scale`` if set, else max |score| (1 when all are zero)."""
        if self.scale is not None and self.scale > 0:
            return float(self.scale)
        m = float(np.nanmax(np.abs(self.scores))) if len(self.scores) else 0.0
        return m if m > 0 else 1.0

    def _item(self, i: int, rank: int) -> dict[str, Any]:
        s = float(self.scores[i])
        return {"id": self.ids[i], "text": self.texts[i], "score": s, "relative": s / self.norm_scale(),
                "index": int(i), "rank": rank}

    def top(self, k: int | None = None) -> dict[str, list[dict[str, Any]]]:
        """The ``k`` (default ``top_k``) most supporting (``positive``, score > 0, highest first) and opposing
        (``negative``, score < 0, lowest first) examples, each ``{id, text, score, relative, index, rank}``."""
        k = max(int(self.top_k if k is None else k), 0)
        order = np.argsort(-self.scores, kind="stable")
        pos = [int(i) for i in order if self.scores[i] > 0][:k]
        neg = [int(i) for i in order[::-1] if self.scores[i] < 0][:k]
        return {"positive": [self._item(i, r + 1) for r, i in enumerate(pos)],
                "negative": [self._item(i, r + 1) for r, i in enumerate(neg)]}

    def overlap(self, other: TrainingDataAttribution, k: int | None = None, side: str = "positive") -> float:
        """Share of this result's top ``k`` ``side`` ids that are also in ``other``'s top ``k`` (by example id).

        For a regression check between a baseline and a candidate: 1.0 = the
        same supporting examples, 0.0 = none in common. NaN when this result has
        no item on that side.

        >>> import numpy as np
        >>> a = TrainingDataAttribution(np.array([3., 2, 1, -1]), list("abcd"), list("abcd"), "tracin")
        >>> b = TrainingDataAttribution(np.array([1., 3, -2, 2]), list("abcd"), list("abcd"), "tracin")
        >>> a.overlap(b, k=2)
        0.5
        """
        if side not in ("positive", "negative"):
            raise ValueError("side must be 'positive' or 'negative'")
        mine = {it["id"] for it in self.top(k)[side]}
        theirs = {it["id"] for it in other.top(k)[side]}
        return len(mine & theirs) / len(mine) if mine else float("nan")

    def histogram(self, bins: int = 20, k: int | None = None) -> dict[str, Any]:
        """Histogram of the normalised scores over [-1, 1], with the :meth:`top` ``k`` items marked.

        Returns ``{"edges": [bins + 1], "counts": [bins], "scale", "marks": [{id, score, relative, bin, side}]}``.
        """
        rel = self.scores / self.norm_scale()
        counts, edges = np.histogram(np.clip(rel, -1, 1), bins=bins, range=(-1.0, 1.0))
        marks = []
        for side, items in self.top(k).items():
            for it in items:
                b = int(min(max(np.searchsorted(edges, it["relative"], side="right") - 1, 0), bins - 1))
                marks.append({"id": it["id"], "score": it["score"], "relative": it["relative"], "bin": b,
                              "side": side})
        return {"edges": edges.tolist(), "counts": counts.tolist(), "scale": self.norm_scale(), "marks": marks}

    def to_dict(self, include_scores: bool = True) -> dict[str, Any]:
        """JSON-safe dict (NaN/inf become None); :meth:`from_dict` reverses it."""
        d: dict[str, Any] = {
            "kind": "training_data", "method": self.method, "prompt": self.prompt, "target": self.target,
            "target_tokens": list(self.target_tokens), "selected": [int(i) for i in self.selected],
            "scale": self.scale, "info": self.info, "top_k": self.top_k, "n_examples": self.n_examples,
            "ids": list(self.ids), "texts": list(self.texts), "sample_id": self.sample_id,
        }
        if include_scores:
            d["scores"] = self.scores
        return json_clean(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingDataAttribution:
        scores = np.array([np.nan if s is None else s for s in d["scores"]], dtype=np.float32)
        return cls(scores, list(d["ids"]), list(d["texts"]), d["method"], d.get("prompt", ""), d.get("target", ""),
                   list(d.get("target_tokens", [])), [int(i) for i in d.get("selected", [])], d.get("scale"),
                   dict(d.get("info", {})), int(d.get("top_k", 10)), d.get("sample_id"))
