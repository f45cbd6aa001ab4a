"""The ``sources=`` option of the monitor and the Trainer callback, against a real MLflow SQLite store."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from attrib_mlops.callbacks import AttributionCallback, AttributionMonitor
from attrib_mlops.callbacks.sources import parse_source_tracking
from attrib_mlops.demo.source_truth import keyvalue_sources
from attrib_mlops.demo.tasks import make_keyvalue_dataset
from attrib_mlops.demo.train import train_keyvalue
from attrib_mlops.errors import InputError, SpecError
from attrib_mlops.sources import attribute_sources
from attrib_mlops.tracking import AttributionReader

ABL = {"n_ablations": 8, "n_holdout": 4, "topk": [1], "n_random": 1, "ablation": "mask"}


def _probe(n: int = 6):
    rows = []
    for row in make_keyvalue_dataset(n, n_pairs=3, seed=99):
        srcs, truth, _ = keyvalue_sources(row)
        rows.append({"id": row["id"], "prompt": row["prompt"], "target": row["target"],
                     "ground_truth": row["ground_truth"], "sources": srcs, "true_sources": [truth]})
    return rows


def test_option_parsing_errors(kv):
    _, tok, _, _ = kv
    assert parse_source_tracking({"methods": ["at2"], "refit_every": 2}).refit_every == 2
    with pytest.raises(SpecError, match="unknown source method"):
        parse_source_tracking({"methods": ["lime"]})
    with pytest.raises(SpecError, match="valid keys: methods"):
        parse_source_tracking({"every": 3})
    with pytest.raises(SpecError, match="n_ablation"):
        AttributionMonitor(_probe(2), tok, ["saliency"], sources={"options": {"n_ablation": 8}})
    with pytest.raises(InputError, match="'at2' needs an estimator"):
        AttributionMonitor(_probe(2), tok, ["saliency"], sources={"methods": ["at2"]})


def test_monitor_logs_sources_refits_at2_and_faithfulness(kv, store):
    model, tok, _, _ = kv
    probe = _probe()
    run = store.client.create_run(store.exp)
    mon = AttributionMonitor(probe, tok, ["saliency"], tracking_uri=store.uri, run_id=run.info.run_id,
                             spool_dir=store.tmp / "spool", strict=True,
                             sources={"methods": ["ablation", "at2"], "options": ABL, "ablation_every": 2,
                                      "refit_at": [10], "at2_options": {"n_steps": 20, "topk": []},
                                      "faithfulness_every": 2, "faithfulness_options": {"fractions": [0.5]}})
    for step in (10, 20, 30):
        assert mon.log(model, step, checkpoint=str(store.tmp / f"ckpt-{step}"))
    mon.close()
    rid = run.info.run_id
    reader = AttributionReader(store.uri)
    assert reader.kinds(rid) == ["token_matrix", "sources"]
    # ablation ground truth at events 0 and 2 only; AT2 scores at every event (refitted at step 10)
    abl_hist = store.client.get_metric_history(rid, "attrib/sources/ablation/hit_at_1")
    assert sorted(m.step for m in abl_hist) == [10, 30]
    at2_hist = store.client.get_metric_history(rid, "attrib/sources/at2/hit_at_1")
    assert sorted(m.step for m in at2_hist) == [10, 20, 30]
    got = reader.load(rid, 10, "model", "ablation", kind="sources")
    ref = attribute_sources(model, tok, [p["prompt"] for p in probe], [p["target"] for p in probe],
                            [p["sources"] for p in probe], **ABL)
    for g, r, p in zip(got, ref, probe):
        np.testing.assert_allclose(g.scores, r.scores, rtol=1e-6, atol=1e-9)  # the stored ones are the API's
        assert g.info["true_sources"] == p["true_sources"]
    hits = np.mean([r.ranking()[0] == p["true_sources"][0] for r, p in zip(ref, probe)])
    assert abl_hist[0].value == pytest.approx(hits)
    # the estimator: a LoggedModel linked to the step-10 checkpoint, with its held-out quality
    [logged] = mon.sources.estimators
    assert logged.step == 10 and logged.uri.startswith("models:/")
    lm = store.client.get_logged_model(logged.model_id)
    ckpt = {m.name: m.model_id for m in store.client.search_logged_models(experiment_ids=[store.exp])}
    assert lm.tags["attrib_mlops.checkpoint_model_id"] == ckpt["checkpoint-10"]
    assert reader.load(rid, 20, "model", "at2", kind="sources")[0].info["estimator"]["fingerprint"] == \
        mon.sources.estimator.fingerprint()
    # faithfulness: registered token metrics, every 2nd event
    comp = store.client.get_metric_history(rid, "attrib/saliency/comprehensiveness")
    assert sorted(m.step for m in comp) == [10, 30]
    assert not store.client.get_metric_history(rid, "attrib/saliency/comprehensiveness_k50")


@pytest.mark.slow
def test_sources_option_does_not_change_training(kv, store):
    model, tok, train, _ = kv

    def losses(callbacks):
        res = train_keyvalue(copy.deepcopy(model), tok, train, max_steps=8, batch_size=8, lr=3e-3, seed=7,
                             logging_steps=2, callbacks=callbacks)
        return [h["loss"] for h in res["loss_history"]]

    base = losses([])
    run = store.client.create_run(store.exp)
    cb = AttributionCallback(_probe(4), methods=["saliency"], every_n_steps=4, on_save=False, tracking_uri=store.uri,
                             run_id=run.info.run_id, spool_dir=store.tmp / "spool", strict=True,
                             sources={"methods": ["ablation", "attention"], "options": ABL,
                                      "faithfulness_every": 1, "faithfulness_options": {"fractions": [0.5]}})
    assert len(base) == 4 and losses([cb]) == base  # identical losses: same RNG streams, same model state
    hist = store.client.get_metric_history(run.info.run_id, "attrib/sources/attention/top_share")
    assert sorted(m.step for m in hist) == [4, 8]
