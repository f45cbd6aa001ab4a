"""The HF Trainer callback (callbacks/hf.py) against a real MLflow SQLite store."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest

from attrib_mlops.callbacks import AttributionCallback, AttributionMonitor
from attrib_mlops.demo.train import train_keyvalue
from attrib_mlops.errors import InputError
from attrib_mlops.tracking import AttributionReader


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
    # every_n_steps as well: a step that is also saved is attributed once, on save, linked to its checkpoint
    cb = AttributionCallback(probe, methods=["saliency"], on_save=True, every_n_steps=2, tracking_uri=store.uri,
                             run_id=run.info.run_id, spool_dir=store.tmp / "spool")
    model, tok, train, _ = kv
    train_keyvalue(copy.deepcopy(model), tok, train, max_steps=8, batch_size=8, seed=1, logging_steps=4,
                   callbacks=[cb], output_dir=str(store.tmp / "ckpts"), save_steps=4)
    assert cb.logged_steps == [2, 4, 6, 8]
    models = store.client.search_logged_models(experiment_ids=[store.exp])
    by_name = {m.name: m for m in models}
    assert set(by_name) == {"checkpoint-4", "checkpoint-8"}
    assert by_name["checkpoint-4"].tags["attrib_mlops.checkpoint_path"].endswith("checkpoint-4")
    for step in (4, 8):  # the step's metrics are linked to its checkpoint's LoggedModel
        lm = store.client.get_logged_model(by_name[f"checkpoint-{step}"].model_id)
        linked = {(m.key, m.step) for m in lm.metrics}
        assert ("attrib/saliency/mean_probability", step) in linked


def _resumed_trainer(first, callback, restore: bool = False):
    """A new Trainer like ``first`` (same data, collator, output dir) with only ``callback``."""
    from transformers import Trainer

    args = copy.deepcopy(first.args)
    args.restore_callback_states_from_checkpoint = restore
    trainer = Trainer(model=first.model, args=args, train_dataset=first.train_dataset,
                      data_collator=first.data_collator, processing_class=first.processing_class,
                      callbacks=[callback])
    return trainer


@pytest.mark.slow
def test_resume_from_checkpoint_neither_redoes_nor_skips_a_step(kv, store):
    model, tok, train, probe = kv
    run = store.client.create_run(store.exp)
    out = store.tmp / "ckpts"
    kw = dict(methods=["saliency"], every_n_steps=4, on_save=False, at_train_end=False, tracking_uri=store.uri,
              spool_dir=store.tmp / "spool")
    first = AttributionCallback(probe, run_id=run.info.run_id, **kw)
    res = train_keyvalue(copy.deepcopy(model), tok, train, max_steps=8, batch_size=8, seed=1, logging_steps=4,
                         callbacks=[first], output_dir=str(out), save_steps=4, save_only_model=False)
    # the Trainer saved the callback's state (ExportableState) in each checkpoint
    saved = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["stateful_callbacks"]
    mine = saved["AttributionCallback"]
    assert mine["attributes"] == {"logged_steps": [4], "run_id": run.info.run_id}
    assert mine["args"]["every_n_steps"] == 4 and mine["args"]["methods"] == ["saliency"]
    assert [r["id"] for r in mine["args"]["probe"]] == list(probe["id"])
    assert "attrib_mlops" not in saved  # no hand-written entry any more

    # resume from checkpoint-4 with a fresh callback that knows no run: it reads its state at train begin
    again = AttributionCallback(probe, **kw)
    trainer = _resumed_trainer(res["trainer"], again)
    trainer.train(resume_from_checkpoint=str(out / "checkpoint-4"))
    assert again.run_id == run.info.run_id  # same run, not a new one
    assert again.logged_steps == [4, 8]  # step 4 not redone (restored), step 8 not skipped
    assert len(store.client.search_runs([store.exp])) == 1
    assert AttributionReader(store.uri).steps(run.info.run_id) == [4, 8]


@pytest.mark.slow
def test_trainer_restore_rebuilds_the_callback_from_its_state(kv, store):
    model, tok, train, probe = kv
    run = store.client.create_run(store.exp)
    out = store.tmp / "ckpts"
    first = AttributionCallback(probe, methods=["saliency"], every_n_steps=4, on_save=False, at_train_end=False,
                                tracking_uri=store.uri, run_id=run.info.run_id, spool_dir=store.tmp / "spool")
    res = train_keyvalue(copy.deepcopy(model), tok, train, max_steps=4, batch_size=8, seed=1, logging_steps=4,
                         callbacks=[first], output_dir=str(out), save_steps=4, save_only_model=False)
    # restore_callback_states_from_checkpoint: transformers builds type(cb)(**args), then sets the attributes
    placeholder = AttributionCallback(probe[:1], methods=["attention"], on_save=True, tracking_uri=store.uri)
    trainer = _resumed_trainer(res["trainer"], placeholder, restore=True)
    trainer.args.max_steps = 8
    trainer.train(resume_from_checkpoint=str(out / "checkpoint-4"))
    rebuilt = next(c for c in trainer.callback_handler.callbacks if isinstance(c, AttributionCallback))
    assert rebuilt is not placeholder
    assert rebuilt.monitor.methods == ["saliency"] and rebuilt.every_n_steps == 4
    assert rebuilt.monitor.probe.ids == list(probe["id"]) and rebuilt.run_id == run.info.run_id
    assert rebuilt.logged_steps == [4, 8]
    assert AttributionReader(store.uri).steps(run.info.run_id) == [4, 8]


def test_old_checkpoint_state_still_loads(kv, store):
    _, tok, _, probe = kv
    for legacy in ({"logged_steps": [10, 20], "run_id": "r-old"}, json.dumps({"logged_steps": [10, 20],
                                                                            "run_id": "r-old"})):
        cb = AttributionCallback(probe, every_n_steps=5, tracking_uri=store.uri)
        state = SimpleNamespace(global_step=20, is_world_process_zero=True,
                                stateful_callbacks={"attrib_mlops": legacy})
        cb.on_train_begin(None, state, None, processing_class=tok)
        assert cb.logged_steps == [10, 20] and cb.run_id == "r-old"
