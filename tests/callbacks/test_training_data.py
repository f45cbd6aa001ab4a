"""The training-data index built by the Trainer callback at each save (callbacks/training_data*.py).

A tiny GPT-2 is trained a few steps with the HF Trainer, saving twice, once
plain and once with ``AttributionCallback(..., training_data=...)`` logging
into a real SQLite MLflow store. Losses, weights, RNG streams and train mode
are the same; the run's index answers queries exactly as an index built
afterwards from the same checkpoints does.
"""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from attrib_mlops.callbacks import AttributionCallback, TrainingIndexMonitor
from attrib_mlops.callbacks.training_data import select_subset
from attrib_mlops.demo.train import train_keyvalue
from attrib_mlops.errors import AttribError, InputError


class _Recorder(TrainerCallback):
    """Runs after the callbacks under test: RNG streams and train mode at each save."""

    def __init__(self):
        self.saves = []

    def on_save(self, args, state, control, model=None, **kwargs):
        self.saves.append((state.global_step, torch.get_rng_state(), np.random.get_state()[1].copy(),
                           random.getstate(), model.training))


def _train(kv, out, callbacks):
    model, tok, train, _ = kv
    m = copy.deepcopy(model)
    res = train_keyvalue(m, tok, train.select(range(32)), max_steps=4, batch_size=8, lr=3e-3, seed=3,
                         logging_steps=1, save_steps=2, output_dir=str(out), callbacks=callbacks, num_threads=1)
    return m, [h["loss"] for h in res["loss_history"]]


@pytest.mark.slow
def test_index_at_each_save_leaves_training_unchanged_and_matches_a_later_build(kv, store):
    import attrib_mlops

    _, tok, train, probe = kv
    rec_plain, rec_cb = _Recorder(), _Recorder()
    plain_model, plain = _train(kv, store.tmp / "plain", [rec_plain])
    run = store.client.create_run(store.exp)
    td = {"dataset": train.select(range(32)), "subset": 20, "projection_dim": 64}
    cb = AttributionCallback(probe, methods=["saliency"], on_save=True, at_train_end=False, tracking_uri=store.uri,
                             run_id=run.info.run_id, spool_dir=store.tmp / "spool", training_data=td)
    cb_model, with_cb = _train(kv, store.tmp / "cb", [cb, rec_cb])

    assert len(plain) == 4 and with_cb == plain
    for (n, p), (_, q) in zip(plain_model.named_parameters(), cb_model.named_parameters()):
        assert torch.equal(p, q), n
    assert [s[0] for s in rec_cb.saves] == [2, 4]
    for a, b in zip(rec_plain.saves, rec_cb.saves):
        assert torch.equal(a[1], b[1]) and np.array_equal(a[2], b[2]) and a[3] == b[3] and a[4] == b[4]
    assert cb.training_index.monitor.failures == []

    run_id = run.info.run_id
    tags = store.client.get_run(run_id).data.tags
    assert tags["attrib_mlops.training_index"] == "training_index" and tags["attrib_mlops.training_index.dim"] == "64"
    lrs = store.client.get_metric_history(run_id, "attrib/tda/learning_rate")
    assert sorted(m.step for m in lrs) == [2, 4] and all(m.value > 0 for m in lrs)

    from attrib_mlops.tracking.training_index import load_training_index

    logged = load_training_index(run_id, tracking_uri=store.uri)
    assert [c["step"] for c in logged.checkpoints] == [2, 4] and logged.n_examples == 20
    assert logged.learning_rates == pytest.approx([m.value for m in sorted(lrs, key=lambda m: m.step)])

    records = select_subset(td["dataset"], 20)
    assert logged.ids == [r["id"] for r in records]
    # learning_rates=None: read from trainer_state.json, as the callback did
    later = attrib_mlops.build_training_index([str(store.tmp / "cb" / f"checkpoint-{s}") for s in (2, 4)], tok,
                                              records, None, projection_dim=64,
                                              out_dir=str(store.tmp / "later"), show_progress=False)
    row = probe[0]
    for method in ("tracin", "grad_cos"):
        a = attrib_mlops.attribute_training_data(run_id, None, tok, row["prompt"], row["target"], method=method,
                                                 tracking_uri=store.uri)
        b = attrib_mlops.attribute_training_data(later, None, tok, row["prompt"], row["target"], method=method)
        assert np.asarray(a.scores).shape == (20,) and np.abs(a.scores).max() > 0
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6, atol=1e-9)
        assert [it["id"] for it in a.top(5)["positive"]] == [it["id"] for it in b.top(5)["positive"]]


def test_config_errors_are_clear(kv):
    _, tok, train, _ = kv
    with pytest.raises(InputError, match="subset=500"):
        TrainingIndexMonitor({"dataset": train.select(range(10)), "subset": 500}, tok)
    with pytest.raises(InputError, match="not in the dataset"):
        TrainingIndexMonitor({"dataset": ["a b", "c d"], "subset": ["zz"]}, tok)
    with pytest.raises(AttribError, match="projection_dimm"):
        TrainingIndexMonitor({"dataset": ["a b"], "index": {"projection_dimm": 3}}, tok)
    with pytest.raises(InputError, match="set by the callback"):
        TrainingIndexMonitor({"dataset": ["a b"], "index": {"out_dir": "x"}}, tok)


def test_subset_keeps_original_ids():
    rows = select_subset(["t0", "t1", "t2", "t3", "t4"], 3, seed=1)
    assert len(rows) == 3 and all(r["text"] == f"t{r['id']}" for r in rows)
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), key=int)
    assert select_subset([{"id": "x", "text": "a"}, {"text": "b"}], ["1"]) == [{"text": "b", "id": "1"}]


def test_plain_loop_monitor_survives_a_failure(tiny, tmp_path):
    model, tok = tiny
    mon = TrainingIndexMonitor({"dataset": ["w1 w2", "w3 w4"]}, tok)
    assert mon.index_checkpoint(model, tmp_path / "missing", step=1, learning_rate=0.1) is None
    assert mon.failures and "missing" in mon.failures[0][1]
    strict = TrainingIndexMonitor({"dataset": ["w1 w2"]}, tok, strict=True)
    with pytest.raises(Exception, match="not a folder"):
        strict.index_checkpoint(model, tmp_path / "missing", step=1, learning_rate=0.1)


def test_plain_loop_monitor_indexes_and_logs_each_checkpoint(tiny, store):
    from attrib_mlops.demo.tiny import save_tiny
    from attrib_mlops.tracking.training_index import load_training_index

    model, tok = tiny
    run_id = store.client.create_run(store.exp).info.run_id
    mon = TrainingIndexMonitor({"dataset": ["w1 w2 w3", "w4 w5", "w6 w7 w8"], "projection_dim": 16}, tok,
                               run_id=run_id, tracking_uri=store.uri, strict=True)
    was = model.training
    for step, lr in ((3, 0.5), (6, 0.25)):
        save_tiny(model, tok, store.tmp / f"checkpoint-{step}")
        mon.index_checkpoint(model, store.tmp / f"checkpoint-{step}", step, lr)
    assert model.training == was and all(p.grad is None for p in model.parameters())
    idx = load_training_index(run_id, tracking_uri=store.uri)
    assert [c["step"] for c in idx.checkpoints] == [3, 6] and idx.learning_rates == [0.5, 0.25]
    assert idx.ids == ["0", "1", "2"] and mon.state_dict()["indexed_steps"] == [3, 6]
    assert mon.index_checkpoint(model, store.tmp / "checkpoint-6", 6, 0.25) is mon.index  # a step is indexed once


def test_the_hf_callback_cannot_be_rebuilt_without_its_dataset():
    from attrib_mlops.callbacks import TrainingIndexCallback

    with pytest.raises(InputError, match="restore_callback_states_from_checkpoint=False"):
        TrainingIndexCallback(**TrainingIndexCallback(["w1 w2"]).state()["args"])


def test_a_run_the_monitor_creates_is_ended_by_close(tiny, store):
    from attrib_mlops.demo.tiny import save_tiny

    model, tok = tiny
    mon = TrainingIndexMonitor({"dataset": ["w1 w2 w3"], "projection_dim": 8}, tok, tracking_uri=store.uri,
                               experiment_name="cb", strict=True)
    save_tiny(model, tok, store.tmp / "checkpoint-1")
    mon.index_checkpoint(model, store.tmp / "checkpoint-1", 1, 0.1)
    assert store.client.get_run(mon.run_id).info.status == "RUNNING"
    mon.close()
    run = store.client.get_run(mon.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["attrib_mlops.training_index.checkpoints"] == "1"
