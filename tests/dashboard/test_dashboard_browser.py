"""The dashboard in a real browser: Playwright drives Debian's Chromium against ``attrib-mlops dashboard``.

The server runs as a subprocess on a store built by the tests (see conftest.py); the tests
compare what the page shows with what :class:`AttributionReader` reads from the same store.
Every wait is on a condition; any browser console error fails the test.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from attrib_mlops.analysis import input_centered_window_sums, source_importance
from attrib_mlops.tracking import AttributionReader

pytestmark = pytest.mark.browser

TIMEOUT_MS = 30_000


# ------------------------------------------------------------------ server and pages
@pytest.fixture(scope="module")
def dashboard(dash_store, tmp_path_factory, chromium, serve_dashboard):
    with serve_dashboard(dash_store.uri, tmp_path_factory.mktemp("dash-log") / "server.log") as url:
        yield url


class Console:
    """Browser console errors, uncaught page errors and requests leaving 127.0.0.1 of one page.

    Everything the dashboard needs is served by the dashboard itself: a request to any other host
    (a CDN stylesheet, a font) is an error.
    """

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error"
                else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("requestfailed", lambda r: self.failed.append(r.url))
        page.on("request", self._request)
        self.failed: list[str] = []

    def _request(self, request) -> None:
        from urllib.parse import urlsplit

        url = request.url
        if url.startswith(("http:", "https:", "ws:", "wss:")) and urlsplit(url).hostname not in ("127.0.0.1",
                                                                                              "localhost"):
            self.errors.append(f"request leaving 127.0.0.1: {url}")


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    console = Console(pg)
    yield pg
    errors = list(console.errors)
    context.close()
    assert not errors, "browser console errors:\n" + "\n".join(errors + [f"failed: {u}" for u in console.failed])


# ------------------------------------------------------------------ helpers
def values(page, scope: str, side: str, role: str) -> np.ndarray:
    raw = page.locator(f'{scope} .attrib-tok[data-side="{side}"][data-role="{role}"]').evaluate_all(
        "els => els.map(e => e.dataset.value)")
    return np.array([np.nan if v == "nan" else float(v) for v in raw])


def assert_close(shown: np.ndarray, stored: np.ndarray, scale: float, rel_tol: float) -> None:
    stored = np.asarray(stored, dtype=float)
    assert shown.shape == stored.shape, (shown, stored)
    assert np.array_equal(np.isnan(shown), np.isnan(stored)), (shown, stored)
    ok = ~np.isnan(stored)
    assert np.all(np.abs(shown[ok] - stored[ok]) <= rel_tol * scale), (shown, stored)


def hover(page, scope: str, side: str, role: str, index: int) -> None:
    page.locator(f'{scope} .attrib-tok[data-side="{side}"][data-role="{role}"][data-index="{index}"]').hover()
    page.locator(f'{scope} [data-role="status"][data-hover="{role}:{index}"]').wait_for()


def pick(page, css: str, starts_with: str) -> None:
    """Choose the option of a Panel Select whose text starts with ``starts_with``."""
    select = page.locator(f"{css} select")
    select.locator("option", has_text=starts_with).first.wait_for(state="attached")
    labels = select.locator("option").all_text_contents()
    select.select_option(label=next(lb for lb in labels if lb.startswith(starts_with)))


def wait_state(page, scope: str, state: str) -> None:
    page.locator(f'{scope} .attrib-tokens[data-state="{state}"]').wait_for()


def tab(page, title: str) -> None:
    page.locator(".bk-tab", has_text=title).first.click()


def heatmap_tooltip(page, plot_css: str) -> dict[str, str]:
    """Move the mouse over the plot until a heatmap tooltip shows; return its ``data-tt`` fields."""
    box = page.locator(f"{plot_css} .bk-Canvas").first.bounding_box()
    assert box, f"no {plot_css} on the page"
    tip = page.locator("[data-tt=value]:visible")
    for fx, fy in ((0.35, 0.65), (0.3, 0.5), (0.45, 0.75), (0.25, 0.8), (0.5, 0.6), (0.4, 0.45)):
        page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy, steps=3)
        try:
            tip.first.wait_for(state="visible", timeout=1500)
        except Exception:  # noqa: BLE001 - not over a cell: try the next point
            continue
        fields = {}
        for name in ("source", "target", "i", "j", "value", "left", "right"):
            loc = page.locator(f"[data-tt={name}]:visible")
            if loc.count():
                fields[name] = loc.first.inner_text().strip()
        return fields
    raise AssertionError(f"no tooltip appeared over {plot_css}")


def tooltip_value(text: str) -> float:
    return float("nan") if text == "undefined" else float(text)


# ------------------------------------------------------------------ tests
def test_explorer_hover_window_heatmap_and_export(dashboard, dash_store, page):
    reader = AttributionReader(dash_store.uri)
    run = dash_store.runs["a"]
    page.goto(dashboard + "/")
    page.locator(".overview-table .tabulator-row", has_text="run-a").first.click()  # opens the explorer
    page.locator(".explorer-tokens .attrib-tok").first.wait_for()
    page.locator(".explorer-step select").select_option("20")
    pick(page, ".explorer-sample", "s1 ·")
    scope = ".explorer-tokens"
    wait_state(page, scope, f"{run}|20|model|saliency|s1|0|source|overlay")

    a = reader.load(run, 20, "model", "saliency", ["s1"])[0].matrix
    scale = float(np.nanmax(np.abs(a)))
    tol = dash_store.rel_tol
    assert_close(values(page, scope, "a", "source"), source_importance(a), scale * a.shape[1], tol)

    hover(page, scope, "a", "target", 1)  # sources show column 1
    assert_close(values(page, scope, "a", "source"), a[:, 1], scale, tol)
    colours = page.locator(f'{scope} .attrib-tok[data-side="a"][data-role="source"]').evaluate_all(
        "els => els.map(e => getComputedStyle(e).backgroundColor)")
    top = int(np.nanargmax(a[:, 1]))
    assert colours[top] == "rgb(220, 30, 30)"  # the largest value gets the full method colour
    hover(page, scope, "a", "source", 2)  # targets show row 2
    assert_close(values(page, scope, "a", "target"), a[2, :], scale, tol)

    tip = heatmap_tooltip(page, ".explorer-heatmaps")
    i, j = int(tip["i"]), int(tip["j"])
    assert tip["source"] == reader.load_sample(run, 20, "model", "saliency", "s1").source_tokens[i]
    shown = tooltip_value(tip["value"])
    assert (np.isnan(a[i, j]) and np.isnan(shown)) or abs(shown - a[i, j]) <= tol * scale

    page.locator(".explorer-window .noUi-handle").first.focus()
    page.keyboard.press("ArrowRight")  # c = 1
    wait_state(page, scope, f"{run}|20|model|saliency|s1|1|source|overlay")
    hover(page, scope, "a", "target", 0)
    assert_close(values(page, scope, "a", "source"), input_centered_window_sums(a, 1)[:, 0], 3 * scale, tol)

    page.locator(".explorer-methods button", has_text="attention").click()  # two methods: two colours, blended
    wait_state(page, scope, f"{run}|20|model|saliency,attention|s1|1|source|overlay")
    assert page.locator(f"{scope} .attrib-legend-item").count() == 2
    vals = page.locator(f'{scope} .attrib-tok[data-role="source"]').first.get_attribute("data-values")
    assert len(eval(vals.replace("null", "None"))) == 2  # noqa: S307 - a JSON list of numbers

    tab(page, "Export")
    with page.expect_download() as dl:
        page.locator(".export-explorer-csv button").click()
    rows = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text(encoding="utf-8"))))
    w = input_centered_window_sums(a, 1)
    assert len(rows) == w.size
    for r in rows[:6]:
        v = w[int(r["source_index"]), int(r["target_index"])]
        assert (r["value"] == "" and np.isnan(v)) or abs(float(r["value"]) - v) <= 3 * tol * scale


def test_compare_difference_and_token_mismatch(dashboard, dash_store, page):
    reader = AttributionReader(dash_store.uri)
    run = dash_store.runs["a"]
    page.goto(f"{dashboard}/?tab=explorer&run={run}&step=20&sample=s1")
    page.locator(".explorer-tokens .attrib-tok").first.wait_for()
    tab(page, "Compare")
    scope = ".compare-tokens"
    wait_state(page, scope, f"checkpoints|{run}|20|model|{run}|10|model|saliency|s1")
    a1 = reader.load_sample(run, 20, "model", "saliency", "s1").matrix
    a2 = reader.load_sample(run, 10, "model", "saliency", "s1").matrix
    scale = float(max(np.nanmax(np.abs(a1)), np.nanmax(np.abs(a2))))
    tol = dash_store.rel_tol
    hover(page, scope, "a", "target", 0)  # synchronised: both sides and the difference follow
    assert_close(values(page, scope, "a", "source"), a1[:, 0], scale, tol)
    assert_close(values(page, scope, "b", "source"), a2[:, 0], scale, tol)
    assert_close(values(page, scope, "diff", "source"), a1[:, 0] - a2[:, 0], 2 * scale, tol)
    assert page.locator(f'{scope} .attrib-tok[data-side="b"][data-role="target"][data-index="0"]').evaluate(
        "e => e.classList.contains('attrib-active')")

    tip = heatmap_tooltip(page, ".compare-heatmaps")
    i, j = int(tip["i"]), int(tip["j"])
    d = a1[i, j] - a2[i, j]
    shown = tooltip_value(tip["value"])
    assert (np.isnan(d) and np.isnan(shown)) or abs(shown - d) <= 2 * tol * scale
    assert not page.locator(".compare-mismatch").is_visible()

    page.locator(".compare-kind button", has_text="two runs").click()
    pick(page, ".compare-sample", "s2 ·")  # run b generated a different continuation for s2
    other = dash_store.runs["b"]
    page.locator(".compare-mismatch", has_text="different tokens").wait_for()
    page.locator(".compare-mismatch", has_text="Only the common prefix is compared").wait_for()
    assert page.locator(f'{scope} .attrib-tok[data-side="diff"][data-role="target"]').count() == 1
    assert reader.load_sample(other, 30, "model", "saliency", "s2").target_tokens[1:] != \
        reader.load_sample(run, 20, "model", "saliency", "s2").target_tokens[1:]


def test_live_refresh_shows_a_new_step(dashboard, dash_store, page):
    run = dash_store.runs["a"]
    page.goto(f"{dashboard}/?tab=explorer&run={run}")
    page.locator(".explorer-tokens .attrib-tok").first.wait_for()
    assert page.locator(".explorer-step option", has_text="40").count() == 0
    dash_store.log_step("a", 40)  # a training run writes a step while the page is open
    page.locator(".explorer-step option", has_text="40").first.wait_for(state="attached")
    page.locator(".explorer-step select").select_option("40")
    wait_state(page, ".explorer-tokens", f"{run}|40|model|saliency|s0|0|source|overlay")
    tab(page, "Runs")
    row = page.locator(".overview-table .tabulator-row", has_text="run-a").first
    row.locator('.tabulator-cell[tabulator-field="steps"]', has_text="4").wait_for()
    row.locator('.tabulator-cell[tabulator-field="last step"]', has_text="40").wait_for()


def test_new_job_form_runs_a_tiny_model(dashboard, tiny_dir, page):
    """A job from the form runs, its run opens in the explorer; while it finishes the Runs tab is shown, and
    nothing is fetched from outside 127.0.0.1 (the page fixture fails on any such request: issue 9 item 16,
    Panel's stylesheets of a hidden pane came from its CDN)."""
    page.goto(f"{dashboard}/?tab=jobs")
    page.locator(".job-logged option", has_text="checkpoint-30 · run run-a · m-").wait_for(state="attached")
    name = f"browser-job-{os.getpid()}"
    for css, text in ((".job-name input", name), (".job-models textarea", f"tiny={tiny_dir}"),
                      (".job-text textarea", "w1 w2 w3 ||| w4 w5\nw6 w7 ||| w8")):
        field = page.locator(css).first
        field.fill(text)
        field.dispatch_event("change")
    page.locator(".job-submit button").click()
    page.locator(".job-note", has_text="Queued job").wait_for()
    tab(page, "Runs")  # the job finishes while the runs table is shown (the jobs table updates hidden)
    row = page.locator(".overview-table .tabulator-row", has_text=name).first
    row.locator('.tabulator-cell[tabulator-field="status"]', has_text="FINISHED").wait_for(timeout=240_000)
    tab(page, "Evolution")
    page.locator(".evolution-runs").first.click()
    tab(page, "New job")
    done = page.locator('.job-table tr.job-session[data-status="finished"]')
    done.wait_for()
    assert page.locator('.job-table tr.job-session[data-status="failed"]').count() == 0
    run_id = done.get_attribute("data-run")
    tab(page, "Runs")
    row.click()  # the job's run opens in the explorer
    page.locator('.explorer-tokens .attrib-tok[data-role="target"]', has_text="w4").first.wait_for()
    page.locator(".explorer-run select").locator("option", has_text=name).first.wait_for(state="attached")
    page.goto(f"{dashboard}/?tab=jobs")  # a new session lists the job from the store (issue 9 item 20)
    page.locator(f'.job-table tr.job-stored[data-run="{run_id}"][data-status="finished"]', has_text=name).wait_for()
    assert page.locator(".job-table tr.job-session").count() == 0


def test_bad_artifacts_are_explained_and_the_page_stays_usable(dashboard, dash_store, page):
    run = dash_store.runs["corrupt"]
    page.goto(f"{dashboard}/?tab=explorer&run={run}&step=20")
    page.locator(".explorer-error", has_text="saliency.parquet").wait_for()
    page.locator(".explorer-error", has_text="corrupt or incomplete").wait_for()
    page.locator(".explorer-step select").select_option("10")
    wait_state(page, ".explorer-tokens", f"{run}|10|model|saliency|s0|0|source|overlay")
    assert not page.locator(".explorer-error").is_visible()
    page.goto(f"{dashboard}/?tab=explorer&run={'0' * 32}")  # digits only: must stay a string
    page.locator(".explorer-error", has_text="not found").wait_for()
    page.locator(".explorer-error", has_text="0" * 32).wait_for()

    # issue 9 item 19: a deep link to a step, model or sample the run does not have says so
    run = dash_store.runs["b"]
    page.goto(f"{dashboard}/?tab=explorer&run={run}&step=999&model=nomodel&sample=nope")
    wait_state(page, ".explorer-tokens", f"{run}|30|model|saliency|s0|0|source|overlay")
    link = page.locator(".explorer-link .attrib-alert")
    link.filter(has_text="step '999'").wait_for()
    text = link.inner_text()
    assert run[:8] in text and "does not have (its steps: 10, 20, 30); showing step 30" in text, text
    assert "model 'nomodel'" in text and "showing model" in text
    assert "sample 'nope'" in text and "showing sample s0" in text
    page.locator(".explorer-step select").select_option("20")  # the user chooses: the note goes
    wait_state(page, ".explorer-tokens", f"{run}|20|model|saliency|s0|0|source|overlay")
    assert not page.locator(".explorer-link").is_visible()
    page.goto(f"{dashboard}/?tab=explorer&run={run}&step=20&sample=s1")  # everything found: nothing to say
    wait_state(page, ".explorer-tokens", f"{run}|20|model|saliency|s1|0|source|overlay")
    assert not page.locator(".explorer-link").is_visible()


def test_unreachable_tracking_server_is_explained(tmp_path, page, serve_dashboard, port):
    dead = port  # nothing listens there
    with serve_dashboard(f"http://127.0.0.1:{dead}", tmp_path / "server.log", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
                         MLFLOW_HTTP_REQUEST_TIMEOUT="2") as url:
        page.goto(url + "/")
        page.locator(".overview-error", has_text="Cannot reach the tracking server").wait_for()
        tab(page, "Explorer")
        page.locator(".explorer-tokens .attrib-empty").wait_for()
        tab(page, "New job")
        page.locator(".job-submit button").wait_for()


def test_empty_store_is_explained(tmp_path, page, serve_dashboard):
    with serve_dashboard(f"sqlite:///{tmp_path}/empty.db", tmp_path / "server.log") as url:
        page.goto(url + "/")
        page.locator(".overview-note", has_text="No runs with attribution").wait_for()
        tab(page, "Compare")
        page.locator(".compare-error", has_text="No run with attribution").wait_for()


def test_two_sessions_do_not_share_selections(dashboard, dash_store, chromium):
    run = dash_store.runs["b"]
    pages, consoles = [], []
    contexts = [chromium.new_context(), chromium.new_context()]
    try:
        for ctx in contexts:
            pg = ctx.new_page()
            pg.set_default_timeout(TIMEOUT_MS)
            consoles.append(Console(pg))
            pg.goto(f"{dashboard}/?tab=explorer&run={run}&step=10")
            wait_state(pg, ".explorer-tokens", f"{run}|10|model|saliency|s0|0|source|overlay")
            pages.append(pg)
        pick(pages[0], ".explorer-sample", "s3 ·")
        wait_state(pages[0], ".explorer-tokens", f"{run}|10|model|saliency|s3|0|source|overlay")
        pages[1].reload()  # a new session of the second browser still starts from its own URL
        wait_state(pages[1], ".explorer-tokens", f"{run}|10|model|saliency|s0|0|source|overlay")
        assert pages[1].locator(".explorer-sample select").input_value().startswith("s0")
    finally:
        for ctx in contexts:
            ctx.close()
    errors = [e for c in consoles for e in c.errors]
    assert not errors, errors


def test_panel_serve_entry_point(dash_store, tmp_path, page, serve_dashboard, console_script, port):
    app = Path(__file__).resolve().parents[2] / "panel_app" / "app.py"
    cmd = [console_script("panel"), "serve", str(app), "--address", "127.0.0.1", "--port", str(port),
           "--allow-websocket-origin", f"127.0.0.1:{port}", "--args", "--tracking-uri", dash_store.uri]
    with serve_dashboard(dash_store.uri, tmp_path / "panel.log", port=port, cmd=cmd) as url:
        page.goto(f"{url}/app?tab=explorer&run={dash_store.runs['b']}&step=10")
        wait_state(page, ".explorer-tokens", f"{dash_store.runs['b']}|10|model|saliency|s0|0|source|overlay")
        tab(page, "Runs")
        page.locator(".overview-table .tabulator-row", has_text="run-a").first.wait_for()


def test_basic_auth_asks_for_a_password(dash_store, tmp_path, page, serve_dashboard):
    with serve_dashboard(dash_store.uri, tmp_path / "auth.log", "--basic-auth", "s3cret-pass",
                         "--cookie-secret", "x" * 32) as url:
        page.goto(url + "/")
        page.locator("input[type=password]").wait_for()
        assert page.locator(".overview-table").count() == 0
        page.locator("input[name=username]").fill("me")
        page.locator("input[type=password]").fill("s3cret-pass")
        page.locator("input[type=password]").press("Enter")
        page.locator(".overview-table .tabulator-row", has_text="run-a").first.wait_for()

def test_compare_scales_differences_to_the_values_says_which_run_is_a2_and_export_says_what(
        dashboard, dash_store, page):
    run = dash_store.add_twin_run("twin", "twin-run")  # two checkpoints equal up to 1e-7 (relative)
    page.goto(f"{dashboard}/?tab=explorer&run={run}&step=20&sample=s1")
    wait_state(page, ".explorer-tokens", f"{run}|20|model|saliency|s1|0|source|overlay")
    tab(page, "Compare")
    scope = ".compare-tokens"
    wait_state(page, scope, f"checkpoints|{run}|20|model|{run}|10|model|saliency|s1")
    page.locator(".compare-identical .attrib-alert", has_text="identical within storage precision").wait_for()
    sides = page.locator(".compare-sides .attrib-alert").inner_text()
    assert f"A1: run twin-run ({run[:8]}) · step 20 · model model" in sides
    assert f"A2: run twin-run ({run[:8]}) · step 10 · model model (by default another checkpoint" in sides
    hover(page, scope, "a", "target", 0)
    diff = values(page, scope, "diff", "source")
    assert np.nanmax(np.abs(diff)) < 1e-5  # tiny differences ...
    colours = page.locator(f'{scope} .attrib-tok[data-side="diff"][data-role="source"]').evaluate_all(
        "els => els.map(e => getComputedStyle(e).backgroundColor)")
    rgb = [[int(c) for c in col[col.index("(") + 1:-1].split(",")] for col in colours if col.startswith("rgb(")]
    assert rgb and all(min(c) >= 250 for c in rgb), colours  # ... stay white: not saturated

    tab(page, "Export")
    page.locator(".export-compare-what", has_text=f"A2 = run twin-run ({run[:8]}) · step 10").wait_for()
    what = page.locator(".export-explorer-what").inner_text()
    assert f"run twin-run ({run[:8]}) · step 20 · model model · sample s1 · method saliency" in what
    assert "identical within storage precision" in page.locator(".export-compare-what").inner_text()
    with page.expect_download() as dl:
        page.locator(".export-compare-json button").click()
    doc = json.loads(Path(dl.value.path()).read_text(encoding="utf-8"))
    assert doc["A1"] == {"run_id": run, "run": "twin-run", "step": 20, "model": "model"}
    assert doc["A2"]["step"] == 10 and doc["identical_within_storage_precision"] is True
    with page.expect_download() as dl:
        page.locator(".export-compare-html button").click()
    exported = Path(dl.value.path()).read_text(encoding="utf-8")
    meta = exported.split('<table class="attrib-meta">')[1].split("</table>")[0]
    assert f"<th>A2</th><td>run twin-run ({run[:8]}) · step 10 · model model</td>" in meta
    assert "(&#x27;" not in meta and "[" not in meta  # no Python tuples or lists

_MODELS_JS = """(kind) => [...Bokeh.documents.flatMap(d => [...d.all_models])]
                   .filter(m => m.constructor.__name__ === kind)"""


def test_evolution_marker_follows_the_checkpoint_legend_beside_the_curves_changes_show_tokens(
        dashboard, dash_store, page):
    reader = AttributionReader(dash_store.uri)
    run = dash_store.runs["a"]
    page.goto(f"{dashboard}/?tab=explorer&run={run}&step=20&sample=s1")
    wait_state(page, ".explorer-tokens", f"{run}|20|model|saliency|s1|0|source|overlay")
    tab(page, "Evolution")
    page.locator(".evolution-metric-plot .bk-Canvas").first.wait_for()
    page.locator(".evolution-loss-plot .bk-Canvas").first.wait_for()
    markers = f"() => ({_MODELS_JS})('Span').filter(s => s.name === 'step-marker').map(s => [s.location, s.visible])"
    page.wait_for_function(f"() => {{ const m = ({markers})(); return m.length === 2 && "
                           "m.every(([loc, vis]) => loc === 20 && vis); }")
    page.locator(".evolution-checkpoint .noUi-handle").first.focus()
    page.keyboard.press("ArrowRight")  # checkpoint 30: the explorer's step and both markers follow
    page.wait_for_function(f"() => ({markers})().every(([loc, vis]) => loc === 30 && vis)")
    legends = page.evaluate(f"""() => ({_MODELS_JS})('Figure').filter(f => f.name && f.name.startsWith('evolution-'))
                                 .map(f => [f.name, f.right.some(r => r.constructor.__name__ === 'Legend'),
                                            f.center.some(r => r.constructor.__name__ === 'Legend')])""")
    curves = [lg for lg in legends if lg[0] in ("evolution-metrics", "evolution-loss")]
    assert len(curves) == 2 and all(right and not inside for _, right, inside in curves), legends
    tips = page.evaluate(f"() => ({_MODELS_JS})('HoverTool').map(h => JSON.stringify(h.tooltips))")
    assert any("@value_s" in t for t in tips) and not any("0.0000" in t for t in tips), tips  # significant digits

    first = page.locator(".evolution-changes .tabulator-row").first
    first.wait_for()
    sid = first.locator('.tabulator-cell[tabulator-field="sample"]').inner_text().strip()
    tops = first.locator('.tabulator-cell[tabulator-field^="top @ "]')
    assert tops.count() == 2  # from step, to step (the run's first and last)
    for k in range(2):
        step = int(tops.nth(k).get_attribute("tabulator-field").split("@ ")[1])
        cell = tops.nth(k).inner_text().strip()
        pos, _, tok = cell.partition(": ")
        assert tok == reader.load_sample(run, step, "model", "saliency", sid).source_tokens[int(pos)], cell


def test_explorer_per_column_colours_and_each_method_distinguishable(dashboard, dash_store, page):
    reader = AttributionReader(dash_store.uri)
    run = dash_store.runs["a"]
    page.goto(f"{dashboard}/?tab=explorer&run={run}&step=20&sample=s1")
    scope = ".explorer-tokens"
    wait_state(page, scope, f"{run}|20|model|saliency|s1|0|source|overlay")
    page.locator(".explorer-methods button", has_text="attention").click()
    wait_state(page, scope, f"{run}|20|model|saliency,attention|s1|0|source|overlay")
    toks = page.locator(f'{scope} .attrib-tok[data-side="a"][data-role="source"]')
    bars = toks.evaluate_all("""els => els.map(e => [...e.querySelectorAll('.attrib-bar')]
                                 .map(b => [b.dataset.method, b.dataset.t === 'nan' ? null : Number(b.dataset.t)]))""")
    assert all([m for m, _ in tok] == ["saliency", "attention"] for tok in bars), bars
    for k, method in enumerate(("saliency", "attention")):  # each bar: that method's own normalised I(x)
        imp = source_importance(reader.load_sample(run, 20, "model", method, "s1").matrix)
        want = (imp - np.nanmin(imp)) / (np.nanmax(imp) - np.nanmin(imp))
        shown = np.array([np.nan if tok[k][1] is None else tok[k][1] for tok in bars])
        assert_close(shown, want, 1.0, 5e-3)

    shade = """() => { const f = [...Bokeh.documents.flatMap(d => [...d.all_models])]
                        .filter(m => m.constructor.__name__ === 'Figure' && m.name === 'heatmap-0').pop();
                      if (!f) return null;
                      const d = f.renderers[0].data_source.data;
                      return [Array.from(d.j), Array.from(d.shade), Array.from(d.value)]; }"""
    page.locator(".explorer-normalize button", has_text="per column").click()
    page.wait_for_function(f"() => {{ const s = ({shade})(); "
                           "return s && s[1].some((v, k) => Number.isFinite(v) && v !== s[2][k]); }")
    j, sh, val = (np.array(x, dtype=float) for x in page.evaluate(shade))
    a = reader.load_sample(run, 20, "model", "saliency", "s1").matrix
    for col in range(a.shape[1]):  # every column spans the whole colour scale on its own
        got = sh[j == col]
        assert np.nanmax(got) == pytest.approx(1.0) and np.nanmin(got) == pytest.approx(0.0)
        assert np.nanargmax(got) == np.nanargmax(a[:, col])
    wait_state(page, scope, f"{run}|20|model|saliency,attention|s1|0|source|overlay")  # the tokens stay as they were
