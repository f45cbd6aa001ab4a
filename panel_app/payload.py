"""What the views draw, computed from :class:`~attrib_mlops.result.AttributionResult`\\ s (pure numpy, no UI).

The token views receive a JSON-able *payload*: per side the source and target
tokens, per method the displayed matrix (after the context window), the source
and target importances ``I(x)``, ``I(y)`` and a colour, and the step scores. The
browser colours tokens from it without asking the server (hover is client side).

Example:
    >>> import numpy as np
    >>> r = AttributionResult(np.array([[1.0], [2.0], [np.nan]], np.float32), ["a", "b", "c"], ["c"],
    ...                       "saliency", "native", n_prompt=2)
    >>> p = explorer_payload({"saliency": r})
    >>> p["sides"][0]["methods"][0]["source"]
    [1.0, 2.0, None]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from attrib_mlops.analysis import (
    align_prefix,
    check_same_tokens,
    input_centered_window_sums,
    multi_method_mean,
    output_centered_window_sums,
    source_importance,
    target_importance,
)
from attrib_mlops.errors import InputError
from attrib_mlops.result import AttributionResult

__all__ = [
    "METHOD_COLORS",
    "MEAN_COLOR",
    "method_colors",
    "displayed_matrix",
    "jsonable_vector",
    "jsonable_matrix",
    "side_payload",
    "explorer_payload",
    "Comparison",
    "compare_results",
    "compare_payload",
]

#: One colour per active method, in order (red, blue, green, orange, violet): red + blue blend to purple.
METHOD_COLORS: tuple[tuple[int, int, int], ...] = (
    (220, 30, 30), (30, 60, 220), (20, 150, 60), (235, 140, 0), (150, 50, 190),
)
MEAN_COLOR = (120, 40, 160)


def method_colors(methods: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    """``{method: rgb}`` in the order given (cycling when there are more methods than colours)."""
    return {m: METHOD_COLORS[i % len(METHOD_COLORS)] for i, m in enumerate(methods)}


def displayed_matrix(result: AttributionResult | np.ndarray, window: int = 0, axis: str = "source") -> np.ndarray:
    """The matrix the views show: ``A`` itself (``window=0``) or its windowed sums.

    ``axis="source"``: :func:`input_centered_window_sums` (each cell sums the ``2c+1``
    neighbouring source rows); ``axis="target"``: :func:`output_centered_window_sums`.
    """
    m = result.matrix if isinstance(result, AttributionResult) else result
    if not window:
        return np.asarray(m, dtype=np.float64)
    if axis == "source":
        return input_centered_window_sums(m, int(window))
    if axis == "target":
        return output_centered_window_sums(m, int(window))
    raise InputError(f"unknown window axis {axis!r}; expected 'source' or 'target'")


def _num(x: float) -> float | None:
    return float(f"{x:.7g}") if math.isfinite(x) else None


def jsonable_vector(v: Sequence[float] | np.ndarray) -> list[float | None]:
    """Floats rounded to 7 significant digits; NaN/inf -> ``None``."""
    return [_num(float(x)) for x in np.asarray(v, dtype=np.float64).ravel().tolist()]


def jsonable_matrix(m: np.ndarray) -> list[list[float | None]]:
    return [jsonable_vector(row) for row in np.asarray(m, dtype=np.float64)]


def _method_entry(name: str, matrix: np.ndarray, color: tuple[int, int, int]) -> dict[str, Any]:
    return {
        "name": name,
        "color": list(color),
        "matrix": jsonable_matrix(matrix),
        "source": jsonable_vector(source_importance(matrix)),
        "target": jsonable_vector(target_importance(matrix)),
    }


def _scores(r: AttributionResult) -> dict[str, list[float | None]]:
    """Step scores per target token, ``probability`` and ``entropy`` first."""
    order = sorted(r.step_scores, key=lambda k: ({"probability": 0, "entropy": 1}.get(k, 2), k))
    return {k: jsonable_vector(r.step_scores[k]) for k in order
            if np.asarray(r.step_scores[k]).size == len(r.target_tokens)}


def side_payload(
    results: Mapping[str, AttributionResult],
    *,
    window: int = 0,
    axis: str = "source",
    combine: str = "overlay",
    title: str = "",
    key: str = "a",
    colors: Mapping[str, tuple[int, int, int]] | None = None,
) -> dict[str, Any]:
    """Payload of one token view side: the same sample under one or several methods.

    Args:
        results: ``{method: result}`` of one sample (same tokens; first = primary method).
        window: context-window half-width ``c`` (0 = the matrix itself).
        axis: window over ``source`` rows or ``target`` columns.
        combine: ``overlay`` (one colour per method, blended) or ``mean``
            (:func:`multi_method_mean` of the normalised matrices, one colour).
        title: heading of the side.
        key: ``data-side`` value of the side's token spans.
        colors: ``{method: rgb}`` (default :func:`method_colors`).

    Raises:
        InputError: no results, or methods with different tokens.
    """
    if not results:
        raise InputError("nothing to show: no method selected")
    items = list(results.items())
    first = items[0][1]
    for _, r in items[1:]:
        check_same_tokens(first, r)
    colors = dict(colors or method_colors([m for m, _ in items]))
    mats = {m: displayed_matrix(r, window, axis) for m, r in items}
    if combine == "mean" and len(mats) > 1:
        label = "mean(" + ", ".join(mats) + ")"
        methods = [_method_entry(label, multi_method_mean(list(mats.values())), MEAN_COLOR)]
    else:
        methods = [_method_entry(m, mat, tuple(colors.get(m, METHOD_COLORS[0]))) for m, mat in mats.items()]
    return {
        "key": key,
        "title": title,
        "sample_id": first.sample_id,
        "source": list(first.source_tokens),
        "target": list(first.target_tokens),
        "n_prompt": int(first.n_prompt),
        "methods": methods,
        "scores": _scores(first),
    }


def explorer_payload(results: Mapping[str, AttributionResult], **kw: Any) -> dict[str, Any]:
    """Token view payload of the explorer: one side (see :func:`side_payload` for the arguments)."""
    side = side_payload(results, **kw)
    return {"sides": [side], "diff": None, "sync": False, "window": int(kw.get("window", 0)),
            "axis": kw.get("axis", "source")}


@dataclass
class Comparison:
    """Two results of the same sample, aligned on the common prefix of their tokens.

    Attributes:
        left, right: the two results.
        left_matrix, right_matrix: displayed (windowed) matrices, full size.
        n_source, n_target: common prefix lengths of the source and target tokens.
        diff: ``left - right`` on the common prefix, shape ``(n_source, n_target)``.
        message: ``None`` when the tokens are identical, else what differs and what is compared.
    """

    left: AttributionResult
    right: AttributionResult
    left_matrix: np.ndarray
    right_matrix: np.ndarray
    n_source: int
    n_target: int
    diff: np.ndarray
    message: str | None

    @property
    def same_tokens(self) -> bool:
        return self.message is None


def compare_results(left: AttributionResult, right: AttributionResult, window: int = 0,
                    axis: str = "source") -> Comparison:
    """Align two results by the common prefix of their tokens and subtract ``A1 - A2`` there.

    Cells are compared only where both sides have the same source token *and* the
    same target token (the common prefixes, :func:`attrib_mlops.analysis.align_prefix`),
    so different tokens are never compared.
    """
    lm, rm = displayed_matrix(left, window, axis), displayed_matrix(right, window, axis)
    al = align_prefix(left, right)
    ks, kt = al.n_source, al.n_target
    message = None
    if not al.same_tokens:
        parts = "; ".join(al.differences)
        if ks == 0 or kt == 0:
            message = (f"The two sides have different tokens: {parts}. They share no common prefix, so there is "
                       "no difference to show.")
        else:
            message = (f"The two sides have different tokens: {parts}. Only the common prefix is compared: the "
                       f"first {ks} source and {kt} target tokens.")
    diff = lm[:ks, :kt] - rm[:ks, :kt]
    return Comparison(left, right, lm, rm, ks, kt, diff, message)


def compare_payload(cmp: Comparison, *, left_title: str, right_title: str, method: str) -> dict[str, Any]:
    """Token view payload of the compare view: two synchronised sides plus the difference row."""
    color = METHOD_COLORS[0]
    sides = []
    for key, res, mat, title in (("a", cmp.left, cmp.left_matrix, left_title),
                                 ("b", cmp.right, cmp.right_matrix, right_title)):
        sides.append({
            "key": key, "title": title, "sample_id": res.sample_id,
            "source": list(res.source_tokens), "target": list(res.target_tokens), "n_prompt": int(res.n_prompt),
            "methods": [_method_entry(method, mat, color)],
            "scores": _scores(res),
        })
    diff = {
        "key": "diff",
        "title": "difference A1 − A2 (red: left larger, blue: right larger)",
        "source": list(cmp.left.source_tokens[: cmp.n_source]),
        "target": list(cmp.left.target_tokens[: cmp.n_target]),
        "n_prompt": min(int(cmp.left.n_prompt), cmp.n_source),
        "matrix": jsonable_matrix(cmp.diff),
        "source_values": jsonable_vector(source_importance(cmp.diff)) if cmp.diff.size else [],
        "target_values": jsonable_vector(target_importance(cmp.diff)) if cmp.diff.size else [],
    }
    return {"sides": sides, "diff": diff, "sync": True, "message": cmp.message}
