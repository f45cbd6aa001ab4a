"""Static assets of the token view, as strings: the JavaScript that draws and recolours tokens, and its CSS.

Kept free of Panel imports so the standalone HTML export (:mod:`panel_app.export`) can use them
in any process. :class:`panel_app.tokens.TokenView` wraps them into a Panel component.
"""

__all__ = ["TOKENS_JS", "TOKENS_CSS", "LOGIN_HTML"]

TOKENS_JS = r"""
function attribNorm(vals) {
  let lo = Infinity, hi = -Infinity;
  for (const v of vals) { if (v !== null && v !== undefined && isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }
  return vals.map(v => (v === null || v === undefined || !isFinite(v)) ? null : (hi > lo ? (v - lo) / (hi - lo) : 0));
}
function attribAbsMax(vals) {
  let m = 0;
  for (const v of vals) { if (v !== null && v !== undefined && isFinite(v)) { m = Math.max(m, Math.abs(v)); } }
  return m;
}
function attribBlend(layers) {
  let sw = 0, r = 0, g = 0, b = 0, a = 0, any = false;
  for (const l of layers) {
    if (l.t === null || l.t === undefined) continue;
    any = true; sw += l.t; a = Math.max(a, l.t);
    r += l.t * l.color[0]; g += l.t * l.color[1]; b += l.t * l.color[2];
  }
  if (!any) return null;
  if (sw <= 0) return "rgb(255, 255, 255)";
  r /= sw; g /= sw; b /= sw;
  const mix = (c) => Math.round(255 * (1 - a) + a * c);
  return `rgb(${mix(r)}, ${mix(g)}, ${mix(b)})`;
}
function attribDiverging(v, m) {
  if (v === null || v === undefined || !isFinite(v)) return null;
  const t = m > 0 ? Math.max(-1, Math.min(1, v / m)) : 0;
  const c = t >= 0 ? [202, 0, 32] : [5, 113, 176];
  const a = Math.abs(t);
  const mix = (x) => Math.round(255 * (1 - a) + a * x);
  return `rgb(${mix(c[0])}, ${mix(c[1])}, ${mix(c[2])})`;
}
function attribText(tok) {
  const t = String(tok).replace(/\n/g, "\u23ce").replace(/\t/g, "\u21e5");
  return t.length ? t : "\u2205";
}
function attribFmt(v) { return (v === null || v === undefined || !isFinite(v)) ? "nan" : String(v); }
function attribShort(v) { return (v === null || v === undefined || !isFinite(v)) ? "–" : Number(v).toPrecision(3); }

function attribDraw(root, data) {
  root.innerHTML = "";
  root.classList.add("attrib-tokens");
  root.dataset.state = (data && data.state) ? String(data.state) : "";
  root.dataset.window = (data && data.window !== undefined) ? String(data.window) : "";
  if (!data || !data.sides || !data.sides.length) {
    const empty = document.createElement("div");
    empty.className = "attrib-empty";
    empty.textContent = (data && data.empty) ? data.empty : "Nothing selected.";
    root.appendChild(empty);
    return;
  }
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const sides = data.sides;
  const diff = data.diff;
  const spans = {};   // key -> {source: [], target: []}

  const legend = el("div", "attrib-legend");
  for (const m of sides[0].methods) {
    const item = el("span", "attrib-legend-item");
    const sw = el("span", "attrib-swatch");
    sw.style.background = `rgb(${m.color[0]}, ${m.color[1]}, ${m.color[2]})`;
    item.appendChild(sw);
    item.appendChild(document.createTextNode(m.name));
    item.dataset.method = m.name;
    legend.appendChild(item);
  }
  const hint = el("span", "attrib-hint",
    "colour = min-max normalised importance I(x) / I(y); hover a target token to see which source tokens it used, a source token to see which targets used it" +
    (sides[0].methods.length > 1 ? "; the bars under each token: each method on its own" : ""));
  legend.appendChild(hint);
  root.appendChild(legend);
  const status = el("div", "attrib-status", "\u00a0");
  status.dataset.role = "status";
  root.appendChild(status);

  const tokRow = (box, key, role, tokens, nPrompt, scores) => {
    const row = el("div", "attrib-row");
    row.appendChild(el("span", "attrib-label", role));
    const list = [];
    tokens.forEach((tok, i) => {
      if (role === "source" && i === nPrompt && nPrompt < tokens.length) {
        row.appendChild(el("span", "attrib-sep", "\u2502"));
      }
      const s = el("span", "attrib-tok", attribText(tok));
      s.dataset.side = key; s.dataset.role = role; s.dataset.index = String(i); s.dataset.token = String(tok);
      s.addEventListener("mouseenter", () => hover(role, i, key));
      s.addEventListener("mouseleave", () => reset());
      list.push(s);
      if (role === "target" && scores && Object.keys(scores).length) {
        const wrap = el("span", "attrib-tgt");
        wrap.appendChild(s);
        for (const [name, vals] of Object.entries(scores)) {
          const sc = el("span", "attrib-score", (name === "probability" ? "p " : name === "entropy" ? "H " : name + " ") + attribShort(vals[i]));
          sc.dataset.score = name; sc.dataset.index = String(i); sc.dataset.value = attribFmt(vals[i]);
          sc.title = `${name} of target token ${i}: ${attribFmt(vals[i])}`;
          wrap.appendChild(sc);
        }
        row.appendChild(wrap);
      } else {
        row.appendChild(s);
      }
    });
    box.appendChild(row);
    return list;
  };

  for (const side of sides) {
    const box = el("div", "attrib-side");
    box.dataset.side = side.key;
    if (side.title) box.appendChild(el("div", "attrib-side-title", side.title));
    spans[side.key] = {
      source: tokRow(box, side.key, "source", side.source, side.n_prompt, null),
      target: tokRow(box, side.key, "target", side.target, 0, side.scores),
    };
    root.appendChild(box);
  }
  if (diff) {
    const box = el("div", "attrib-side attrib-diff");
    box.dataset.side = "diff";
    box.appendChild(el("div", "attrib-side-title", diff.title));
    spans.diff = {
      source: tokRow(box, "diff", "source", diff.source, diff.n_prompt, null),
      target: tokRow(box, "diff", "target", diff.target, 0, null),
    };
    root.appendChild(box);
  }

  const paint = (span, color, value, values) => {
    span.style.background = color === null ? "" : color;
    span.classList.toggle("attrib-undef", color === null);
    span.dataset.value = attribFmt(value);
    if (values !== undefined) span.dataset.values = JSON.stringify(values.map(v => (v === null || !isFinite(v)) ? null : v));
    span.title = `${span.dataset.role} ${span.dataset.index} ${JSON.stringify(span.dataset.token)}: ${attribFmt(value)}`;
  };
  // several methods: besides the blended background, one bar per method under the token, in that
  // method's colour, as strong as its own normalised value (a blend of three colours is unreadable)
  const paintBars = (span, layers, methods) => {
    let bars = span.querySelector(".attrib-bars");
    if (layers.length < 2) { if (bars) bars.remove(); span.classList.remove("attrib-multi"); return; }
    span.classList.add("attrib-multi");
    if (!bars || bars.children.length !== layers.length) {
      if (bars) bars.remove();
      bars = el("span", "attrib-bars");
      methods.forEach((m) => { const b = el("i", "attrib-bar"); b.dataset.method = m.name; bars.appendChild(b); });
      span.appendChild(bars);
    }
    layers.forEach((l, k) => {
      const b = bars.children[k];
      b.style.background = `rgb(${l.color[0]}, ${l.color[1]}, ${l.color[2]})`;
      b.style.opacity = (l.t === null || l.t === undefined) ? "0" : String(Math.max(0.08, l.t));
      b.dataset.t = (l.t === null || l.t === undefined) ? "nan" : String(l.t);
    });
  };
  const paintVectors = (list, vectors, methods) => {
    const norms = vectors.map(v => attribNorm(v));
    list.forEach((span, i) => {
      const layers = methods.map((m, k) => ({ t: norms[k][i], color: m.color }));
      paint(span, attribBlend(layers), vectors[0][i], vectors.map(v => v[i]));
      paintBars(span, layers, methods);
    });
  };
  // scale: the magnitude of the values compared (max |A1|, |A2|), so a tiny difference stays pale;
  // without one (older payloads) the largest |difference| shown
  const paintDiverging = (list, vals, scale) => {
    const m = (typeof scale === "number" && scale > 0) ? scale : attribAbsMax(vals);
    list.forEach((span, i) => paint(span, attribDiverging(vals[i], m), vals[i], [vals[i]]));
  };
  const clearActive = () => {
    root.querySelectorAll(".attrib-active").forEach(e => e.classList.remove("attrib-active"));
  };

  function reset() {
    clearActive();
    for (const side of sides) {
      paintVectors(spans[side.key].source, side.methods.map(m => m.source), side.methods);
      paintVectors(spans[side.key].target, side.methods.map(m => m.target), side.methods);
    }
    if (diff) {
      paintDiverging(spans.diff.source, diff.source_values, diff.source_scale);
      paintDiverging(spans.diff.target, diff.target_values, diff.target_scale);
    }
    status.textContent = "\u00a0";
    status.dataset.hover = "";
  }

  function hover(role, index, fromKey) {
    reset();
    const targets = data.sync ? Object.keys(spans) : [fromKey];
    for (const side of sides) {
      if (!targets.includes(side.key)) continue;
      const sp = spans[side.key];
      if (role === "target" && index < side.target.length) {
        const cols = side.methods.map(m => m.matrix.map(row => row[index]));
        paintVectors(sp.source, cols, side.methods);
        sp.target[index].classList.add("attrib-active");
      } else if (role === "source" && index < side.source.length) {
        const rows = side.methods.map(m => m.matrix[index]);
        paintVectors(sp.target, rows, side.methods);
        sp.source[index].classList.add("attrib-active");
      }
    }
    if (diff && targets.includes("diff")) {
      if (role === "target" && index < diff.target.length) {
        paintDiverging(spans.diff.source, diff.matrix.map(row => row[index]), diff.cell_scale);
        spans.diff.target[index].classList.add("attrib-active");
      } else if (role === "source" && index < diff.source.length) {
        paintDiverging(spans.diff.target, diff.matrix[index], diff.cell_scale);
        spans.diff.source[index].classList.add("attrib-active");
      }
    }
    const side0 = sides.find(s => s.key === fromKey) || (fromKey === "diff" ? diff : sides[0]);
    const tok = role === "target" ? side0.target[index] : side0.source[index];
    status.dataset.hover = `${role}:${index}`;
    status.textContent = role === "target"
      ? `target ${index} ${JSON.stringify(tok)}: source colours show column ${index} (how much each source token contributed to it)`
      : `source ${index} ${JSON.stringify(tok)}: target colours show row ${index} (how much it contributed to each target token)`;
  }

  reset();
}
"""

TOKENS_CSS = """
.attrib-tokens { font-family: var(--bokeh-base-font, Helvetica, Arial, sans-serif); font-size: 14px; line-height: 1.5; }
.attrib-legend { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; font-size: 12px; color: #444; }
.attrib-legend-item { display: inline-flex; align-items: center; gap: 4px; font-weight: 600; }
.attrib-swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; }
.attrib-hint { color: #777; }
.attrib-status { font-size: 12px; color: #333; min-height: 1.4em; margin: 4px 0; }
.attrib-side { border: 1px solid #e3e3e3; border-radius: 6px; padding: 6px 8px; margin: 6px 0; }
.attrib-side-title { font-size: 12px; font-weight: 600; color: #555; margin-bottom: 4px; }
.attrib-row { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 3px; margin: 3px 0; }
.attrib-label { display: inline-block; width: 52px; font-size: 11px; color: #888; padding-top: 3px; }
.attrib-tok { display: inline-block; padding: 1px 4px; border-radius: 3px; border: 1px solid #ddd;
              white-space: pre; cursor: default; font-family: var(--bokeh-mono-font, monospace); }
.attrib-tok.attrib-undef { background: repeating-linear-gradient(45deg, #f4f4f4, #f4f4f4 3px, #e6e6e6 3px, #e6e6e6 6px); color: #999; }
.attrib-tok.attrib-active { outline: 2px solid #111; outline-offset: 1px; }
.attrib-tok.attrib-multi { position: relative; margin-bottom: 6px; }
.attrib-bars { position: absolute; left: 1px; right: 1px; bottom: -6px; height: 4px; display: flex; gap: 1px; }
.attrib-bar { flex: 1; height: 4px; border-radius: 1px; }
.attrib-tgt { display: inline-flex; flex-direction: column; align-items: center; }
.attrib-score { font-size: 10px; color: #666; font-family: var(--bokeh-mono-font, monospace); }
.attrib-sep { color: #bbb; padding: 0 2px; }
.attrib-empty { color: #777; font-style: italic; padding: 8px; }
"""

#: Login page for Panel's basic auth (Jinja): Panel's default loads its logo from a CDN, which fails offline.
LOGIN_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>attrib-mlops dashboard | Login</title>
<link rel="icon" href="data:,">
<style>
* { box-sizing: border-box; margin: 0; padding: 0; }
html, body { height: 100%; font-family: Helvetica, Arial, sans-serif; }
.wrap { display: flex; align-items: center; justify-content: center; height: 100%; background: #fafafa; }
.login-form { background: #fff; border: 1px solid #ddd; padding: 2em; width: 340px; }
.login-form h3 { text-align: center; margin-bottom: 1em; }
.form-group { margin-bottom: 1em; }
.form-input { width: 100%; padding: 10px; border: 1px solid #ddd; background: #fafafa; }
.form-button { width: 100%; padding: 10px; background: #107bba; color: #fff; border: 0; }
.errormessage { color: #c00; font-weight: bold; text-align: center; }
</style>
</head>
<body>
<div class="wrap">
  <form class="login-form" action=".{{ login_endpoint }}" method="post">
    <h3>attrib-mlops dashboard</h3>
    <div class="form-group"><p class="errormessage">{{ errormessage|escape }}</p></div>
    <div class="form-group">
      <input name="username" type="text" class="form-input" autocapitalize="off" autocorrect="off"
             placeholder="username">
    </div>
    <div class="form-group"><input name="password" type="password" class="form-input" placeholder="password"></div>
    <div class="form-group"><button class="form-button" type="submit">Log in</button></div>
  </form>
</div>
</body>
</html>
"""
