"""Bokeh figures of the dashboard: attribution heatmaps and metric curves (no data access).

Heatmap tooltips are HTML with stable ``data-tt`` attributes (``source``, ``target``,
``i``, ``j``, ``value`` and, for differences, ``left``/``right``) so tests and scripts
can read the hovered cell from the DOM.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from bokeh.models import ColorBar, ColumnDataSource, FactorRange, HoverTool, LinearColorMapper
from bokeh.palettes import RdBu11, Viridis256
from bokeh.plotting import figure

from attrib_mlops._util import plain_text

__all__ = ["heatmap", "column_normalized", "difference_heatmap", "metric_lines", "set_marker", "sequential_palette",
           "token_labels",
           "STORAGE_REL_ERROR", "magnitude", "identical_within_storage"]

_NAN_COLOR = "#eeeeee"

#: Error of a stored attribution matrix relative to its largest |value|: the store keeps ``A / max|A|`` as
#: float16, so ``|A - stored| <= 2**-12 * max|A|`` (attrib_mlops/tracking/columnar.py).
STORAGE_REL_ERROR = 2.0 ** -12


def magnitude(*matrices: np.ndarray) -> float:
    """The largest finite ``|value|`` over ``matrices`` (0.0 when there is none)."""
    best = 0.0
    for m in matrices:
        a = np.abs(np.asarray(m, dtype=np.float64))
        a = a[np.isfinite(a)]
        if a.size:
            best = max(best, float(a.max()))
    return best


def identical_within_storage(diff: np.ndarray, left: np.ndarray, right: np.ndarray) -> bool:
    """Whether ``diff = left - right`` is within what storing both can change: ``<= 2**-12 (max|A1| + max|A2|)``."""
    return magnitude(diff) <= STORAGE_REL_ERROR * (magnitude(left) + magnitude(right))


def token_labels(tokens: Sequence[str]) -> list[str]:
    """Unique axis factors ``"<index>: <token>"`` (tokens repeat, positions do not), never read as TeX."""
    return [plain_text(f"{i}: {str(t).replace(chr(10), '⏎')}") for i, t in enumerate(tokens)]


def sequential_palette(rgb: Sequence[int], n: int = 64) -> list[str]:
    """White to ``rgb`` in ``n`` steps."""
    r, g, b = (int(c) for c in rgb)
    out = []
    for k in range(n):
        a = k / (n - 1)
        out.append("#%02x%02x%02x" % (round(255 * (1 - a) + a * r), round(255 * (1 - a) + a * g),
                                      round(255 * (1 - a) + a * b)))
    return out


def column_normalized(matrix: np.ndarray) -> np.ndarray:
    """Each column min-max normalised to [0, 1] over its finite cells (NaN stays NaN; a flat column is 0)."""
    m = np.asarray(matrix, dtype=np.float64)
    out = np.full_like(m, np.nan)
    for j in range(m.shape[1]):
        col = m[:, j]
        ok = np.isfinite(col)
        if ok.any():
            lo, hi = col[ok].min(), col[ok].max()
            out[ok, j] = (col[ok] - lo) / (hi - lo) if hi > lo else 0.0
    return out


def _fmt(x: float) -> str:
    return f"{x:.6g}" if math.isfinite(x) else "undefined"


def _size(n_source: int, n_target: int) -> tuple[int, int]:
    width = int(min(900, max(320, 150 + 34 * n_target)))
    height = int(min(900, max(220, 90 + 20 * n_source)))
    return width, height


def heatmap(
    matrix: np.ndarray,
    source_tokens: Sequence[str],
    target_tokens: Sequence[str],
    *,
    title: str = "",
    color: Sequence[int] | None = None,
    name: str = "heatmap",
    normalize: str = "matrix",
):
    """A ``rect`` heatmap of ``matrix[i, j]`` (rows: source tokens top to bottom, columns: target tokens).

    NaN cells (undefined, e.g. the future of a decoder-only model) are light grey.
    Hover shows the token pair and the value. ``normalize="matrix"`` colours every cell on one scale
    (the colour bar gives the values); ``"column"`` min-max normalises each target column on its own, so
    one bright column does not wash out the others (the colour bar then reads 0..1 per column). The
    colour comes from the ``shade`` column of the data source.
    """
    m = np.asarray(matrix, dtype=np.float64)
    ns, nt = m.shape
    ys, xs = token_labels(source_tokens[:ns]), token_labels(target_tokens[:nt])
    ii, jj = np.meshgrid(np.arange(ns), np.arange(nt), indexing="ij")
    vals = m.ravel()
    data = {
        "x": [xs[j] for j in jj.ravel()],
        "y": [ys[i] for i in ii.ravel()],
        "i": ii.ravel().tolist(),
        "j": jj.ravel().tolist(),
        "src": [str(source_tokens[i]) for i in ii.ravel()],
        "tgt": [str(target_tokens[j]) for j in jj.ravel()],
        "value": [v if math.isfinite(v) else float("nan") for v in vals.tolist()],
        "value_s": [_fmt(v) for v in vals.tolist()],
    }
    if normalize == "column":
        shade = column_normalized(m).ravel()
        lo, hi = 0.0, 1.0
    elif normalize == "matrix":
        shade = vals
        finite = vals[np.isfinite(vals)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1.0
    else:
        raise ValueError(f"normalize must be 'matrix' or 'column', got {normalize!r}")
    data["shade"] = [v if math.isfinite(v) else float("nan") for v in shade.tolist()]
    palette = sequential_palette(color) if color is not None else Viridis256
    mapper = LinearColorMapper(palette=palette, low=lo, high=hi, nan_color=_NAN_COLOR)
    width, height = _size(ns, nt)
    p = figure(
        title=plain_text(title), x_range=FactorRange(*xs), y_range=FactorRange(*reversed(ys)), width=width,
        height=height,
        tools="save", toolbar_location="right", x_axis_location="above", name=name,
    )
    p.rect("x", "y", width=1, height=1, source=ColumnDataSource(data),
           fill_color={"field": "shade", "transform": mapper}, line_color="white", line_width=0.5)
    p.add_tools(HoverTool(tooltips=(
        '<div class="attrib-tt">'
        '<div>source <b data-tt="source">@src</b> (<span data-tt="i">@i</span>)</div>'
        '<div>target <b data-tt="target">@tgt</b> (<span data-tt="j">@j</span>)</div>'
        '<div>value <b data-tt="value">@value_s</b></div>'
        '</div>'
    )))
    p.add_layout(ColorBar(color_mapper=mapper, width=10, title="per column" if normalize == "column" else None),
                 "right")
    p.xaxis.major_label_orientation = math.pi / 3
    p.axis.major_label_text_font_size = "11px"
    p.grid.grid_line_color = None
    p.axis.axis_line_color = None
    p.axis.major_tick_line_color = None
    return p


def difference_heatmap(
    diff: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    source_tokens: Sequence[str],
    target_tokens: Sequence[str],
    *,
    title: str = "A1 − A2",
    name: str = "difference",
):
    """Diverging heatmap of ``diff = left - right`` (red: left larger, blue: right larger, white: 0).

    Colours are relative to the values compared, ``max(|A1|, |A2|)`` on the compared cells (not to the
    largest difference), so a difference far below the values stays pale.
    """
    d = np.asarray(diff, dtype=np.float64)
    ns, nt = d.shape
    ys, xs = token_labels(source_tokens[:ns]), token_labels(target_tokens[:nt])
    ii, jj = np.meshgrid(np.arange(ns), np.arange(nt), indexing="ij")
    lv = np.asarray(left, dtype=np.float64)[:ns, :nt].ravel()
    rv = np.asarray(right, dtype=np.float64)[:ns, :nt].ravel()
    vals = d.ravel()
    data = {
        "x": [xs[j] for j in jj.ravel()],
        "y": [ys[i] for i in ii.ravel()],
        "i": ii.ravel().tolist(),
        "j": jj.ravel().tolist(),
        "src": [str(source_tokens[i]) for i in ii.ravel()],
        "tgt": [str(target_tokens[j]) for j in jj.ravel()],
        "value": [v if math.isfinite(v) else float("nan") for v in vals.tolist()],
        "value_s": [_fmt(v) for v in vals.tolist()],
        "left_s": [_fmt(v) for v in lv.tolist()],
        "right_s": [_fmt(v) for v in rv.tolist()],
    }
    m = magnitude(lv, rv) or magnitude(vals) or 1.0
    mapper = LinearColorMapper(palette=list(RdBu11), low=-m, high=m, nan_color=_NAN_COLOR)
    width, height = _size(ns, nt)
    p = figure(
        title=plain_text(title), x_range=FactorRange(*xs) if xs else FactorRange("-"),
        y_range=FactorRange(*reversed(ys)) if ys else FactorRange("-"), width=width, height=height,
        tools="save", toolbar_location="right", x_axis_location="above", name=name,
    )
    p.rect("x", "y", width=1, height=1, source=ColumnDataSource(data),
           fill_color={"field": "value", "transform": mapper}, line_color="white", line_width=0.5)
    p.add_tools(HoverTool(tooltips=(
        '<div class="attrib-tt">'
        '<div>source <b data-tt="source">@src</b> (<span data-tt="i">@i</span>)</div>'
        '<div>target <b data-tt="target">@tgt</b> (<span data-tt="j">@j</span>)</div>'
        '<div>A1 <span data-tt="left">@left_s</span> · A2 <span data-tt="right">@right_s</span></div>'
        '<div>A1 − A2 <b data-tt="value">@value_s</b></div>'
        '</div>'
    )))
    p.add_layout(ColorBar(color_mapper=mapper, width=10), "right")
    p.xaxis.major_label_orientation = math.pi / 3
    p.axis.major_label_text_font_size = "11px"
    p.grid.grid_line_color = None
    return p


_LINE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf")


def metric_lines(series: Mapping[str, Sequence[tuple[int, float]]], *, title: str, y_label: str = "",
                 name: str = "metrics", marker_step: int | None = None):
    """Line plot of ``{label: [(step, value), ...]}`` with a hover readout; an optional vertical step marker."""
    from bokeh.models import Span

    p = figure(title=plain_text(title), height=300, sizing_mode="stretch_width",
               tools="pan,wheel_zoom,box_zoom,reset,save",
               name=name, x_axis_label="step", y_axis_label=y_label)
    for k, (label, pts) in enumerate(series.items()):
        if not pts:
            continue
        steps = [int(s) for s, _ in pts]
        vals = [float(v) if math.isfinite(v) else float("nan") for _, v in pts]
        src = ColumnDataSource({"step": steps, "value": vals, "series": [label] * len(steps),
                                "value_s": [_fmt(v) for v in vals]})  # significant digits, never 0.0000
        color = _LINE_COLORS[k % len(_LINE_COLORS)]
        p.line("step", "value", source=src, color=color, line_width=2, legend_label=plain_text(label))
        p.scatter("step", "value", source=src, color=color, size=5)
    p.add_tools(HoverTool(tooltips=[("series", "@series"), ("step", "@step"), ("value", "@value_s")]))
    # the marker exists even without a step, so a view can move it (``set_marker``) without redrawing
    p.add_layout(Span(location=marker_step if marker_step is not None else 0, dimension="height",
                      line_color="#555", line_dash="dashed", visible=marker_step is not None, name="step-marker"))
    if p.legend:
        legend = p.legend[0]
        p.center = [r for r in p.center if r is not legend]
        p.add_layout(legend, "right")  # beside the plot: the curves stay visible
        legend.location = "top_left"
        legend.label_text_font_size = "10px"
        legend.click_policy = "hide"
    return p


def set_marker(fig, step: int | None) -> None:
    """Move the step marker of a :func:`metric_lines` figure to ``step`` (hidden when ``None``)."""
    from bokeh.models import Span

    for span in fig.select(type=Span, name="step-marker"):
        if step is not None:
            span.location = step
        span.visible = step is not None
