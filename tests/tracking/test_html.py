"""The per-step HTML view: one self-contained file, no external resources, tokens escaped."""

from __future__ import annotations

import html
import json
from html.parser import HTMLParser

import numpy as np
import pytest

from attrib_mlops.result import AttributionResult, future_mask
from attrib_mlops.tracking import render_step_html
from attrib_mlops.tracking.html import importance_spans


def make_result(sid, method="saliency", seed=0, ns=8, nt=3, tokens=None, engine="native") -> AttributionResult:
    rng = np.random.default_rng(seed)
    m = rng.random((ns, nt)).astype(np.float32)
    m[future_mask(ns, nt, ns - nt)] = np.nan
    toks = tokens or [f"tok{seed}_{k}" for k in range(ns)]
    return AttributionResult(m, toks, toks[ns - nt:], method, engine, n_prompt=ns - nt,
                             prompt=" ".join(toks[: ns - nt]), target=" ".join(toks[ns - nt:]), sample_id=sid)


class Page(HTMLParser):
    """Collects tags, external references and visible text (script/style content excluded)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.external, self.text, self.classes, self.linked = [], [], [], [], []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "srcset", "action", "data") and v:
                v = v.strip().lower()
                if v.startswith(("http:", "https:", "//")):
                    self.external.append((tag, k, v))
            if tag in ("script", "link", "img", "iframe") and k in ("src", "href"):
                self.linked.append((tag, k, v))
            if k == "class" and v:
                self.classes += v.split()
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def parse(text: str) -> Page:
    p = Page()
    p.feed(text)
    p.close()
    return p


@pytest.fixture(scope="module")
def page():
    tricky = ["<b>bold</b>", '"quote"', "</script><img src=x onerror=alert(1)>", "a&b", " space", "Ġword", "é", "x"]
    results = {
        ("model", "saliency"): [make_result(f"s{i}", seed=i) for i in range(3)] + [
            make_result("evil", seed=9, tokens=tricky)],
        ("finetuned", "attention"): [make_result(f"s{i}", "attention", seed=10 + i, engine="inseq") for i in range(3)],
    }
    meta = {"step": 1234, "run_id": "abc123", "samples": [{"id": "evil", "prompt": "first in probe order"}]}
    return render_step_html(results, meta, title="Attribution · step 1234"), results, tricky


def test_single_self_contained_file(page):
    text, _, _ = page
    p = parse(text)
    assert p.external == []
    assert p.tags.count("html") == 1 and p.tags.count("body") == 1
    # Bokeh is inline: there are scripts and stylesheets, none references a file or URL
    assert "script" in p.tags and p.linked == []
    assert "Bokeh" in text
    assert len(text.encode()) < 3_000_000


def test_header_shows_step_models_methods_engines(page):
    text, _, _ = page
    visible = " ".join(parse(text).text)
    for word in ("1234", "abc123", "model", "saliency", "finetuned", "attention", "native", "inseq"):
        assert word in visible


def test_tokens_present_and_escaped(page):
    text, results, tricky = page
    visible = " ".join(parse(text).text)
    for r in results[("model", "saliency")][:3]:
        for tok in r.source_tokens:
            assert tok in visible
    for tok in tricky:
        assert html.escape(tok) in text  # in the static text view
    assert "img" not in parse(text).tags  # the token did not become markup, nor close a script early


def test_sample_picker_and_heatmap(page):
    text, _, _ = page
    assert "probe sample" in text  # the Select widget title
    assert "Select" in text and "Rect" in text and "HoverTool" in text
    # probe order first: the probe lists "evil" before the unlisted samples
    p = parse(text)
    assert p.classes.count("am-sample") == 4
    first_section = text.index('class="am-sample"')
    assert text.index("sample evil", first_section) < text.index("sample s0", first_section)


def test_at_most_max_samples_and_says_so():
    results = {("model", "saliency"): [make_result(f"s{i}", seed=i) for i in range(60)]}
    text = render_step_html(results, {"step": 1}, title="t")
    assert "Showing the first 50 of 60 probe samples" in text
    p = parse(text)
    assert p.classes.count("am-sample") == 50
    assert "tok59_0" not in text and "tok49_0" in text
    small = render_step_html(results, {"step": 1, "max_samples": 5}, title="t")
    assert "Showing the first 5 of 60" in small and len(small) < len(text)


def test_importance_spans_colour_by_normalised_importance():
    m = np.array([[1.0, np.nan], [3.0, 1.0], [np.nan, np.nan]], dtype=np.float32)
    r = AttributionResult(m, ["a", "b<", "c"], ["b<", "c"], "saliency", "native", n_prompt=1)
    out = importance_spans(r)
    assert "b&lt;" in out and "b<" not in out
    # I(x) = [1, 4, nan] -> normalised [0, 1, nan]; the most important token has the strongest colour
    assert "rgba(220,38,38,0.85)" in out and "rgba(220,38,38,0.00)" in out
    assert "I(x)=4" in out and "I(x)=undefined" in out
    assert json.dumps("am-sep")[1:-1] in out  # prompt / continuation separator


def test_empty_and_missing_samples_render():
    results = {("model", "saliency"): [make_result("s0")], ("model", "attention"): [make_result("s1", "attention")]}
    text = render_step_html(results, None, title="t")
    assert "not attributed" in text and parse(text).external == []


def test_view_renders_in_a_process_that_imported_panel():
    """Panel registers file-based extensions with Bokeh when imported; the view must stay self-contained."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent('''
        import numpy as np, panel  # noqa: F401
        from attrib_mlops.result import AttributionResult, future_mask
        from attrib_mlops.tracking.html import render_step_html
        m = np.random.rand(5, 2).astype(np.float32); m[future_mask(5, 2, 3)] = np.nan
        r = AttributionResult(m, list("abcde"), list("de"), "saliency", "native", n_prompt=3, sample_id="s0")
        page = render_step_html({("model", "saliency"): [r]}, title="t")
        assert "static/extensions" not in page and "es-module-shims" not in page
        print("OK", len(page))
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("OK")


# ------------------------------------------------------------------ in a real browser
def _evil(field: str) -> str:
    """Markup, Markdown and TeX that would run or load something if the page rendered it as such."""
    return (f'{field} <img src=x onerror=__pw.{field}> "><svg onload=__pw.{field}> <script>__pw.{field}</script>'
            f" ![m](http://198.51.100.7/{field}.png) $$\\alpha$$ \\(x\\)")


_INIT_JS = """
window.__pwned = [];
window.__pw = new Proxy({}, {get: (_t, k) => { window.__pwned.push(String(k)); return 1; }});
"""

_SCAN_JS = """
() => {
  const found = [];
  const roots = [document, ...[...document.querySelectorAll('*')].filter(e => e.shadowRoot).map(e => e.shadowRoot)];
  for (const root of roots) {
    for (const el of root.querySelectorAll('*')) {
      const tag = el.tagName.toLowerCase();
      for (const a of el.getAttributeNames()) {
        if (/^on/i.test(a)) found.push(`${tag}[${a}]`);
      }
      if (tag === 'img') found.push(`img[src=${el.getAttribute('src')}]`);
      if (tag === 'script' && /^\\s*__pw\\./.test(el.textContent || '')) found.push('injected script');
    }
  }
  return found;
}
"""


@pytest.mark.browser
def test_view_written_by_the_writer_shows_payloads_as_text_in_chromium(tmp_path, chromium):
    """view.html (what the MLflow UI shows inline), written by AttributionWriter with script payloads in
    every name and text: opened in Chromium, hovered and switched between samples, nothing runs or loads."""
    from mlflow.tracking import MlflowClient

    from attrib_mlops.tracking import AttributionWriter

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.create_experiment(_evil("experiment"), artifact_location=str(tmp_path / "art"))
    run = client.create_run(exp, run_name=_evil("run")).info.run_id
    toks = ["<img src=x onerror=__pw.tok>", "<script>__pw.tok2</script>", '"><svg onload=__pw.tok3>', "$$x^2$$",
            "\\(y\\)", "![m](http://198.51.100.7/t.png)", "w1", "w2"]
    results = [make_result(sid, "<img src=x onerror=__pw.method>", seed=k, tokens=toks)
               for k, sid in enumerate([_evil("sample"), "plain"])]
    for r in results:
        r.prompt = _evil("prompt")
    writer = AttributionWriter(client, run_id=run, spool_dir=tmp_path / "spool")
    writer.log_probe_set([{"id": r.sample_id, "prompt": _evil("probe"), "target": _evil("target")} for r in results])
    writer.log_step(7, results, model='"><svg onload=__pw.model>')
    views = list((tmp_path / "art").rglob("view.html"))
    assert len(views) == 1, views

    page = chromium.new_page(viewport={"width": 1300, "height": 1000})
    try:
        dialogs, outside, errors = [], [], []
        page.add_init_script(_INIT_JS)
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("request", lambda r: outside.append(r.url) if r.url.startswith(("http:", "https:")) else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(views[0].as_uri())
        page.locator(".bk-Canvas").first.wait_for()
        tips = []
        box = page.locator(".bk-Canvas").first.bounding_box()
        grid = [(fx / 10, fy / 10) for fy in range(9, 2, -1) for fx in range(9, 3, -1)]
        for fx, fy in grid:
            if len(tips) >= 3:
                break
            page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy, steps=2)
            tip = page.locator(".bk-tooltip-content:visible")
            try:
                tip.first.wait_for(timeout=250)
                tips += tip.all_inner_texts()
            except Exception:  # noqa: BLE001 - not over a cell
                continue
        assert any(m in t for t in tips for m in ("<img src=x", "<script>", "<svg", "$$", "![m](")), tips
        page.locator("select").first.select_option(index=1)  # the sample picker swaps tokens into the axes
        page.wait_for_timeout(500)
        page.locator("select").first.select_option(index=0)
        page.wait_for_timeout(500)
        pwned = page.evaluate("() => window.__pwned")
        found = page.evaluate(_SCAN_JS)
        visible = page.locator("body").inner_text()
    finally:
        page.close()
    assert not dialogs and not pwned and not found, (dialogs, pwned, found)
    assert not outside and not errors, (outside, errors)
    assert "<img src=x onerror=__pw.tok>" in visible and "__pw.model" in visible  # shown, as text


@pytest.mark.browser
def test_view_tooltips_show_positions_and_significant_digits_and_colour_bars_follow_the_sample(tmp_path, chromium):
    """Tiny saliency values read as values, not 0.0000; tooltips say which position; a colour bar per heatmap
    spans the shown sample's values (and follows the sample picker)."""
    import re

    small = make_result("small", seed=3)
    small.matrix = small.matrix * np.float32(1e-5)  # typical raw saliency magnitudes
    big = make_result("big", seed=4)
    page_html = render_step_html({("model", "saliency"): [small, big]}, {"step": 1}, title="t")
    assert page_html.count('"name":"ColorBar"') == 1  # one colour bar per heatmap (in the document JSON)
    path = tmp_path / "view.html"
    path.write_text(page_html, encoding="utf-8")
    mappers_js = """() => [...Bokeh.documents[0].all_models].filter(m => m.constructor.__name__ === 'LinearColorMapper')
                            .map(m => [m.low, m.high])"""
    page = chromium.new_page(viewport={"width": 1300, "height": 1000})
    outside = []  # the view is self-contained: no request leaves the file
    page.on("request", lambda r: outside.append(r.url) if r.url.startswith(("http:", "https:", "ws:")) else None)
    try:
        page.goto(path.as_uri())
        page.locator(".bk-Canvas").first.wait_for()
        box = page.locator(".bk-Canvas").first.bounding_box()
        tips = []
        for fy in range(9, 2, -1):
            for fx in range(9, 3, -1):
                page.mouse.move(box["x"] + box["width"] * fx / 10, box["y"] + box["height"] * fy / 10, steps=2)
                tip = page.locator(".bk-tooltip-content:visible")
                try:
                    tip.first.wait_for(timeout=250)
                except Exception:  # noqa: BLE001 - not over a cell
                    continue
                tips += tip.all_inner_texts()
            if tips:
                break
        ranges_small = page.evaluate(mappers_js)
        page.locator("select").first.select_option(index=1)
        page.wait_for_function(mappers_js.replace("() =>", "() => (") + f")[0][1] > {float(np.nanmax(small.matrix))}")
        ranges_big = page.evaluate(mappers_js)
    finally:
        page.close()
    assert tips, "no tooltip over the heatmap"
    assert not outside, outside
    m = re.search(r"source:\s*(\d+): (\S+)\s+target:\s*(\d+): (\S+)\s+value:\s*(\S+)", tips[0])
    assert m, tips[0]
    i, src, j, tgt, value = int(m[1]), m[2], int(m[3]), m[4], m[5]
    assert small.source_tokens[i] == src and small.target_tokens[j] == tgt
    stored = float(f"{small.matrix[i, j]:.4g}")
    assert value != "0.0000" and float(value) == pytest.approx(stored, rel=1e-3), (value, stored)
    finite = small.matrix[np.isfinite(small.matrix)]
    assert ranges_small[0] == pytest.approx([finite.min(), finite.max()], rel=1e-3)
    finite = big.matrix[np.isfinite(big.matrix)]
    assert ranges_big[0] == pytest.approx([finite.min(), finite.max()], rel=1e-3)
