"""The explorer's subword-to-word toggle in a real browser, on a tiny BERT classifier's run in SQLite MLflow.

The page's tokens and values are compared with
:func:`attrib_mlops.analysis.words.aggregate_words` on what :class:`AttributionReader` reads from the same store.
"""

from __future__ import annotations


import numpy as np
import pytest

from attrib_mlops import attribute
from attrib_mlops.analysis.words import aggregate_words
from attrib_mlops.demo.tiny_classifier import build_tiny_classifier
from attrib_mlops.tracking import AttributionReader, AttributionWriter

pytestmark = pytest.mark.browser

TEXTS = ["the acting was lackluster", "a splendid plot"]


@pytest.fixture(scope="module")
def clf_store(tmp_path_factory):
    """``(uri, run_id)``: one step of saliency on a classifier whose tokenizer splits words into pieces."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("words-store")
    uri = f"sqlite:///{root}/mlflow.db"
    model, tok = build_tiny_classifier("bert", ["the", "act", "##ing", "was", "lack", "##lus", "##ter", "a",
                                                "splend", "##id", "plot"], hidden=16, layers=1, heads=2)
    results = attribute(model, tok, TEXTS, methods="saliency", sample_ids=["s0", "s1"])
    client = MlflowClient(uri)
    exp = client.create_experiment("words", artifact_location=str(root / "artifacts"))
    run_id = client.create_run(exp, run_name="clf-run").info.run_id
    w = AttributionWriter(client, run_id=run_id, spool_dir=root / "spool")
    w.log_probe_set([{"id": r.sample_id, "prompt": r.prompt, "target": r.target} for r in results])
    w.log_step(0, results, model="clf")
    client.set_terminated(run_id, "FINISHED")
    return uri, run_id


@pytest.fixture(scope="module")
def server(clf_store, tmp_path_factory, chromium, serve_dashboard):
    with serve_dashboard(clf_store[0], tmp_path_factory.mktemp("words-log") / "server.log") as url:
        yield url


def _shown(page) -> tuple[list[str], np.ndarray]:
    toks = page.locator('.explorer-tokens .attrib-tok[data-side="a"][data-role="source"]')
    names = toks.evaluate_all("els => els.map(e => e.dataset.token)")
    vals = toks.evaluate_all("els => els.map(e => e.dataset.value)")
    return names, np.array([float(v) for v in vals])


def test_toggling_words_shows_words_with_the_chosen_aggregation(server, clf_store, chromium):
    uri, run_id = clf_store
    stored = AttributionReader(uri).load_sample(run_id, 0, "clf", "saliency", "s0")
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{server}/?tab=explorer&run={run_id}")
        page.locator(".explorer-tokens .attrib-tok").first.wait_for()
        page.locator('.explorer-tokens .attrib-tokens[data-state$="|overlay"]').wait_for()
        names, vals = _shown(page)
        assert names == stored.source_tokens and "##lus" in names
        for how in ("sum", "max", "mean"):
            page.locator(".explorer-words button", has_text=f"words: {how}").click()
            page.locator(f'.explorer-tokens .attrib-tokens[data-state$="|words:{how}"]').wait_for()
            want = aggregate_words(stored, how)
            names, vals = _shown(page)
            assert names == want.source_tokens == ["[CLS]", "the", "acting", "was", "lackluster", "[SEP]"]
            ref = want.matrix[:, 0] / np.nanmax(np.abs(want.matrix))  # the view normalises to [0, 1] by max |A|
            assert np.allclose(np.abs(vals) / np.nanmax(np.abs(vals)), np.abs(ref), atol=2e-3), (how, vals, ref)
        page.locator(".explorer-words button", has_text="tokens").click()
        page.locator('.explorer-tokens .attrib-tokens[data-state$="|overlay"]').wait_for()
        assert _shown(page)[0] == stored.source_tokens
    finally:
        context.close()
    assert not errors, errors
