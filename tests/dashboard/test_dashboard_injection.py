"""Script injection: every string from a user, a URL, the tracking store or a model is shown as text.

A real SQLite MLflow store is written with script payloads in every field a user or a training
script controls (experiment, run, model, method and job names, sample ids, prompts, tokens, tags,
the New job form, URL parameters). A real Chromium visits every view of ``attrib-mlops dashboard``
(and the standalone HTML export) and the test fails on any dialog, any payload that ran
(``window.__pwned``), any injected element (an attribute carrying the payload, ``img[src=x]``,
``<script>`` with the payload) and any request to the payloads' outside host.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

TIMEOUT_MS = 30_000
EVIL_HOST = "198.51.100.7"  # TEST-NET-2: a markdown image pointing there must never be requested


def payload(field: str) -> str:
    """Every kind of markup that would run or load something if rendered as HTML / Markdown / TeX.

    ``field`` is a word: ``__pw.<field>`` records which field's payload ran (quotes-free, so the
    tags are also valid inline HTML for Markdown renderers).
    """
    return (f'{field} <img src=x onerror=__pw.{field}> "><svg onload=__pw.{field}> '
            f'<img src="x" onerror="__pw.{field}"> <script>__pw.{field}</script> '
            f"![m](http://{EVIL_HOST}/{field}.png) $$\\alpha_{field}$$")


def token_payloads(field: str) -> list[str]:
    return [f"<img src=x onerror=__pw.{field}>", f"<script>__pw.{field}</script>", f'"><svg onload=__pw.{field}>',
            f"![m](http://{EVIL_HOST}/{field}.png)", "$$x^2$$", "=cmd|' /C calc'!A0", "'quote", "w1"]


# short: model and method names end up in MLflow metric names (at most 250 characters)
METHOD = "<img src=x onerror=__pw.method>"
MODEL = '"><svg onload=__pw.model>'


def _result(sid: str, method: str, seed: int):
    import numpy as np

    from attrib_mlops.result import AttributionResult, future_mask

    prompt = token_payloads("tok")
    target = ["<img src=x onerror=__pw.tgt>", "w2"]
    src = prompt + target
    rng = np.random.default_rng(seed)
    m = rng.random((len(src), len(target))).astype(np.float32)
    m[future_mask(len(src), len(target), len(prompt))] = np.nan
    return AttributionResult(m, src, target, method, "native", info={"synthetic": True}, n_prompt=len(prompt),
                             prompt=payload("prompt"), target=payload("target"), sample_id=sid,
                             step_scores={"probability": rng.random(len(target)).astype(np.float32)})


SAMPLE_IDS = (payload("sample"), "plain-sample")


def _sources(sid: str, seed: int):
    """A source attribution whose prompt, sources, target and tokens are payloads (with masks: spans refit)."""
    import numpy as np

    from attrib_mlops.sources.result import AblationData, SourceAttribution

    texts = [payload("source_a"), "plain source .", "<script>__pw.source_b</script>"]
    prompt = " ".join(texts)
    spans, pos = [], 0
    for t in texts:
        a = prompt.index(t, pos)
        spans.append((a, a + len(t)))
        pos = a + len(t)
    rng = np.random.default_rng(seed)
    ab = AblationData(rng.random((12, 3)) > 0.5, rng.normal(size=(12, 3)), rng.random((4, 3)) > 0.5,
                      rng.normal(size=(4, 3)), rng.normal(size=3))
    return SourceAttribution(texts, spans, rng.normal(size=3), payload("source_target"), "ablation", prompt=prompt,
                             target_tokens=token_payloads("source_tok")[:3], sample_id=sid, ablation=ab,
                             info={"ablation": payload("source_mode"), "quality": {"lds": 0.5}, "n_forwards": 16})


def _log_sources_and_estimators(client, rid: str, w, uri: str) -> None:
    """Run one also holds source attributions (steps 10, 20) and AT2 estimators with payload provenance."""
    import numpy as np

    from attrib_mlops.sources.at2.estimator import SourceEstimator
    from attrib_mlops.tracking.estimators import log_estimator

    for step in (10, 20):
        w.log_step(step, [_sources(sid, step + k) for k, sid in enumerate(SAMPLE_IDS)], model=MODEL)
        est = SourceEstimator(np.random.default_rng(step).random((2, 3)), {"model_type": payload("arch")},
                              {"kind": "at2", "base_model": payload("base_model"), "n_examples": 4,
                               "quality": {"lds": 0.4, "lds_attention": 0.1}})
        log_estimator(est, run_id=rid, tracking_uri=uri, step=step)


def _tda_results():
    import numpy as np

    from attrib_mlops.training_data.result import TrainingDataAttribution

    ids = [payload(f"example_{j}") for j in range(3)] + ["plain-example"]
    texts = [payload(f"train_text_{j}") + " w2" for j in range(4)]
    return [TrainingDataAttribution(np.array([2.0, -1.0, 0.5, -0.25], np.float32), ids, texts, "tracin",
                                    payload("tda_prompt"), payload("tda_target"),
                                    ["<img src=x onerror=__pw.tdatok>", "w2"], [0, 1], None, {}, 4, sid)
            for sid in SAMPLE_IDS]


def build_evil_store(root: Path) -> dict:
    """Two runs in two experiments, every name and text a payload; two steps, two models, two methods."""
    from mlflow.tracking import MlflowClient

    from attrib_mlops.tracking import AttributionWriter

    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    runs = {}
    for k, label in enumerate(("one", "two")):
        exp = client.create_experiment(payload(f"experiment_{label}"), artifact_location=str(root / f"art-{label}"))
        run = client.create_run(exp, run_name=payload(f"run_{label}"),
                                tags={"evil.tag": payload("tag"), "attrib_mlops.error": payload("tag_error"),
                                      "attrib_mlops.kind": "job"})  # listed in the jobs table too
        rid = run.info.run_id
        w = AttributionWriter(client, run_id=rid, spool_dir=root / "spool")
        w.log_probe_set([{"id": sid, "prompt": payload("probe_prompt"), "target": payload("probe_target")}
                         for sid in SAMPLE_IDS])
        # run one: steps 10 and 20, two models at step 20 (compare two models); run two: step 10
        for step, models in (((10, (MODEL,)), (20, (MODEL, "other"))) if k == 0 else ((10, (MODEL,)),)):
            for mi, model in enumerate(models):
                results = [_result(sid, meth, 100 * step + 10 * mi + j + k)
                           for j, meth in enumerate(("saliency", METHOD)) for sid in SAMPLE_IDS]
                w.log_step(step, results, model=model)
            client.log_metric(rid, "loss", 1.0 / step, step=step)
        if k == 0:
            _log_sources_and_estimators(client, rid, w, uri)
        if k == 0:  # training-data results (the Training data view): example ids and texts are payloads too
            w.log_step(20, _tda_results(), model=MODEL)
        client.set_terminated(rid, "FINISHED")
        runs[label] = rid
    return {"uri": uri, "runs": runs}


# ------------------------------------------------------------------ server, page, detection
@pytest.fixture(scope="module")
def evil(tmp_path_factory, chromium, serve_dashboard):
    root = tmp_path_factory.mktemp("evil-store")
    store = build_evil_store(root)
    with serve_dashboard(store["uri"], root / "server.log") as url:
        yield dict(store, url=url, root=root)


#: Runs before any page script: records what a payload would do.
INIT_JS = """
window.__pwned = [];
window.__pw = new Proxy({}, {get: (_t, k) => { window.__pwned.push(String(k)); return 1; }});
"""

#: Every injected element, across Panel's shadow roots.
SCAN_JS = """
() => {
  const found = [];
  const visit = (root) => {
    for (const el of root.querySelectorAll('*')) {
      const tag = el.tagName.toLowerCase();
      for (const a of el.getAttributeNames()) {
        const v = el.getAttribute(a) || '';
        const active = /^on/i.test(a) || (/^(src|href|srcdoc|action|formaction|data|xlink:href)$/i.test(a)
                                          && (v.includes('__pw') || /^\s*javascript:/i.test(v)));
        if (active) found.push(`${tag}[${a}="${v.slice(0, 80)}"]`);
      }
      if (tag === 'img' && /(^|\\/)x$/.test(el.getAttribute('src') || '')) found.push('img[src=x]');
      if (tag === 'img' && (el.getAttribute('src') || '').includes('198.51.100')) found.push('img[src=evil host]');
      // an injected <script>__pw.x</script> (data scripts that merely carry the text as JSON are fine)
      if (tag === 'script' && /^\s*__pw\./.test(el.textContent || '')) found.push('script with the payload');
      if (el.shadowRoot) visit(el.shadowRoot);
    }
  };
  visit(document);
  return found;
}
"""


class Watch:
    """Dialogs, payload calls, injected elements, outside requests and console errors of one page."""

    def __init__(self, page):
        self.page = page
        self.dialogs: list[str] = []
        self.outside: list[str] = []
        self.errors: list[str] = []
        page.add_init_script(INIT_JS)
        page.on("dialog", self._dialog)
        page.on("request", self._request)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error"
                else None)

    def _dialog(self, d) -> None:
        self.dialogs.append(f"{d.type}: {d.message}")
        d.dismiss()

    def _request(self, r) -> None:
        host = urllib.parse.urlsplit(r.url).hostname or ""
        if EVIL_HOST in r.url or (r.url.startswith(("http:", "https:")) and host not in ("127.0.0.1", "localhost")):
            self.outside.append(r.url)

    def check(self, where: str) -> None:
        pwned = self.page.evaluate("() => window.__pwned || []")
        found = self.page.evaluate(SCAN_JS)
        problems = {"dialogs": self.dialogs, "payloads that ran": pwned, "injected elements": found,
                    "requests leaving 127.0.0.1": self.outside}
        assert not any(problems.values()), f"{where}: {problems}"


@pytest.fixture
def watched(chromium):
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    w = Watch(pg)
    yield w
    errors = list(w.errors)
    context.close()
    assert not errors, "browser console errors:\n" + "\n".join(errors)


def tab(page, title: str) -> None:
    page.locator(".bk-tab", has_text=title).first.click()


def sweep(page, css: str) -> list[str]:
    """Move the mouse across every Bokeh canvas under ``css``; return the texts of the tooltips that showed."""
    seen = []
    for k in range(page.locator(f"{css} .bk-Canvas").count()):
        box = page.locator(f"{css} .bk-Canvas").nth(k).bounding_box()
        if not box:
            continue
        for fx, fy in ((0.45, 0.55), (0.6, 0.75), (0.75, 0.9), (0.3, 0.4), (0.6, 0.55), (0.45, 0.85)):
            page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy, steps=2)
            tip = page.locator(".bk-tooltip-content:visible")
            try:
                tip.first.wait_for(timeout=300)
            except Exception:  # noqa: BLE001 - not over a glyph: next point
                continue
            seen += tip.all_inner_texts()
    return seen


def hover_tokens(page, css: str) -> None:
    toks = page.locator(f"{css} .attrib-tok")
    for k in range(min(toks.count(), 12)):
        toks.nth(k).hover()


# ------------------------------------------------------------------ tests
def test_training_data_view_shows_stored_payloads_as_text(evil, watched):
    page = watched.page
    page.goto(f"{evil['url']}/?tab=training_data")
    run_select = page.locator(".tda-run select")
    run_select.locator("option", has_text="run_one").first.wait_for(state="attached")
    label = next(t for t in run_select.locator("option").all_text_contents() if "run_one" in t)
    run_select.select_option(label=label)
    page.locator(".tda-stored select option").first.wait_for(state="attached")
    page.locator(".tda-show-stored button").click()
    rows = page.locator(".tda-main .tda-row")
    rows.first.wait_for()
    assert rows.count() == 4
    shown = page.locator(".tda-main").inner_text()
    assert "<script>__pw.train_text_0</script>" in shown and "onerror=__pw.example_1>" in shown  # as text
    assert page.locator(".tda-query", has_text="__pw.tda_prompt").count() == 1
    sweep(page, ".tda-hist")
    for k in range(page.locator(".tda-tokens button").count()):
        page.locator(".tda-tokens button").nth(k).click()
    page.wait_for_timeout(500)
    watched.check("Training data")


def test_reflected_url_values_are_text(evil, watched):
    page = watched.page
    bad = '<img src=x onerror=__pw.url> "><svg onload=__pw.url2>'  
    one = evil["runs"]["one"]
    for query, ready in (({"tab": "explorer", "run": bad}, ".explorer-error"),
                         ({"tab": "explorer", "run": "<img src=x onerror=alert(20)>"}, ".explorer-error"),
                         ({"tab": "explorer", "run": one, "sample": bad}, ".explorer-tokens .attrib-tok"),
                         ({"tab": "explorer", "run": one, "model": bad, "step": "10"}, ".explorer-tokens .attrib-tok"),
                         ({"tab": "compare", "run": bad}, ".compare-tokens .attrib-tokens"),
                         ({"tab": "evolution", "run": bad}, ".evolution-runs")):
        page.goto(f"{evil['url']}/?{urllib.parse.urlencode(query)}")
        page.locator(ready).first.wait_for()
        page.wait_for_timeout(500)
        watched.check(f"URL {query}")
    page.goto(f"{evil['url']}/?tab=explorer&run={urllib.parse.quote(bad)}")
    err = page.locator(".explorer-error .attrib-alert", has_text="__pw.url")
    err.first.wait_for()
    assert "<img src=x" in err.first.inner_text()  # shown as the text it is
    watched.check("reflected run id")


def test_stored_names_tokens_and_texts_are_text_in_every_view(evil, watched):
    page = watched.page
    one, two = evil["runs"]["one"], evil["runs"]["two"]
    page.goto(evil["url"] + "/")
    page.locator(".overview-table .tabulator-row", has_text="run_one").first.wait_for()
    page.locator(".overview-table .tabulator-row", has_text="<img src=x").first.wait_for()  # names shown as text
    watched.check("Runs")

    page.goto(f"{evil['url']}/?tab=explorer&run={one}&step=10")
    page.locator(".explorer-tokens .attrib-tok").first.wait_for()
    page.locator(".explorer-tokens .attrib-tok", has_text="<img src=x").first.wait_for()
    page.locator(".explorer-methods button").last.click()  # the payload-named method too
    page.locator(".explorer-tokens .attrib-legend-item").nth(1).wait_for()
    hover_tokens(page, ".explorer-tokens")
    tips = sweep(page, ".explorer-heatmaps")
    assert any("<img src=x" in t or "<script>" in t or "<svg" in t for t in tips), tips  # tokens shown as text
    for css in (".explorer-run", ".explorer-model", ".explorer-sample"):
        opts = page.locator(f"{css} option").all_text_contents()
        assert any("<" in o for o in opts), (css, opts)  # the payload is listed as text
    page.locator(".explorer-model select").select_option(index=0)
    page.locator(".explorer-sample select").select_option(index=0)
    page.locator(".explorer-check button").click()
    page.wait_for_timeout(800)
    watched.check("Explorer")

    tab(page, "Compare")
    page.locator(".compare-tokens .attrib-tok").first.wait_for()
    hover_tokens(page, ".compare-tokens")
    sweep(page, ".compare-heatmaps")
    for kind in ("two models", "two runs"):
        page.locator(".compare-kind button", has_text=kind).click()
        page.wait_for_timeout(800)
        page.locator(".compare-tokens .attrib-tok").first.wait_for()
        sweep(page, ".compare-heatmaps")
    watched.check("Compare")

    tab(page, "Evolution")
    page.locator(".evolution-metric-plot .bk-Canvas").first.wait_for()
    picker = page.locator(".evolution-runs").first
    picker.click()  # opens the run picker's choice list
    page.keyboard.type("run")
    page.wait_for_timeout(500)
    page.keyboard.press("Enter")  # adds the other payload-named run
    page.keyboard.press("Escape")
    page.wait_for_timeout(1000)
    sweep(page, ".evolution-metric-plot")
    sweep(page, ".evolution-heatmap")
    page.locator(".evolution-changes .tabulator-row").first.wait_for()
    watched.check("Evolution")

    tab(page, "Sources")  # prompts, sources, target tokens, model and run names of the sources kind
    page.locator(".sources-prompt .attrib-src", has_text="<img src=x").first.wait_for()
    page.locator(".sources-prompt .attrib-src", has_text="<script>__pw.source_b").first.wait_for()
    page.locator(".sources-span-start select").select_option(index=1)  # a refit span
    page.locator('.sources-prompt .attrib-sources[data-state$="|1|3"]').wait_for()
    page.locator(".sources-compare-table tr[data-index]").first.wait_for()
    sweep(page, ".sources-bars")
    page.locator(".sources-sample select").select_option(index=1)
    page.locator(".sources-prompt .attrib-src-tgt", has_text="<img src=x").first.wait_for()
    watched.check("Sources")
    tab(page, "AT2")
    page.locator(".at2-heatmap-left .bk-Canvas").first.wait_for()
    sweep(page, ".at2-heatmaps")
    assert any("<svg" in o for o in page.locator(".at2-left option").all_text_contents())  # run name as text
    watched.check("AT2")

    tab(page, "Export")
    for css in (".export-explorer-html", ".export-compare-html", ".export-explorer-csv", ".export-compare-json"):
        with page.expect_download() as dl:
            page.locator(f"{css} button").click()
        path = evil["root"] / f"download-{css[1:]}.{css.rsplit('-', 1)[-1]}"
        dl.value.save_as(path)
        if css.endswith("html"):
            exported = page.context.new_page()
            ew = Watch(exported)
            exported.goto(path.as_uri())
            exported.locator(".attrib-tok").first.wait_for()
            hover_tokens(exported, "#attrib-root")
            sweep(exported, ".attrib-figs")
            ew.check(f"export {css}")
            assert not ew.errors, ew.errors
            exported.close()
        elif css.endswith("csv"):
            import csv
            import io

            rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
            cells = [c for r in rows for c in r]
            assert not any(c[:1] in ("=", "+", "@") for c in cells), "CSV formula injection"
    watched.check("Export")
    assert two  # the second run is reached through the compare and evolution pickers


def test_new_job_names_and_errors_are_text(evil, tiny_dir, watched):
    page = watched.page
    page.goto(f"{evil['url']}/?tab=jobs")
    page.locator(".job-submit button").wait_for()
    stored = page.locator(".job-table tr.job-stored", has_text="run_one")  # jobs from the store: names as text
    stored.wait_for()
    assert "run_one <img src=x onerror=__pw.run_one>" in stored.inner_text()
    assert "tag_error <img src=x onerror=__pw.tag_error>" in stored.inner_text()
    watched.check("Jobs from the store")

    def fill(css: str, text: str) -> None:
        field = page.locator(css).first
        field.fill(text)
        field.dispatch_event("change")

    fill(".job-models textarea", f"<img src=x onerror=__pw.form>\n{payload('ref')}")
    fill(".job-text textarea", "w1 w2 ||| w3")
    page.locator(".job-submit button").click()
    page.locator(".job-error", has_text="not queued").wait_for()
    watched.check("New job error")

    name = payload("job")
    fill(".job-name input", name)
    fill(".job-experiment input", payload("job_experiment"))
    fill(".job-models textarea", f"<b>jobmodel</b><script>__pw.jobmodel</script> $$x$$={tiny_dir}")
    fill(".job-text textarea", f"w1 {payload('jobprompt')} ||| w4 w5")
    page.locator(".job-submit button").click()
    page.locator(".job-note", has_text="Queued job").wait_for()
    watched.check("Queued job note")
    page.locator('.job-table tr.job-session[data-status="finished"], .job-table tr.job-session[data-status="failed"]'
                 ).first.wait_for(timeout=240_000)
    watched.check("Jobs table")
    tab(page, "Runs")
    page.locator(".overview-table .tabulator-row", has_text="job <img").first.wait_for()
    watched.check("Runs after the job")
    tab(page, "Evolution")
    page.locator(".evolution-runs").first.click()
    page.wait_for_timeout(800)
    watched.check("Evolution picker after the job")
    tab(page, "New job")
    page.locator(".job-source button", has_text="probe set").click()
    page.wait_for_timeout(500)
    watched.check("New job probe-set picker")

    fill(".job-models textarea", "runs:/<svg onload=__pw.runref>/model")
    page.locator(".job-submit button").click()
    page.locator(".job-error", has_text="runref").wait_for()
    watched.check("New job bad run reference")
    # item 4: a reference that walks out of its run is refused in the form, with the reason
    fill(".job-models textarea", f"m=runs:/{evil['runs']['one']}/../../..")
    page.locator(".job-submit button").click()
    page.locator(".job-error", has_text="'..' segment").wait_for()

