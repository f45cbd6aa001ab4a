"""One self-contained HTML page per step, shown inline by the MLflow UI.

The MLflow UI renders ``.html`` artifacts in an iframe sandboxed with
``allow-scripts`` (no same-origin, no network needed). The page therefore
carries everything inline:

* Bokeh JS/CSS from :data:`bokeh.resources.INLINE` (only the bundles the page
  uses: core + widgets), no ``src``/``href`` pointing anywhere;
* a header naming the step, run, and every (model, method, engine) panel;
* a sample picker (Bokeh ``Select``) that switches every heatmap and the
  token-importance text view to the chosen probe sample;
* per (model, method) a token heatmap (``rect`` glyphs coloured by value, with a colour bar
  spanning the shown sample's values; hover shows the source and target tokens with their
  positions and the value with 4 significant digits; undefined future cells are not drawn);
* per sample a token-importance text view as plain HTML spans with inline
  background colours (source tokens: normalised ``I(x)``, target tokens:
  normalised ``I(y)``); it works even with JavaScript disabled (then every
  sample is shown one below the other).

At most ``max_samples`` (default 50) samples are included to keep the file
small; the page says so, and every sample remains in the step's Parquet files.

Note: Bokeh's minified library contains dormant code paths that would load
MathJax, Google Maps or Tabler icon fonts from a CDN; they run only for models
this page never uses (TeX labels, GMap, TablerIcon), so the page makes no
network request.
"""

from __future__ import annotations

import functools
import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from attrib_mlops._util import plain_text
from attrib_mlops.analysis import normalize_vector, source_importance, target_importance
from attrib_mlops.result import AttributionResult

__all__ = ["render_step_html", "importance_spans", "plain_text", "DEFAULT_MAX_SAMPLES"]

DEFAULT_MAX_SAMPLES = 50

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 12px; color: #1f2328; }
h1 { font-size: 1.25em; margin: 0 0 6px 0; }
h2 { font-size: 1.05em; margin: 18px 0 6px 0; }
table.am-meta { border-collapse: collapse; margin: 6px 0; font-size: 0.9em; }
table.am-meta td, table.am-meta th { border: 1px solid #d0d7de; padding: 2px 8px; text-align: left; }
.am-note { color: #57606a; font-size: 0.85em; margin: 4px 0; }
.am-sample { border-top: 1px solid #d0d7de; padding: 6px 0; }
.am-sample.am-hidden { display: none; }
.am-sample-h { font-weight: 600; font-size: 0.9em; margin-bottom: 4px; }
.am-panel { margin: 4px 0 8px 0; }
.am-panel-h { font-size: 0.8em; color: #57606a; }
.am-row { line-height: 1.9; }
.am-lbl { display: inline-block; min-width: 5.5em; font-size: 0.75em; color: #57606a; }
.am-tok { white-space: pre; padding: 1px 2px; margin: 0 1px; border-radius: 3px; font-family: ui-monospace, monospace;
          font-size: 0.85em; border: 1px solid #e1e4e8; }
.am-sep { color: #8c959f; margin: 0 4px; }
"""

# JS: switch heatmaps and the static text sections to the selected sample.
_JS = """
const idx = parseInt(cb_obj.value);
if (!window.__am_data) { window.__am_data = JSON.parse(payload); }
const D = window.__am_data;
const fmt = (v) => Number(v).toPrecision(4);
for (let p = 0; p < sources.length; p++) {
  const s = D.panels[p][idx];
  if (s === null) {
    sources[p].data = {x: [], y: [], value: [], value_s: [], norm: [], src: [], tgt: []};
    continue;
  }
  const x = [], y = [], value = [], value_s = [], norm = [], src = [], tgt = [];
  let lo = Infinity, hi = -Infinity;
  for (const v of s.v) { if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }
  const span = (hi > lo) ? (hi - lo) : 1.0;
  for (let i = 0; i < s.ns; i++) {
    for (let j = 0; j < s.nt; j++) {
      const v = s.v[i * s.nt + j];
      if (v === null) continue;
      x.push(j); y.push(i); value.push(v); value_s.push(fmt(v)); norm.push(hi > lo ? (v - lo) / span : 0.0);
      src.push(s.src[i]); tgt.push(s.tgt[j]);
    }
  }
  sources[p].data = {x: x, y: y, value: value, value_s: value_s, norm: norm, src: src, tgt: tgt};
  if (lo <= hi) { mappers[p].setv({low: lo, high: hi > lo ? hi : lo + 1.0}); }
  xranges[p].setv({start: -0.5, end: s.nt - 0.5});
  yranges[p].setv({start: s.ns - 0.5, end: -0.5});
  const xo = new Map(), yo = new Map(), xt = [], yt = [];  // overrides are looked up by numeric tick
  for (let j = 0; j < s.nt; j++) { xo.set(j, s.tgt[j]); xt.push(j); }
  for (let i = 0; i < s.ns; i++) { yo.set(i, s.src[i]); yt.push(i); }
  xaxes[p].ticker.ticks = xt; xaxes[p].major_label_overrides = xo;
  yaxes[p].ticker.ticks = yt; yaxes[p].major_label_overrides = yo;
}
for (const el of document.querySelectorAll('.am-sample')) {
  el.classList.toggle('am-hidden', el.dataset.idx !== String(idx));
}
"""

# Hide every sample section but the first once scripts run (without scripts, all stay visible).
_JS_INIT = """
<script>
document.addEventListener('DOMContentLoaded', function () {
  for (const el of document.querySelectorAll('.am-sample')) {
    el.classList.toggle('am-hidden', el.dataset.idx !== '0');
  }
});
</script>
"""


def _sig(x: float) -> str:
    """A value with 4 significant digits (``0.0001234``, ``1.234e-07``): never ``0.0000`` for a small one."""
    return f"{x:.4g}"


def _range(c: dict[str, Any] | None) -> tuple[float, float]:
    """Colour range of one sample's heatmap: its smallest and largest value (a flat matrix gets a unit range)."""
    vals = [v for v in (c or {}).get("v", []) if v is not None]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    return lo, hi if hi > lo else lo + 1.0


def _round(x: float) -> float | None:
    return float(f"{x:.4g}") if math.isfinite(x) else None


def _finite_or_nan(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return np.where(np.isfinite(v), v, np.nan)


def _span(tok: str, weight: float, raw: float, rgb: tuple[int, int, int], kind: str) -> str:
    a = 0.0 if not math.isfinite(weight) else max(0.0, min(1.0, weight))
    title = f"{kind}={raw:.4g}" if math.isfinite(raw) else f"{kind}=undefined"
    style = f"background-color: rgba({rgb[0]},{rgb[1]},{rgb[2]},{a * 0.85:.2f})"
    return (
        f'<span class="am-tok" style="{style}" title="{html.escape(title)}">'
        f"{html.escape(tok) if tok else '&#8203;'}</span>"
    )


def importance_spans(result: AttributionResult) -> str:
    """Token-importance text view of one result as HTML (tokens escaped, inline colours).

    Source tokens are coloured by normalised ``I(x)`` (prompt rows, then a
    separator, then the target prefix rows), target tokens by normalised ``I(y)``.
    """
    src_imp = _finite_or_nan(source_importance(result))
    tgt_imp = _finite_or_nan(target_importance(result))
    src_w, tgt_w = normalize_vector(src_imp), normalize_vector(tgt_imp)
    n_prompt = int(result.n_prompt)
    parts = ['<div class="am-row"><span class="am-lbl">source I(x)</span>']
    for i, tok in enumerate(result.source_tokens):
        if i == n_prompt and n_prompt < len(result.source_tokens):
            parts.append('<span class="am-sep">|</span>')
        parts.append(_span(tok, float(src_w[i]), float(src_imp[i]), (220, 38, 38), "I(x)"))
    parts.append('</div><div class="am-row"><span class="am-lbl">target I(y)</span>')
    for j, tok in enumerate(result.target_tokens):
        parts.append(_span(tok, float(tgt_w[j]), float(tgt_imp[j]), (37, 99, 235), "I(y)"))
    parts.append("</div>")
    return "".join(parts)


def _panels(results_by_model_method: Mapping[Any, Any]) -> list[tuple[str, str, list[AttributionResult]]]:
    """Normalise ``{(model, method): results}`` or ``{model: {method: results}}`` to a list."""
    out = []
    for key, value in results_by_model_method.items():
        if isinstance(key, tuple) and len(key) == 2:
            out.append((str(key[0]), str(key[1]), list(value)))
        elif isinstance(value, Mapping):
            out.extend((str(key), str(m), list(rs)) for m, rs in value.items())
        else:
            out.append(("model", str(key), list(value)))
    return out


def _sample_key(r: AttributionResult, i: int) -> str:
    return str(r.sample_id) if r.sample_id is not None else str(i)


def _cells(r: AttributionResult) -> dict[str, Any]:
    return {
        "ns": r.shape[0],
        "nt": r.shape[1],
        "src": [plain_text(t) for t in r.source_tokens],
        "tgt": [plain_text(t) for t in r.target_tokens],
        "v": [_round(float(x)) for x in r.matrix.ravel()],
    }


def _initial_data(c: dict[str, Any] | None) -> dict[str, list]:
    data: dict[str, list] = {"x": [], "y": [], "value": [], "value_s": [], "norm": [], "src": [], "tgt": []}
    if c is None:
        return data
    vals = [v for v in c["v"] if v is not None]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 0.0)
    span = hi - lo if hi > lo else 1.0
    for i in range(c["ns"]):
        for j in range(c["nt"]):
            v = c["v"][i * c["nt"] + j]
            if v is None:
                continue
            data["x"].append(j)
            data["y"].append(i)
            data["value"].append(v)
            data["value_s"].append(_sig(v))
            data["norm"].append((v - lo) / span if hi > lo else 0.0)
            data["src"].append(c["src"][i])
            data["tgt"].append(c["tgt"][j])
    return data


def render_step_html(
    results_by_model_method: Mapping[Any, Sequence[AttributionResult]],
    probe_meta: Mapping[str, Any] | None = None,
    title: str = "Attribution",
) -> str:
    """Render one step as a single self-contained HTML document.

    Args:
        results_by_model_method: ``{(model, method): [results per sample]}`` (or
            ``{model: {method: results}}``).
        probe_meta: optional page facts: ``step``, ``run_id``, ``samples`` (probe
            sample dicts with ``id``/``prompt``, fixes the sample order),
            ``max_samples`` (default 50), ``note`` (extra text).
        title: page title.

    Returns:
        The HTML text (UTF-8). It references no external resource.
    """
    from bokeh.embed import components
    from bokeh.layouts import column
    from bokeh.models import (ColorBar, ColumnDataSource, CustomJS, FixedTicker, HoverTool, LinearColorMapper,
                              Range1d, Select)
    from bokeh.palettes import Viridis256
    from bokeh.plotting import figure

    meta = dict(probe_meta or {})
    max_samples = int(meta.get("max_samples", DEFAULT_MAX_SAMPLES))
    panels = _panels(results_by_model_method)

    # sample order: probe order if known, then anything else in first-seen order
    order: list[str] = [str(s.get("id")) for s in meta.get("samples", []) or [] if s.get("id") is not None]
    by_panel: list[dict[str, AttributionResult]] = []
    for _, _, rs in panels:
        d = {_sample_key(r, i): r for i, r in enumerate(rs)}
        by_panel.append(d)
    present = {sid for d in by_panel for sid in d}
    order = [s for s in order if s in present]
    for d in by_panel:
        order.extend(s for s in d if s not in order)
    n_total = len(order)
    shown = order[:max_samples]

    prompts: dict[str, str] = {str(s.get("id")): str(s.get("prompt", "")) for s in meta.get("samples", []) or []}
    for d in by_panel:
        for sid, r in d.items():
            prompts.setdefault(sid, r.prompt)

    # ---------------------------------------------------------------- bokeh part
    payload = {"panels": [[(_cells(d[s]) if s in d else None) for s in shown] for d in by_panel]}
    sources, figures, mappers = [], [], []
    for (model, method, rs), d, cells in zip(panels, by_panel, payload["panels"]):
        engine = rs[0].engine if rs else "?"
        dims = [(c["ns"], c["nt"]) for c in cells if c is not None] or [(1, 1)]
        max_ns, max_nt = max(x[0] for x in dims), max(x[1] for x in dims)
        first = cells[0] if cells else None
        src = ColumnDataSource(_initial_data(first))
        ns0, nt0 = (first["ns"], first["nt"]) if first else (1, 1)
        fig = figure(
            title=plain_text(f"{model} · {method} ({engine})"),
            width=int(min(1100, max(320, 160 + 22 * max_nt))),
            height=int(min(1400, max(260, 90 + 16 * max_ns))),
            x_range=Range1d(-0.5, nt0 - 0.5),
            y_range=Range1d(ns0 - 0.5, -0.5),
            tools="hover,pan,wheel_zoom,box_zoom,reset,save",
            toolbar_location="right",
            x_axis_location="above",
        )
        lo, hi = _range(first)
        mapper = LinearColorMapper(palette=Viridis256, low=lo, high=hi, nan_color="#f0f0f0")
        fig.rect(x="x", y="y", width=1, height=1, source=src, line_color=None,
                 fill_color={"field": "value", "transform": mapper})
        fig.add_layout(ColorBar(color_mapper=mapper, width=10, title="value"), "right")
        hover = fig.select_one(HoverTool)
        # positions as the axes count them (row i: source token, column j: target token)
        hover.tooltips = [("source", "@y: @src"), ("target", "@x: @tgt"), ("value", "@value_s")]
        fig.xaxis.ticker = FixedTicker(ticks=list(range(nt0)))
        fig.yaxis.ticker = FixedTicker(ticks=list(range(ns0)))
        if first:
            fig.xaxis.major_label_overrides = {j: t for j, t in enumerate(first["tgt"])}
            fig.yaxis.major_label_overrides = {i: t for i, t in enumerate(first["src"])}
        fig.xaxis.major_label_orientation = math.pi / 3
        fig.xaxis.axis_label = "target token"
        fig.yaxis.axis_label = "source token"
        fig.grid.visible = False
        sources.append(src)
        figures.append(fig)
        mappers.append(mapper)

    options = [(str(i), f"{sid}: {prompts.get(sid, '')[:60]}") for i, sid in enumerate(shown)]
    select = Select(title="probe sample", value="0", options=options or [("0", "(no samples)")], width=500)
    select.js_on_change(
        "value",
        CustomJS(
            args=dict(
                sources=sources,
                mappers=mappers,
                xranges=[f.x_range for f in figures],
                yranges=[f.y_range for f in figures],
                xaxes=[f.xaxis[0] for f in figures],
                yaxes=[f.yaxis[0] for f in figures],
                payload=json.dumps(payload, separators=(",", ":")),
            ),
            code=_JS,
        ),
    )
    root = column(select, *figures)
    script, div = components(root)
    resources = _inline_resources(root)

    # ----------------------------------------------------------------- static part
    rows = []
    for (model, method, rs), d in zip(panels, by_panel):
        engines = sorted({r.engine for r in rs}) or ["?"]
        rows.append(
            f"<tr><td>{html.escape(model)}</td><td>{html.escape(method)}</td>"
            f"<td>{html.escape(', '.join(engines))}</td><td>{len(d)}</td></tr>"
        )
    facts = []
    for key in ("step", "run_id", "model_id"):
        if meta.get(key) is not None:
            facts.append(f"<b>{html.escape(key.replace('_', ' '))}</b> {html.escape(str(meta[key]))}")
    note = (
        f"Showing the first {len(shown)} of {n_total} probe samples; every sample is in the step's Parquet files."
        if n_total > len(shown)
        else f"{n_total} probe sample(s)."
    )
    sections = []
    for i, sid in enumerate(shown):
        body = [f'<div class="am-sample-h">sample {html.escape(sid)}: {html.escape(prompts.get(sid, ""))}</div>']
        for (model, method, _), d in zip(panels, by_panel):
            r = d.get(sid)
            inner = importance_spans(r) if r is not None else '<span class="am-note">not attributed</span>'
            eng = f" ({html.escape(r.engine)})" if r is not None else ""
            body.append(
                f'<div class="am-panel"><div class="am-panel-h">{html.escape(model)} · {html.escape(method)}'
                f"{eng}</div>{inner}</div>"
            )
        sections.append(f'<section class="am-sample" data-idx="{i}">{"".join(body)}</section>')
    extra = f'<p class="am-note">{html.escape(str(meta["note"]))}</p>' if meta.get("note") else ""

    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        resources,
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p>{" &nbsp; ".join(facts)}</p>' if facts else "",
        '<table class="am-meta"><tr><th>model</th><th>method</th><th>engine</th><th>samples</th></tr>',
        "".join(rows),
        "</table>",
        f'<p class="am-note">{html.escape(note)}</p>',
        extra,
        div,
        "<h2>Token importance</h2>",
        '<p class="am-note">Background: normalised I(x) (source, red) and I(y) (target, blue); '
        "hover a token for its value. The bar separates prompt from continuation rows.</p>",
        "".join(sections),
        script,
        _JS_INIT,
        "</body>",
        "</html>",
    ])


def _inline_resources(obj: Any) -> str:
    """Inline ``<script>``/``<style>`` for the Bokeh bundles the view needs (core + widgets).

    Built from ``bokeh.resources.Resources(mode="inline")`` directly rather than from
    the document's bundle, so extensions other libraries register in the process
    (Panel adds relative-file ES modules when imported) never end up in the page:
    the file stays self-contained and works in the MLflow UI's sandboxed iframe.
    The same for every page, so built once per process (the upload worker renders many).
    """
    return _bokeh_bundle()


@functools.lru_cache(maxsize=1)
def _bokeh_bundle() -> str:
    from bokeh.embed.bundle import CSS_RESOURCES, JS_RESOURCES
    from bokeh.resources import Resources

    res = Resources(mode="inline", components=["bokeh", "bokeh-widgets"])
    return CSS_RESOURCES.render(css_raw=res.css_raw, css_files=[]) + "\n" + JS_RESOURCES.render(
        js_raw=res.js_raw, js_files=[]
    )
