"""The attribution result: one model, one method, one sample.

``AttributionResult.matrix[i, j]`` is the attribution of source token ``i`` to
target token ``j``. For decoder-only models the source rows are the prompt
tokens followed by the target (continuation) tokens, exactly as Inseq lays them
out; cells that would look into the future (row ``i >= n_prompt + j``) are NaN.

This module imports neither torch nor mlflow so that analysis, tracking readers
and the dashboard can use it on machines without a deep-learning stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["AttributionResult", "future_mask"]


def future_mask(n_source: int, n_target: int, n_prompt: int) -> np.ndarray:
    """Boolean mask of cells that look into the future (True = undefined).

    For a decoder-only model, target token ``j`` (0-based) is predicted from the
    first ``n_prompt + j`` source rows; rows at or after that position are
    undefined for column ``j``. For encoder-decoder models (``n_prompt ==
    n_source``) nothing is masked.

    >>> future_mask(4, 2, 2).astype(int).tolist()
    [[0, 0], [0, 0], [1, 0], [1, 1]]
    """
    rows = np.arange(n_source)[:, None]
    cols = np.arange(n_target)[None, :]
    if n_prompt >= n_source:
        return np.zeros((n_source, n_target), dtype=bool)
    return rows >= (n_prompt + cols)


@dataclass
class AttributionResult:
    """Attribution of one sample by one method on one model.

    Attributes:
        matrix: float32 array of shape ``(len(source_tokens), len(target_tokens))``.
        source_tokens: tokens of the rows (prompt then target for decoder-only models).
        target_tokens: tokens of the columns (the attributed continuation).
        method: attribution method name (e.g. ``"saliency"``).
        engine: engine that computed it (``"native"`` or ``"inseq"``).
        step_scores: per target token scores, at least ``probability`` and ``entropy``.
        info: provenance: model reference, options, library versions, dimension
            aggregation, NaN/inf flags.
        n_prompt: number of source rows that belong to the prompt.
        prompt: prompt text.
        target: continuation text (teacher-forced or generated).
        sample_id: identifier of the probe sample, when known.

    Example:
        >>> import numpy as np
        >>> r = AttributionResult(np.ones((3, 1), np.float32), ["a", "b", "c"], ["c"],
        ...                       "saliency", "native", n_prompt=2)
        >>> r.shape
        (3, 1)
    """

    matrix: np.ndarray
    source_tokens: list[str]
    target_tokens: list[str]
    method: str
    engine: str
    step_scores: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    n_prompt: int | None = None
    prompt: str = ""
    target: str = ""
    sample_id: str | None = None

    def __post_init__(self) -> None:
        self.matrix = np.asarray(self.matrix, dtype=np.float32)
        if self.matrix.ndim != 2:
            raise ValueError(f"AttributionResult.matrix must be 2-D, got shape {self.matrix.shape}")
        expected = (len(self.source_tokens), len(self.target_tokens))
        if self.matrix.shape != expected:
            raise ValueError(
                f"AttributionResult.matrix has shape {self.matrix.shape} but the tokens give {expected} "
                "(len(source_tokens), len(target_tokens))"
            )
        self.source_tokens = [str(t) for t in self.source_tokens]
        self.target_tokens = [str(t) for t in self.target_tokens]
        self.step_scores = {k: np.asarray(v, dtype=np.float32) for k, v in self.step_scores.items()}
        if self.n_prompt is None:
            self.n_prompt = len(self.source_tokens) - len(self.target_tokens)

    # ------------------------------------------------------------------ helpers
    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.matrix.shape)  # type: ignore[return-value]

    @property
    def prompt_tokens(self) -> list[str]:
        return self.source_tokens[: self.n_prompt]

    @property
    def is_decoder_only(self) -> bool:
        return self.n_prompt < len(self.source_tokens)

    def valid_mask(self) -> np.ndarray:
        """True where the cell is defined (not in the future)."""
        return ~future_mask(len(self.source_tokens), len(self.target_tokens), int(self.n_prompt))

    def has_nonfinite(self) -> bool:
        """True if any defined cell is NaN or +-inf."""
        vals = self.matrix[self.valid_mask()]
        return bool(vals.size) and not bool(np.isfinite(vals).all())

    # -------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (NaN cells become ``None``). Inverse of :meth:`from_dict`."""

        def _clean(a: np.ndarray) -> list:
            return [[None if not math.isfinite(x) else float(x) for x in row] for row in a.tolist()]

        return {
            "matrix": _clean(self.matrix),
            "source_tokens": list(self.source_tokens),
            "target_tokens": list(self.target_tokens),
            "method": self.method,
            "engine": self.engine,
            "step_scores": {
                k: [None if not math.isfinite(x) else float(x) for x in v.tolist()] for k, v in self.step_scores.items()
            },
            "info": _jsonable(self.info),
            "n_prompt": int(self.n_prompt),
            "prompt": self.prompt,
            "target": self.target,
            "sample_id": self.sample_id,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AttributionResult:
        def _arr(x: Any) -> np.ndarray:
            return np.array([[np.nan if v is None else v for v in row] for row in x], dtype=np.float32).reshape(
                len(d["source_tokens"]), len(d["target_tokens"])
            )

        return cls(
            matrix=_arr(d["matrix"]),
            source_tokens=d["source_tokens"],
            target_tokens=d["target_tokens"],
            method=d["method"],
            engine=d["engine"],
            step_scores={
                k: np.array([np.nan if v is None else v for v in vs], dtype=np.float32)
                for k, vs in d.get("step_scores", {}).items()
            },
            info=dict(d.get("info", {})),
            n_prompt=d.get("n_prompt"),
            prompt=d.get("prompt", ""),
            target=d.get("target", ""),
            sample_id=d.get("sample_id"),
        )

    def __repr__(self) -> str:  # compact: the matrix can be big
        return (
            f"AttributionResult(method={self.method!r}, engine={self.engine!r}, shape={self.shape}, "
            f"n_prompt={self.n_prompt}, sample_id={self.sample_id!r})"
        )


def _jsonable(obj: Any) -> Any:
    """Best effort conversion of provenance info to JSON types."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)
