"""The Training data view (panel_app/views/training_data.py) in a real Chromium against a real SQLite store.

A tiny GPT-2 checkpoint, an index over 20 training examples (one carries script payloads)
logged to a run, to a run without attribution steps, and a run without an index. Runs with an
index are listed first and prefill the model with the index's checkpoint. The view's top examples equal a direct
``attribute_training_data`` call, the payload stays text, selecting an output token re-queries
with it, the side-by-side shows the word diff, and the run without an index says how to build one.
"""

from __future__ import annotations


import numpy as np
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EVIL = "<img src=x onerror=__pw.tda> <script>__pw.tda</script> w3"
TRAIN = [{"id": f"t{i}", "text": f"w{i % 9 + 1} w{(3 * i) % 11 + 1} w{i % 5 + 20}"} for i in range(19)]
TRAIN.append({"id": "evil", "text": EVIL})
PROBE = [{"id": "q1", "prompt": "w1 w2 w3", "target": " w4 w3"}]
INIT_JS = "window.__pwned = []; window.__pw = new Proxy({}, {get: (_t, k) => { window.__pwned.push(String(k)); return 1; }});"


@pytest.fixture(scope="module")
def tda_store(tmp_path_factory, tiny_dir):
    import attrib_mlops
    from mlflow.tracking import MlflowClient

    from attrib_mlops.result import AttributionResult
    from attrib_mlops.tracking import AttributionWriter
    from attrib_mlops.tracking.training_index import log_training_index

    root = tmp_path_factory.mktemp("tda-dash")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("tda-dash", artifact_location=str(root / "art"))
    runs = {}
    for label in ("plain", "indexed"):
        run = client.create_run(exp, run_name=f"run-{label}").info.run_id
        w = AttributionWriter(client, run_id=run, spool_dir=root / "spool")
        w.log_probe_set(PROBE)
        w.log_step(1, [AttributionResult(np.ones((4, 1), np.float32), ["w1", "w2", "w3", "w4"], ["w4"], "saliency",
                                         "native", n_prompt=3, sample_id="q1", prompt="w1 w2 w3", target=" w4")])
        client.set_terminated(run, "FINISHED")
        runs[label] = run
    index = attrib_mlops.build_training_index([str(tiny_dir)], None, TRAIN, 0.1, projection_dim=64,
                                              out_dir=str(root / "index"), show_progress=False)
    log_training_index(index, runs["indexed"], client=client)
    runs["trained"] = client.create_run(exp, run_name="run-trained").info.run_id  # an index, no attribution steps
    log_training_index(index, runs["trained"], client=client)
    return {"uri": uri, "runs": runs, "index": index, "root": root}


@pytest.fixture(scope="module")
def tda_dashboard(tda_store, chromium, serve_dashboard):
    with serve_dashboard(tda_store["uri"], tda_store["root"] / "server.log") as url:
        yield url


def _fill(page, css, text):
    field = page.locator(f"{css} input").first
    field.fill(text)
    field.dispatch_event("change")


def _rows(page, scope):
    return page.locator(f"{scope} .tda-row").evaluate_all(
        "els => els.map(e => [e.dataset.side, e.dataset.id, parseFloat(e.dataset.score)])")


def _direct(tda_store, tiny_dir, target, tokens=None, k=20):
    import attrib_mlops

    res = attrib_mlops.attribute_training_data(tda_store["index"], str(tiny_dir), None, PROBE[0]["prompt"], target,
                                               target_tokens=tokens, method="tracin", top_k=k)
    top = res.top(k)
    return res, [(side, it["id"], it["score"]) for side in ("positive", "negative") for it in top[side]]


def _check(shown, want):
    assert [(s, i) for s, i, _ in shown] == [(s, i) for s, i, _ in want]
    np.testing.assert_allclose([x for *_, x in shown], [x for *_, x in want], rtol=1e-5, atol=1e-9)


def test_training_data_view(tda_dashboard, tda_store, tiny_dir, chromium):
    context = chromium.new_context(viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    page.add_init_script(INIT_JS)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (errors.append(f"dialog {d.message}"), d.dismiss()))
    page.set_default_timeout(30_000)
    try:
        page.goto(f"{tda_dashboard}/?tab=training_data")
        from playwright.sync_api import expect

        run_select = page.locator(".tda-run select")
        run_select.locator("option", has_text="run-indexed").first.wait_for(state="attached")
        # runs with an index first (newest first), also one without attribution steps; then the others
        options = run_select.locator("option").all_text_contents()
        assert [o.split(" · ")[0] for o in options] == ["run-trained", "run-indexed", "run-plain"]
        assert options[0].endswith("index of 20 examples") and "index" not in options[2]
        # the model is prefilled from the run: the index's last checkpoint (no typing needed)
        expect(page.locator(".tda-model input").first).to_have_value(str(tiny_dir))
        run_select.select_option(label=options[1])
        page.locator(".tda-sample select option", has_text="q1").first.wait_for(state="attached")
        expect(page.locator(".tda-model input").first).to_have_value(str(tiny_dir))
        _fill(page, ".tda-topk", "20")  # every example with a score other than 0 is listed
        _fill(page, ".tda-user", " w4 w9")  # side by side with the probe's target, in the same job
        page.locator(".tda-go button").click()
        page.locator(".tda-main .tda-row").first.wait_for(timeout=240_000)
        res, want = _direct(tda_store, tiny_dir, PROBE[0]["target"])
        _check(_rows(page, ".tda-main"), want)
        page.locator(".tda-hist .bk-Figure, .tda-hist canvas").first.wait_for()  # drawn after the rows
        # the payload example is listed as text, never run
        assert "evil" in [i for _, i, _ in want]
        shown = page.locator('.tda-main .tda-row[data-id="evil"] .tda-text').inner_text()
        assert "<script>__pw.tda</script>" in shown and "onerror=__pw.tda>" in shown
        assert page.locator('.tda-main .tda-row[data-id="evil"] .tda-text mark', has_text="w3").count() == 1
        # side by side: word diff, the user's continuation attributed on its own
        page.locator(".tda-side .tda-diff del", has_text="w3").wait_for()
        assert page.locator(".tda-side .tda-diff ins").inner_text() == "w9"
        _check(_rows(page, ".tda-usr"), _direct(tda_store, tiny_dir, " w4 w9")[1])

        # select the first output token: the view queries again with target_tokens=[0]
        _fill(page, ".tda-user", "")
        page.locator(".tda-tokens button").first.click()
        page.locator(".tda-go button").click()
        page.locator(".tda-query", has_text="tokens: w4)").wait_for(timeout=240_000)
        _check(_rows(page, ".tda-main"), _direct(tda_store, tiny_dir, PROBE[0]["target"], [0])[1])

        # a run without an index: the error says how to build one
        plain = next(t for t in run_select.locator("option").all_text_contents() if t.startswith("run-plain"))
        run_select.select_option(label=plain)
        page.locator(".tda-go button").click()
        alert = page.locator(".tda-error", has_text="has no training-data index")
        alert.wait_for(timeout=240_000)
        assert "attrib-mlops tda index --run" in page.locator(".tda-error .attrib-alert").inner_text()
        assert page.evaluate("window.__pwned") == [] and errors == []
    finally:
        context.close()

