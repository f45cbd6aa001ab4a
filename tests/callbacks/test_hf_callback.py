"""The HF Trainer callback and the plain-loop monitor against a real MLflow SQLite store."""

from __future__ import annotations

import copy
import logging
from types import SimpleNamespace

import numpy as np
import pytest

from attrib_mlops.callbacks import AttributionCallback, AttributionMonitor
from attrib_mlops.demo.tasks import keyvalue_vocab, make_keyvalue_dataset
from attrib_mlops.demo.tiny import build_tiny_model
from attrib_mlops.demo.train import train_keyvalue
from attrib_mlops.errors import InputError
from attrib_mlops.tracking import AttributionReader


@pytest.fixture()
def store(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("cb", artifact_location=str(tmp_path / "artifacts"))
    return SimpleNamespace(uri=uri, client=client, exp=exp, tmp=tmp_path)


@pytest.fixture(scope="module")
def kv():
    model, tok = build_tiny_model(keyvalue_vocab(), n_layer=1, n_embd=32, n_head=2, n_positions=64, seed=0)
    train = make_keyvalue_dataset(24 * 8, n_pairs=3, seed=0)
    probe = make_keyvalue_dataset(3, n_pairs=3, seed=99)
    return model, tok, train, probe


def _train(kv, callbacks=(), steps=24, out=None):
    model, tok, train, _ = kv
    m = copy.deepcopy(model)
    res = train_keyvalue(m, tok, train, max_steps=steps, batch_size=8, lr=3e-3, seed=7, logging_steps=4,
                         callbacks=callbacks, output_dir=out)
    return [h["loss"] for h in res["loss_history"]], res


@pytest.mark.slow
def test_callback_does_not_change_training(kv, store):
    _, tok, _, probe = kv
    base, _ = _train(kv)
    run = store.client.create_run(store.exp)
    cb = AttributionCallback(
        probe, methods=["saliency", "attention"], every_n_steps=8, on_save=False, tracking_uri=store.uri,
        run_id=run.info.run_id, spool_dir=store.tmp / "spool",
    )
    with_cb, _ = _train(kv, callbacks=[cb])
    assert len(base) == 6 and with_cb == base  # identical losses at every logged step
    assert cb.logged_steps == [8, 16, 24]
    reader = AttributionReader(store.uri)
    assert reader.steps(run.info.run_id) == [8, 16, 24]
    res = reader.load(run.info.run_id, 16, method="saliency")
    assert [r.sample_id for r in res] == list(probe["id"])
    hist = store.client.get_metric_history(run.info.run_id, "attrib/saliency/mean_probability")
    assert sorted(m.step for m in hist) == [8, 16, 24]
    cost = store.client.get_metric_history(run.info.run_id, "attrib/cost_seconds")
    assert len(cost) == 3 and all(m.value > 0 for m in cost)


@pytest.mark.slow
def test_callback_reuses_mlflow_callback_run(kv, store, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "cb")
    mlflow.set_tracking_uri(store.uri)
    try:
        _, tok, _, probe = kv
        cb = AttributionCallback(probe, methods=["saliency"], every_n_steps=12, on_save=False,
                                 spool_dir=store.tmp / "spool")
        model, tok, train, _ = kv
        train_keyvalue(copy.deepcopy(model), tok, train, max_steps=12, batch_size=8, seed=1, logging_steps=4,
                       callbacks=[cb], report_to="mlflow")
        runs = store.client.search_runs([store.exp])
        assert len(runs) == 1, "the callback must log into the run MLflowCallback opened, not a second one"
        assert runs[0].info.run_id == cb.run_id
        assert "train_loss" in runs[0].data.metrics or "loss" in runs[0].data.metrics
        assert "attrib/saliency/mean_probability" in runs[0].data.metrics
    finally:
        if mlflow.active_run():
            mlflow.end_run()


def test_rank_nonzero_does_nothing(kv, store):
    model, tok, _, probe = kv
    run = store.client.create_run(store.exp)
    cb = AttributionCallback(probe, every_n_steps=1, tracking_uri=store.uri, run_id=run.info.run_id,
                             spool_dir=store.tmp / "spool")
    state = SimpleNamespace(global_step=1, is_world_process_zero=False, stateful_callbacks={})
    cb.on_step_end(None, state, None, model=model, processing_class=tok)
    cb.on_train_end(None, state, None, model=model, processing_class=tok)
    assert cb.logged_steps == []
    from attrib_mlops.tracking import TrackingError

    with pytest.raises(TrackingError, match="no attribution manifest"):
        AttributionReader(store.uri).steps(run.info.run_id)


def test_failures_are_logged_and_skipped_unless_strict(kv, store, caplog):
    model, tok, _, probe = kv
    run = store.client.create_run(store.exp)
    mon = AttributionMonitor(probe, tok, ["saliency"], tracking_uri=store.uri, run_id=run.info.run_id,
                             spool_dir=store.tmp / "spool", options={"max_new_tokens": 2})
    with caplog.at_level(logging.ERROR, logger="attrib_mlops.callbacks"):
        assert mon.log(object(), 5) is False  # not a model: attribution fails
    assert "step 5 failed and was skipped" in caplog.text
    assert mon.failures and mon.failures[0][0] == 5
    strict = AttributionMonitor(probe, tok, ["saliency"], tracking_uri=store.uri, run_id=run.info.run_id,
                                spool_dir=store.tmp / "spool", strict=True)
    with pytest.raises(Exception):
        strict.log(object(), 6)


def test_monitor_plain_loop_and_resume(kv, store):
    model, tok, _, probe = kv
    run = store.client.create_run(store.exp)
    mon = AttributionMonitor(probe, tok, ["saliency"], tracking_uri=store.uri, run_id=run.info.run_id,
                             spool_dir=store.tmp / "spool")
    assert mon.log(model, 10) is True
    assert mon.log(model, 10) is False  # already logged
    state = mon.state_dict()
    mon2 = AttributionMonitor(probe, tok, ["saliency"], tracking_uri=store.uri, spool_dir=store.tmp / "spool")
    mon2.load_state_dict(state)
    assert mon2.run_id == run.info.run_id
    assert mon2.log(model, 10) is False and mon2.log(model, 20) is True
    mon2.close()
    assert AttributionReader(store.uri).steps(run.info.run_id) == [10, 20]
    a = AttributionReader(store.uri).load(run.info.run_id, 10, method="saliency")
    b = AttributionReader(store.uri).load(run.info.run_id, 20, method="saliency")
    for x, y in zip(a, b):  # same model at both steps -> same matrices (float16 storage)
        np.testing.assert_allclose(x.matrix, y.matrix, rtol=1e-3, atol=1e-6)


def test_constructor_checks(kv):
    _, tok, _, probe = kv
    with pytest.raises(InputError, match="never run"):
        AttributionCallback(probe, on_save=False, at_train_end=False)
    with pytest.raises(InputError, match="every_n_steps"):
        AttributionCallback(probe, every_n_steps=0)
    with pytest.raises(Exception, match="valid methods"):
        AttributionCallback(probe, methods=["salience"])
    with pytest.raises(InputError, match="empty"):
        AttributionMonitor([], tok)


@pytest.mark.slow
def test_on_save_links_metrics_to_logged_model(kv, store):
    _, tok, _, probe = kv
    run = store.client.create_run(store.exp)
    cb = AttributionCallback(probe, methods=["saliency"], on_save=True, tracking_uri=store.uri,
                             run_id=run.info.run_id, spool_dir=store.tmp / "spool")
    model, tok, train, _ = kv
    train_keyvalue(copy.deepcopy(model), tok, train, max_steps=8, batch_size=8, seed=1, logging_steps=4,
                   callbacks=[cb], output_dir=str(store.tmp / "ckpts"), save_steps=4)
    assert cb.logged_steps == [4, 8]
    models = store.client.search_logged_models(experiment_ids=[store.exp])
    by_name = {m.name: m for m in models}
    assert set(by_name) == {"checkpoint-4", "checkpoint-8"}
    assert by_name["checkpoint-4"].tags["attrib_mlops.checkpoint_path"].endswith("checkpoint-4")
    for step in (4, 8):  # the step's metrics are linked to its checkpoint's LoggedModel
        lm = store.client.get_logged_model(by_name[f"checkpoint-{step}"].model_id)
        linked = {(m.key, m.step) for m in lm.metrics}
        assert ("attrib/saliency/mean_probability", step) in linked
