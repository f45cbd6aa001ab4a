"""Bokeh figures of the Sources and AT2 views (no data access).

* :func:`weights_heatmap`: an AT2 estimator's ``[layers, heads]`` weights; the tooltip carries
  ``data-tt`` fields ``layer``, ``head`` and ``value`` (as the token heatmaps do) so tests can read it;
* :func:`score_bars`: the scores of each source on two sides (checkpoints or runs), side by side.

Titles and labels go through :func:`attrib_mlops._util.plain_text` (never TeX); tooltip
fields are ``@field`` values, which BokehJS escapes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from bokeh.models import ColorBar, ColumnDataSource, FactorRange, HoverTool, LinearColorMapper
from bokeh.palettes import Viridis256
from bokeh.plotting import figure
from bokeh.transform import dodge

from attrib_mlops._util import plain_text

__all__ = ["weights_heatmap", "score_bars"]


def _fmt(x: float) -> str:
    return f"{x:.6g}" if math.isfinite(x) else "undefined"


def weights_heatmap(weights: np.ndarray, *, title: str, name: str = "at2-weights",
                    low: float | None = None, high: float | None = None):
    """Heatmap of ``weights[layer, head]`` (layers top to bottom); ``low``/``high`` fix the colour range."""
    w = np.asarray(weights, dtype=np.float64)
    n_layers, n_heads = w.shape
    ys = [f"layer {i}" for i in range(n_layers)]
    xs = [f"head {j}" for j in range(n_heads)]
    ii, jj = np.meshgrid(np.arange(n_layers), np.arange(n_heads), indexing="ij")
    vals = w.ravel().tolist()
    data = {"x": [xs[j] for j in jj.ravel()], "y": [ys[i] for i in ii.ravel()], "layer": ii.ravel().tolist(),
            "head": jj.ravel().tolist(), "value": vals, "value_s": [_fmt(v) for v in vals]}
    finite = w[np.isfinite(w)]
    lo = float(finite.min()) if low is None and finite.size else (0.0 if low is None else low)
    hi = float(finite.max()) if high is None and finite.size else (1.0 if high is None else high)
    if hi <= lo:
        hi = lo + 1e-9
    mapper = LinearColorMapper(palette=Viridis256, low=lo, high=hi, nan_color="#eeeeee")
    p = figure(title=plain_text(title), x_range=FactorRange(*xs), y_range=FactorRange(*reversed(ys)),
               width=int(min(700, 170 + 48 * n_heads)), height=int(min(700, 110 + 30 * n_layers)),
               tools="save", toolbar_location="right", x_axis_location="above", name=name)
    p.rect("x", "y", width=1, height=1, source=ColumnDataSource(data),
           fill_color={"field": "value", "transform": mapper}, line_color="white", line_width=0.5)
    p.add_tools(HoverTool(tooltips=(
        '<div class="attrib-tt">'
        '<div>layer <b data-tt="layer">@layer</b> · head <b data-tt="head">@head</b></div>'
        '<div>weight <b data-tt="value">@value_s</b></div>'
        '</div>'
    )))
    p.add_layout(ColorBar(color_mapper=mapper, width=10), "right")
    p.axis.major_label_text_font_size = "11px"
    p.grid.grid_line_color = None
    p.axis.axis_line_color = None
    p.axis.major_tick_line_color = None
    return p


def score_bars(rows: Sequence[dict[str, Any]], *, left: str, right: str, name: str = "source-bars"):
    """Grouped bars of ``rows[i]["A"]`` and ``rows[i]["B"]`` per source (rows from ``compare_rows``)."""
    labels = [plain_text(f"{r['source']}: {str(r['text'])[:24]}") for r in rows]
    data = {"x": labels, "text": [str(r["text"]) for r in rows], "source": [int(r["source"]) for r in rows],
            "A": [float(r["A"]) for r in rows], "B": [float(r["B"]) for r in rows],
            "A_s": [_fmt(float(r["A"])) for r in rows], "B_s": [_fmt(float(r["B"])) for r in rows]}
    p = figure(x_range=FactorRange(*labels) if labels else FactorRange("-"), height=300,
               width=int(min(1100, 220 + 70 * max(1, len(rows)))), title=plain_text(f"source scores: A = {left} · "
                                                                                     f"B = {right}"),
               tools="save", toolbar_location="right", name=name)
    src = ColumnDataSource(data)
    p.vbar(x=dodge("x", -0.18, range=p.x_range), top="A", width=0.34, source=src, color="#d62728",
           legend_label="A")
    p.vbar(x=dodge("x", 0.18, range=p.x_range), top="B", width=0.34, source=src, color="#1f77b4",
           legend_label="B")
    p.add_tools(HoverTool(tooltips=(
        '<div class="attrib-tt"><div>source <span data-tt="i">@source</span> <b data-tt="source">@text</b></div>'
        '<div>A <b data-tt="left">@A_s</b> · B <b data-tt="right">@B_s</b></div></div>')))
    p.xaxis.major_label_orientation = math.pi / 4
    p.add_layout(p.legend[0], "right")
    p.grid.grid_line_color = None
    return p
