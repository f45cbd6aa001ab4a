"""Data of the Sources and AT2 views: target-span scores, prompt segments, colours, comparisons (no Panel).

Everything here is plain numbers and strings; the views turn them into escaped markup
(:mod:`panel_app.safe`) and Bokeh figures (:mod:`panel_app.source_plots`).

* :func:`span_result`: the scores of a target-token span ``[start, end)``: an ablation
  result is refitted on its stored masks (:meth:`SourceAttribution.for_target_tokens`),
  an AT2 / attention result averages its per-token scores (``info["token_scores"]``);
* :func:`segments`: the rendered prompt cut into plain text and sources;
* :func:`score_colour`: a diverging colour (red: removing the source lowers the target,
  blue: raises it), opacity proportional to ``|score| / max |score|``;
* :func:`compare_rows`: the scores of the same sample's sources on two sides, and whether the top source changed;
* :func:`quality_rows`: the held-out quality of a result, or of an estimator next to naive attention averaging.

Example:
    >>> import numpy as np
    >>> from attrib_mlops.sources.result import SourceAttribution
    >>> r = SourceAttribution(["A.", "B."], [(0, 2), (3, 5)], np.array([0.5, -1.0]), " b", "ablation", prompt="A. B.")
    >>> segments(r)
    [('A.', 0), (' ', None), ('B.', 1)]
    >>> score_colour(-1.0, 1.0)
    'rgba(30, 90, 220, 0.85)'
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from attrib_mlops.errors import InputError
from attrib_mlops.sources.result import SourceAttribution

__all__ = ["span_result", "segments", "score_colour", "compare_rows", "top_change", "quality_rows",
           "estimator_quality_rows", "fmt"]

#: Colour of a positive score (removing the source lowers the target) and of a negative one.
POSITIVE = (220, 30, 30)
NEGATIVE = (30, 90, 220)
MAX_ALPHA = 0.85


def fmt(x: Any) -> str:
    """A number as shown in tables and ``data-`` attributes (``nan`` when missing)."""
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(int(x))
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "" if x is None else str(x)
    return f"{v:.6g}" if math.isfinite(v) else "nan"


def n_target(result: SourceAttribution) -> int:
    """Number of target tokens the result's data covers."""
    if result.ablation is not None:
        return int(result.ablation.token_logprobs.shape[1])
    ts = result.info.get("token_scores")
    if ts:
        return len(ts[0])
    return len(result.target_tokens)


def full_span(result: SourceAttribution) -> tuple[int, int]:
    if result.target_span is None:
        return (0, n_target(result))
    return (int(result.target_span[0]), int(result.target_span[1]))


def span_result(result: SourceAttribution, start: int, end: int) -> SourceAttribution:
    """The result's scores for target tokens ``[start, end)`` (see the module docstring).

    Raises:
        InputError: an empty or out-of-range span, or a result that kept no per-token data.
    """
    T = n_target(result)
    start, end = int(start), int(end)
    if not 0 <= start < end <= T:
        raise InputError(f"target span [{start}, {end}) is not inside the target's {T} tokens; pick 0 <= start < end")
    if (start, end) == full_span(result):
        return result
    if result.ablation is not None:
        return result.for_target_tokens(start, end)
    ts = result.info.get("token_scores")
    if ts:
        per_token = np.array([[np.nan if v is None else v for v in row] for row in ts], dtype=np.float64)
        scores = per_token[:, start:end].mean(axis=1)
        return replace(result, scores=scores, target_span=(start, end), info=dict(result.info, quality={}))
    raise InputError(f"this {result.method} result kept no per-token data (ablation masks or token scores); "
                     "only the whole target's scores can be shown. Recompute it with keep_ablations=True.")


def segments(result: SourceAttribution) -> list[tuple[str, int | None]]:
    """The rendered prompt as ``(text, source index or None)`` pieces, in order (sources by their spans)."""
    prompt = result.prompt
    if not prompt:
        return [(s, i) for i, s in enumerate(result.sources)]
    out: list[tuple[str, int | None]] = []
    pos = 0
    for i, (a, b) in sorted(enumerate(result.spans), key=lambda t: t[1]):
        a, b = max(a, pos), max(b, pos)
        if a > pos:
            out.append((prompt[pos:a], None))
        if b > a:
            out.append((prompt[a:b], i))
        pos = max(pos, b)
    if pos < len(prompt):
        out.append((prompt[pos:], None))
    return out


def score_scale(scores: np.ndarray) -> float:
    finite = np.abs(np.asarray(scores, dtype=np.float64))
    finite = finite[np.isfinite(finite)]
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def score_colour(score: float, scale: float) -> str:
    """CSS background of a source: red for a positive score, blue for a negative one, transparent for 0 / NaN."""
    if not math.isfinite(score) or scale <= 0:
        return "rgba(0, 0, 0, 0)"
    r, g, b = POSITIVE if score >= 0 else NEGATIVE
    alpha = round(MAX_ALPHA * min(1.0, abs(score) / scale), 3)
    return f"rgba({r}, {g}, {b}, {alpha:g})"


def top_change(a: SourceAttribution, b: SourceAttribution) -> tuple[int, int, bool]:
    """``(top source of a, top source of b, changed)`` (indices; ``-1`` when a side has no finite score)."""
    ta = a.ranking()[0] if a.n_sources and np.isfinite(a.scores).any() else -1
    tb = b.ranking()[0] if b.n_sources and np.isfinite(b.scores).any() else -1
    return ta, tb, ta != tb


def compare_rows(a: SourceAttribution, b: SourceAttribution) -> tuple[list[dict[str, Any]], str | None]:
    """One row per source (``source``, ``text``, ``A``, ``B``, ``B - A``, ranks); a warning if the sources differ."""
    n = max(a.n_sources, b.n_sources)
    warn = None
    if a.sources != b.sources:
        warn = (f"The two sides split the prompt into different sources ({a.n_sources} and {b.n_sources}); "
                "sources are compared by position.")
    ra = {i: k + 1 for k, i in enumerate(a.ranking())}
    rb = {i: k + 1 for k, i in enumerate(b.ranking())}
    rows = []
    for i in range(n):
        sa = float(a.scores[i]) if i < a.n_sources else float("nan")
        sb = float(b.scores[i]) if i < b.n_sources else float("nan")
        rows.append({"source": i, "text": (a.sources[i] if i < a.n_sources else b.sources[i]),
                     "A": sa, "B": sb, "B - A": sb - sa, "rank A": ra.get(i, -1), "rank B": rb.get(i, -1)})
    return rows, warn


def quality_rows(result: SourceAttribution) -> list[tuple[str, str]]:
    """``(name, value)`` lines describing a result's provenance and held-out quality."""
    info, q = result.info, result.quality
    span = full_span(result)
    rows = [("method", result.method), ("target tokens", f"[{span[0]}, {span[1]})"),
            ("forwards", fmt(info.get("n_forwards")))]
    if info.get("ablation"):
        rows.append(("ablation mode", str(info["ablation"])))
    if "lds" in q:
        rows.append(("LDS (held-out)", fmt(q["lds"])))
    for k, v in sorted((q.get("topk_drop") or {}).items()):
        rnd = (q.get("random_drop") or {}).get(k)
        rows.append((f"top-{k} drop", f"{fmt(v)} (random {k}: {fmt(rnd)})"))
    est = info.get("estimator")
    if isinstance(est, dict):
        eq = est.get("quality") or {}
        rows.append(("estimator", f"{est.get('kind', '')} {est.get('fingerprint', '')}".strip()))
        for key, label in (("lds", "estimator LDS"), ("lds_attention", "naive attention LDS"),
                           ("lds_surrogate", "ablation surrogate LDS")):
            if key in eq:
                rows.append((label, fmt(eq[key])))
    return rows


#: Estimator quality entries shown per scorer: (label, AT2 key, naive-attention key, surrogate key).
ESTIMATOR_QUALITY = (("LDS (held-out)", "lds", "lds_attention", "lds_surrogate"),
                     ("Pearson (held-out)", "pearson", "pearson_attention", "pearson_surrogate"),
                     ("top-1 agreement with ablation", "top1_agreement", "top1_agreement_attention", None))


def estimator_quality_rows(quality: dict[str, Any]) -> list[dict[str, Any]]:
    """AT2, naive attention averaging and the ablation surrogate side by side, one row per quality measure."""
    rows = []
    for label, at2, att, sur in ESTIMATOR_QUALITY:
        rows.append({"measure": label, "AT2": _num(quality.get(at2)), "naive attention": _num(quality.get(att)),
                     "ablation surrogate": _num(quality.get(sur)) if sur else float("nan")})
    return rows


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")
