"""The Sources and AT2 views in a real browser, on source attributions of a tiny model in a real SQLite store.

One server for the module. The store holds, for a tiny GPT-2 built locally: run ``src-a`` (steps 10
and 20, the model perturbed in between; ablation and at2 results; an AT2 estimator logged at each
step) and run ``src-b`` (another model, step 10, ablation only, no probe set logged). Prompts, one
source and a run name carry script payloads. The tests compare what the page shows with what
:class:`AttributionReader` reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # trains two tiny AT2 estimators

TIMEOUT_MS = 30_000
EVIL = "<img src=x onerror=__pw.src>"
RUN_A = 'src-a "><svg onload=__pw.run>'
PROMPTS = [f"w1 w2 . w3 w4 . {EVIL} . w7 w8 .", "w5 w1 . <script>__pw.prompt</script> . w3 w9 ."]
SOURCES = [["w1 w2 .", "w3 w4 .", f"{EVIL} .", "w7 w8 ."], ["w5 w1 .", "<script>__pw.prompt</script> .", "w3 w9 ."]]
TARGETS = [" w2 w4 w8", " w1 w9 w3"]
TRAIN = [" ".join(f"w{(3 * k + j) % 10} w{(5 * k + j) % 10} ." for j in range(4)) for k in range(6)]
PROBE = [{"id": f"s{i}", "prompt": p, "target": t} for i, (p, t) in enumerate(zip(PROMPTS, TARGETS))]
INIT_JS = """
window.__pwned = [];
window.__pw = new Proxy({}, {get: (_t, k) => { window.__pwned.push(String(k)); return 1; }});
"""


def _model(seed: int):
    import torch

    from attrib_mlops.demo.tiny import build_tiny_model

    torch.manual_seed(seed)
    return build_tiny_model([f"w{i}" for i in range(10)] + ["."], n_layer=2, n_embd=32, n_head=2)


def _results(model, tok, estimator=None):
    """Ablation results of the probe, and AT2 results when an estimator is given."""
    from attrib_mlops import attribute_sources

    ids = [p["id"] for p in PROBE]
    out = attribute_sources(model, tok, PROMPTS, targets=TARGETS, sources=SOURCES, n_ablations=16, n_holdout=8,
                            ablation="mask", lasso_alpha=1e-4, sample_ids=ids)
    if estimator is not None:
        out += attribute_sources(model, tok, PROMPTS, targets=TARGETS, sources=SOURCES, method="at2",
                                 estimator=estimator, sample_ids=ids)
    return out


def build_sources_store(root: Path) -> dict:
    import torch
    from mlflow.tracking import MlflowClient

    from attrib_mlops import train_source_estimator
    from attrib_mlops.tracking import AttributionWriter
    from attrib_mlops.tracking.estimators import log_estimator

    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("sources-tests", artifact_location=str(root / "artifacts"))
    runs = {}
    for label, name, seed, steps in (("a", RUN_A, 0, (10, 20)), ("b", "src-b", 1, (10,))):
        rid = client.create_run(exp, run_name=name).info.run_id
        runs[label] = rid
        w = AttributionWriter(client, run_id=rid, spool_dir=root / "spool")
        if label == "a":  # run b logs no probe set: the view takes the sample ids from its results
            w.log_probe_set(PROBE)
        model, tok = _model(seed)
        for step in steps:
            if step == 20:  # "training": the model moves between the checkpoints
                with torch.no_grad():
                    for p in model.parameters():
                        p.add_(0.5 * torch.randn_like(p))
            est = None
            if label == "a":  # an AT2 estimator per checkpoint of run a (run b: ablation only)
                est = train_source_estimator(model, tok, TRAIN, targets=[" w1"] * len(TRAIN), sources="sentence",
                                             n_ablations=8, n_holdout=4, n_steps=20, seed=step)
                log_estimator(est, run_id=rid, tracking_uri=uri, step=step)
            w.log_step(step, _results(model, tok, est), model="model")
        client.set_terminated(rid, "FINISHED")
    return {"uri": uri, "runs": runs}


@pytest.fixture(scope="module")
def src_store(tmp_path_factory, chromium, serve_dashboard):
    root = tmp_path_factory.mktemp("sources-store")
    store = build_sources_store(root)
    with serve_dashboard(store["uri"], root / "server.log", refresh="0") as url:
        yield dict(store, url=url)


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.add_init_script(INIT_JS)
    errors, dialogs = [], []
    pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    pg.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    yield pg
    pwned = pg.evaluate("() => window.__pwned || []")
    injected = pg.evaluate("""() => { const out = []; const visit = (r) => { for (const el of r.querySelectorAll('*')) {
        if (el.tagName === 'IMG' && (el.getAttribute('src') || '') === 'x') out.push('img[src=x]');
        for (const a of el.getAttributeNames()) if (/^on/i.test(a)) out.push(el.tagName + '[' + a + ']');
        if (el.shadowRoot) visit(el.shadowRoot); } }; visit(document); return out; }""")
    context.close()
    assert not (errors or dialogs or pwned or injected), (errors, dialogs, pwned, injected)


# ------------------------------------------------------------------ helpers
def pick(page, css: str, starts_with: str) -> None:
    select = page.locator(f"{css} select")
    select.locator("option", has_text=starts_with).first.wait_for(state="attached")
    labels = select.locator("option").all_text_contents()
    select.select_option(label=next(lb for lb in labels if lb.startswith(starts_with)))


def shown(page, css: str, attr: str = "score") -> dict[int, float]:
    raw = page.locator(css).evaluate_all(f"els => els.map(e => [e.dataset.index, e.dataset.{attr}])")
    return {int(i): float(v) for i, v in raw}


def close(a: dict[int, float], b: np.ndarray) -> None:
    assert sorted(a) == list(range(len(b))), (a, b)
    got = np.array([a[i] for i in range(len(b))])
    np.testing.assert_allclose(got, b, rtol=1e-5, atol=1e-9 + 1e-5 * float(np.max(np.abs(b))))


def rgba(text: str) -> tuple[float, ...]:
    inner = text[text.index("(") + 1: text.index(")")]
    vals = [float(x) for x in inner.split(",")]
    return tuple(vals) if len(vals) == 4 else (*vals, 1.0)


def tab(page, title: str) -> None:
    page.locator(".bk-tab", has_text=title).first.click()


def state(page, *parts) -> None:
    page.locator(f'.attrib-sources[data-state="{"|".join(str(p) for p in parts)}"]').wait_for()


# ------------------------------------------------------------------ tests
def test_sources_view_scores_span_and_compare(src_store, page):
    from attrib_mlops.tracking import AttributionReader
    from panel_app.sources_data import score_colour, score_scale

    reader = AttributionReader(src_store["uri"])
    run, other = src_store["runs"]["a"], src_store["runs"]["b"]
    page.goto(src_store["url"] + "/?tab=sources")
    page.locator(".attrib-sources .attrib-src").first.wait_for()
    pick(page, ".sources-run", "src-a")
    page.locator(".sources-step select").select_option("20")
    state(page, run, 20, "model", "ablation", "s0", 0, 3)

    stored = reader.load_sample(run, 20, "model", "ablation", "s0", kind="sources")
    close(shown(page, ".sources-prompt .attrib-src"), stored.scores)
    close(shown(page, ".sources-scores tr[data-index]"), stored.scores)
    colours = page.locator(".sources-prompt .attrib-src").evaluate_all(
        "els => els.map(e => [+e.dataset.index, getComputedStyle(e).backgroundColor])")
    scale = score_scale(stored.scores)
    for i, css in colours:
        want = rgba(score_colour(float(stored.scores[i]), scale))
        got = rgba(css)
        if want[3] == 0:
            assert got[3] == 0, (i, css)
        else:
            assert got[:3] == want[:3] and abs(got[3] - want[3]) < 0.01, (i, css, want)
    page.locator(".sources-prompt .attrib-src", has_text="<img src=x").wait_for()  # the payload is text
    page.locator(".sources-quality tr[data-name='LDS (held-out)']", has_text=f"{stored.quality['lds']:.4g}"[:5]
                 ).wait_for()

    pick(page, ".sources-span-start", "1:")  # target tokens 1..2: a refit on the stored masks
    state(page, run, 20, "model", "ablation", "s0", 1, 3)
    close(shown(page, ".sources-prompt .attrib-src"), stored.for_target_tokens(1, 3).scores)
    assert page.locator('.attrib-src-tgt[data-selected="1"]').count() == 2
    pick(page, ".sources-span-end", "1:")
    state(page, run, 20, "model", "ablation", "s0", 1, 2)
    span = stored.for_target_tokens(1, 2)
    close(shown(page, ".sources-prompt .attrib-src"), span.scores)

    # compare: the same sample and span at step 10 (B), the top source changing or not
    a10 = reader.load_sample(run, 10, "model", "ablation", "s0", kind="sources").for_target_tokens(1, 2)
    table = ".sources-compare-table tr[data-index]"
    page.locator(f'.sources-compare-table table[data-state="{run}|20|model|ablation|s0|1|2|{run}|10"]').wait_for()
    close(shown(page, table, "a"), span.scores)
    close(shown(page, table, "b"), a10.scores)
    changed = span.ranking()[0] != a10.ranking()[0]
    assert page.locator(".sources-compare-table table").get_attribute("data-changed") == str(int(changed))
    page.locator(".sources-top-change", has_text="Top source changed" if changed else "Top source unchanged"
                 ).wait_for()
    assert page.locator(".sources-bars .bk-Canvas").count() == 1
    for step, r in ((10, a10), (20, span)):  # the top source of this span at every checkpoint
        page.locator(f'.sources-over-steps tr[data-step="{step}"][data-top="{r.ranking()[0]}"]').wait_for()

    page.locator(".sources-compare-kind button", has_text="another run").click()
    page.locator(f'.sources-compare-table table[data-state="{run}|20|model|ablation|s0|1|2|{other}|10"]').wait_for()
    page.locator(".sources-top-change", has_text="of run src-b").wait_for()
    b10 = reader.load_sample(other, 10, "model", "ablation", "s0", kind="sources").for_target_tokens(1, 2)
    close(shown(page, table, "b"), b10.scores)

    pick(page, ".sources-method", "at2")  # at2: one forward; a span is the mean of its per-token scores
    at2 = reader.load_sample(run, 20, "model", "at2", "s0", kind="sources")
    state(page, run, 20, "model", "at2", "s0", 1, 2)
    token_scores = np.array(at2.info["token_scores"], dtype=float)
    close(shown(page, ".sources-prompt .attrib-src"), token_scores[:, 1:2].mean(axis=1))
    pick(page, ".sources-sample", "s1")
    state(page, run, 20, "model", "at2", "s1", 1, 2)
    page.locator(".sources-prompt .attrib-src", has_text="<script>__pw.prompt</script>").wait_for()
    page.locator(".sources-run option", has_text=RUN_A[:12]).first.wait_for(state="attached")


def test_at2_view_shows_the_estimators_weights_and_naive_attention(src_store, page):
    from attrib_mlops.tracking import AttributionReader

    reader = AttributionReader(src_store["uri"])
    entries = {e["step"]: e for e in reader.estimators(src_store["runs"]["a"])}
    page.goto(src_store["url"] + "/?tab=at2")
    page.locator(".at2-heatmap-left .bk-Canvas").first.wait_for()
    page.locator(".at2-left select option", has_text="step 10").first.wait_for(state="attached")
    assert "step 10" in page.locator(".at2-left select option:checked").inner_text()
    assert "step 20" in page.locator(".at2-right select option:checked").inner_text()
    for css, step in ((".at2-heatmap-left", 10), (".at2-heatmap-right", 20)):
        est = reader.load_estimator(entries[step]["uri"])
        box = page.locator(f"{css} .bk-Canvas").first.bounding_box()
        seen = set()
        for fx, fy in ((0.3, 0.45), (0.55, 0.45), (0.3, 0.75), (0.55, 0.75)):
            page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy, steps=3)
            tip = page.locator("[data-tt=layer]:visible")
            try:
                tip.first.wait_for(timeout=1500)
            except Exception:  # noqa: BLE001 - not over a cell: the next point
                continue
            layer, head = int(tip.first.inner_text()), int(page.locator("[data-tt=head]:visible").first.inner_text())
            value = float(page.locator("[data-tt=value]:visible").first.inner_text())
            assert value == pytest.approx(float(est.weights[layer, head]), rel=1e-5), (css, layer, head)
            seen.add((layer, head))
        assert seen, f"no tooltip over {css}"
        col = "at2-a" if step == 10 else "at2-b"
        cell = page.locator(f'.at2-quality tr[data-measure="LDS (held-out)"] td[data-col="{col}"]')
        assert float(cell.inner_text()) == pytest.approx(est.quality["lds"], rel=1e-5)
        att = page.locator(f'.at2-quality tr[data-measure="LDS (held-out)"] '
                           f'td[data-col="attention-{col[-1]}"]').inner_text()
        assert float(att) == pytest.approx(est.quality["lds_attention"], rel=1e-5)  # naive attention beside it
    assert page.locator(".at2-heatmap-uniform .bk-Canvas").count() == 1
    rows = page.locator(".at2-over-steps tr[data-step]").evaluate_all(
        "els => els.map(e => [+e.dataset.step, +e.dataset.lds, +e.dataset.ldsAttention])")
    assert [r[0] for r in rows] == [10, 20]  # every checkpoint's estimator of the run
    for step, lds, lds_att in rows:
        q = reader.load_estimator(entries[step]["uri"]).quality
        assert lds == pytest.approx(q["lds"], rel=1e-5) and lds_att == pytest.approx(q["lds_attention"], rel=1e-5)


def test_a_sources_only_run_lists_no_token_steps(src_store):
    """Explorer and Compare read the token kind only: a run holding only sources has no step there (no crash)."""
    from panel_app.source_store import SourceStore
    from panel_app.store import DashboardStore

    store = DashboardStore(src_store["uri"])
    try:
        run = src_store["runs"]["a"]
        got = store.contents(run)
        assert got.ok and got.value.steps == () and "Sources tab" in got.note
        src = SourceStore(store).contents(run)
        assert src.ok and src.value.steps == (10, 20)
        assert src.value.methods(20, "model") == ["ablation", "at2"] and src.value.sample_ids() == ["s0", "s1"]
        no_probe = SourceStore(store).contents(src_store["runs"]["b"])  # sample ids read from its results
        assert no_probe.ok and no_probe.value.sample_ids() == ["s0", "s1"]
        assert no_probe.value.samples[0]["prompt"] == PROMPTS[0]
    finally:
        store.close()
