"""The result of a context-source attribution: one model, one method, one sample.

No torch here (numpy, and scikit-learn only when a sub-span is refitted), so
storage readers and the dashboard can load and refit results without a
deep-learning stack. ``to_dict``/``from_dict`` round-trip through JSON (no
pickle): arrays become lists, NaN becomes ``None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .._util import json_clean
from ..errors import InputError

__all__ = ["AblationData", "SourceAttribution", "SCHEMA_VERSION", "source_hit_rate"]

#: Version of the ``to_dict`` layout; bump on incompatible changes.
SCHEMA_VERSION = 1


def _nan(x: Any) -> Any:
    if isinstance(x, list):
        return [_nan(v) for v in x]
    return np.nan if x is None else x


def _arr(x: Any, dtype: Any = np.float64) -> np.ndarray:
    """JSON lists (None = NaN) back to an array."""
    return np.array(_nan(list(x) if x is not None else []), dtype=dtype)


@dataclass
class AblationData:
    """What the surrogate was fitted on, kept so any target sub-span is a refit away.

    Attributes:
        masks: ``[K, S]`` bool, True = source kept (the fitting masks).
        token_logprobs: ``[K, T]`` float64 log-probability of each target token under each mask.
        holdout_masks: ``[H, S]`` held-out random masks (for the LDS), possibly empty.
        holdout_logprobs: ``[H, T]``.
        full_logprobs: ``[T]`` log-probabilities with every source kept.
    """

    masks: np.ndarray
    token_logprobs: np.ndarray
    holdout_masks: np.ndarray
    holdout_logprobs: np.ndarray
    full_logprobs: np.ndarray

    def __post_init__(self) -> None:
        self.masks = np.asarray(self.masks, dtype=bool)
        self.token_logprobs = np.asarray(self.token_logprobs, dtype=np.float64)
        S, T = self.masks.shape[1], self.token_logprobs.shape[1]
        self.holdout_masks = np.asarray(self.holdout_masks, dtype=bool).reshape(-1, S)
        self.holdout_logprobs = np.asarray(self.holdout_logprobs, dtype=np.float64).reshape(-1, T)
        self.full_logprobs = np.asarray(self.full_logprobs, dtype=np.float64).reshape(T)

    def to_dict(self) -> dict[str, Any]:
        return {
            "masks": self.masks.astype(int).tolist(),
            "token_logprobs": json_clean(self.token_logprobs),
            "holdout_masks": self.holdout_masks.astype(int).tolist(),
            "holdout_logprobs": json_clean(self.holdout_logprobs),
            "full_logprobs": json_clean(self.full_logprobs),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AblationData:
        masks = np.array(d["masks"], dtype=bool)
        full = _arr(d["full_logprobs"])
        T = full.size
        return cls(
            masks=masks,
            token_logprobs=_arr(d["token_logprobs"]).reshape(masks.shape[0], T),
            holdout_masks=np.array(d.get("holdout_masks") or [], dtype=bool).reshape(-1, masks.shape[1]),
            holdout_logprobs=_arr(d.get("holdout_logprobs")).reshape(-1, T),
            full_logprobs=full,
        )


@dataclass
class SourceAttribution:
    """Scores of the sources of one prompt for one target (span).

    Attributes:
        sources: source texts, in prompt order.
        spans: ``(start, end)`` character spans of the sources in ``prompt`` (the rendered prompt).
        scores: one float per source; higher = removing the source lowers the target more
            (in units of the target's log-odds).
        target: the attributed continuation text.
        method: ``"ablation"``.
        info: provenance and quality: ``n_forwards``, ``ablation`` mode, ``seed``,
            ``estimator``, ``quality`` (``lds``, ``topk_drop``, ``random_drop``), model, options.
        prompt: the rendered prompt the spans index into.
        target_tokens: tokens of the target.
        target_span: ``(start, end)`` token range of the target the scores are for.
        bias: intercept of the surrogate (the predicted outcome with every source dropped).
        sample_id: probe id when known.
        ablation: the masks and per-token log-probabilities the scores were fitted on
            (None when not kept); needed by :meth:`for_target_tokens`.

    Example:
        >>> import numpy as np
        >>> r = SourceAttribution(["A.", "B."], [(0, 2), (3, 5)], np.array([0.1, 2.0]), " b", "ablation")
        >>> r.top(1)
        [(1, 'B.', 2.0)]
        >>> SourceAttribution.from_dict(r.to_dict()).scores.tolist()
        [0.1, 2.0]
    """

    sources: list[str]
    spans: list[tuple[int, int]]
    scores: np.ndarray
    target: str
    method: str
    info: dict[str, Any] = field(default_factory=dict)
    prompt: str = ""
    target_tokens: list[str] = field(default_factory=list)
    target_span: tuple[int, int] | None = None
    bias: float = float("nan")
    sample_id: str | None = None
    ablation: AblationData | None = None

    def __post_init__(self) -> None:
        self.sources = [str(s) for s in self.sources]
        self.spans = [(int(a), int(b)) for a, b in self.spans]
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if not (len(self.sources) == len(self.spans) == self.scores.size):
            raise ValueError(
                f"SourceAttribution needs one span and one score per source: got {len(self.sources)} sources, "
                f"{len(self.spans)} spans, {self.scores.size} scores"
            )
        if self.target_span is not None:
            self.target_span = (int(self.target_span[0]), int(self.target_span[1]))

    # ----------------------------------------------------------------- views
    @property
    def engine(self) -> str:
        """The engine that produced it (``"sources"``, the engine of every source method)."""
        return str(self.info.get("engine") or "sources")

    @property
    def n_sources(self) -> int:
        return len(self.sources)

    def ranking(self) -> list[int]:
        """Source indices, highest score first (ties keep prompt order)."""
        return [int(i) for i in np.argsort(-self.scores, kind="stable")]

    def top(self, k: int = 1) -> list[tuple[int, str, float]]:
        """The ``k`` highest-scoring sources as ``(index, text, score)``."""
        return [(i, self.sources[i], float(self.scores[i])) for i in self.ranking()[:k]]

    @property
    def quality(self) -> dict[str, Any]:
        """Held-out quality: ``lds``, ``topk_drop`` and ``random_drop`` (may be empty)."""
        return dict(self.info.get("quality", {}))

    # ----------------------------------------------------------------- refits
    def for_target_tokens(self, start: int, end: int) -> SourceAttribution:
        """Scores for target tokens ``[start, end)``: a refit on the same masks, no forward pass.

        The LDS is recomputed for the span; the top-k drop (which needs new
        forwards with the new ranking) is not, and is dropped from ``quality``.
        """
        from .surrogate import fit, lds, logit_outcome, predict, span_logprob

        if self.ablation is None:
            raise InputError("this result kept no ablation data (keep_ablations=False); recompute it to refit a span")
        ab = self.ablation
        y = logit_outcome(span_logprob(ab.token_logprobs, (start, end)))
        est = self.info.get("estimator", "lasso")
        w, b = fit(est, ab.masks, y, end - start, float(self.info.get("lasso_alpha", 0.01)))
        quality: dict[str, Any] = {"n_holdout": int(ab.holdout_masks.shape[0])}
        if ab.holdout_masks.shape[0]:
            actual = logit_outcome(span_logprob(ab.holdout_logprobs, (start, end)))
            quality["lds"] = lds(predict(ab.holdout_masks, w, b), actual)
        info = dict(self.info, quality=quality, refit_of=list(self.target_span or (0, ab.token_logprobs.shape[1])))
        return replace(self, scores=w, bias=b, target_span=(start, end), info=info)

    # ------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (NaN -> None, arrays -> lists). Inverse of :meth:`from_dict`."""
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "sources",
            "sources": list(self.sources),
            "spans": [list(s) for s in self.spans],
            "scores": json_clean(self.scores),
            "target": self.target,
            "method": self.method,
            "info": json_clean(self.info),
            "prompt": self.prompt,
            "target_tokens": list(self.target_tokens),
            "target_span": list(self.target_span) if self.target_span is not None else None,
            "bias": None if not math.isfinite(self.bias) else float(self.bias),
            "sample_id": self.sample_id,
            "ablation": self.ablation.to_dict() if self.ablation is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SourceAttribution:
        version = int(d.get("schema_version", 1))
        if version > SCHEMA_VERSION:
            raise InputError(
                f"source attribution written with schema version {version}; this attrib-mlops reads up to "
                f"{SCHEMA_VERSION}. Upgrade attrib-mlops."
            )
        return cls(
            sources=d["sources"],
            spans=[tuple(s) for s in d["spans"]],
            scores=_arr(d["scores"]),
            target=d.get("target", ""),
            method=d.get("method", "ablation"),
            info=dict(d.get("info") or {}),
            prompt=d.get("prompt", ""),
            target_tokens=list(d.get("target_tokens") or []),
            target_span=tuple(d["target_span"]) if d.get("target_span") is not None else None,
            bias=float("nan") if d.get("bias") is None else float(d["bias"]),
            sample_id=d.get("sample_id"),
            ablation=AblationData.from_dict(d["ablation"]) if d.get("ablation") else None,
        )

    def __repr__(self) -> str:
        best = self.top(1)
        head = f"top={best[0][1][:30]!r}" if best else "no sources"
        return (
            f"SourceAttribution(method={self.method!r}, n_sources={self.n_sources}, {head}, "
            f"target={self.target[:30]!r}, sample_id={self.sample_id!r})"
        )


def source_hit_rate(results: list[SourceAttribution], true_sources: list[int | list[int]], k: int = 1) -> float:
    """Fraction of results whose top-``k`` sources contain a true source (ground-truth hit@k).

    ``true_sources[i]`` is the index (or indices) of result ``i``'s true source(s).

    >>> r = SourceAttribution(["a", "b"], [(0, 1), (2, 3)], np.array([0.1, 0.9]), "", "ablation")
    >>> source_hit_rate([r, r], [1, [0]], k=1)
    0.5
    """
    if len(results) != len(true_sources):
        raise InputError(f"got {len(results)} results but {len(true_sources)} true-source entries")
    if not results:
        return float("nan")
    hits = 0
    for r, t in zip(results, true_sources):
        truth = {int(t)} if isinstance(t, (int, np.integer)) else {int(x) for x in t}
        hits += bool(truth & set(r.ranking()[:k]))
    return hits / len(results)
