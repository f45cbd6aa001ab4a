"""Indexing inside a Trainer callback at each save leaves training exactly as it was.

A template for the callback the lead wires in attrib_mlops/callbacks: on every
``on_save`` the new checkpoint is appended to one index with the live model as
template and the optimizer's learning rate; losses, RNG and train mode are
unchanged.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow


def _train(tmp_path, name, callbacks):
    from attrib_mlops.demo.tasks import keyvalue_vocab, make_keyvalue_dataset
    from attrib_mlops.demo.tiny import build_tiny_model
    from attrib_mlops.demo.train import train_keyvalue

    model, tok = build_tiny_model(keyvalue_vocab(), n_layer=1, n_embd=32, n_head=2, n_positions=32, seed=0)
    data = make_keyvalue_dataset(64, seed=0)
    out = train_keyvalue(model, tok, data, max_steps=30, batch_size=8, lr=3e-3, output_dir=str(tmp_path / name),
                         save_steps=10, logging_steps=1, callbacks=callbacks, num_threads=1)
    return model, tok, data, out


def test_indexing_at_each_save_does_not_change_training(tmp_path):
    from transformers import TrainerCallback

    from attrib_mlops.training_data import TrainingIndex, build_training_index

    calls = []

    class IndexOnSave(TrainerCallback):
        def __init__(self):
            self.tok, self.data = None, None

        def on_save(self, args, state, control, model=None, optimizer=None, **kwargs):
            folder = f"{args.output_dir}/checkpoint-{state.global_step}"
            lr = optimizer.param_groups[0]["lr"]
            rng = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
            build_training_index([folder], self.tok, self.data, [lr], model=model, out_dir=str(tmp_path / "index"),
                                 show_progress=False)
            assert torch.equal(rng[0], torch.get_rng_state()) and random.getstate() == rng[2]
            assert np.array_equal(rng[1], np.random.get_state()[1])
            assert model.training
            calls.append((state.global_step, lr))

    plain = _train(tmp_path, "plain", [])
    cb = IndexOnSave()
    from attrib_mlops.demo.tasks import make_keyvalue_dataset
    from attrib_mlops.demo.tiny import build_word_tokenizer
    from attrib_mlops.demo.tasks import keyvalue_vocab

    cb.tok, cb.data = build_word_tokenizer(keyvalue_vocab()), make_keyvalue_dataset(64, seed=0)
    with_cb = _train(tmp_path, "indexed", [cb])
    assert [h["loss"] for h in with_cb[3]["loss_history"]] == [h["loss"] for h in plain[3]["loss_history"]]
    for (n, p), (_, q) in zip(plain[0].named_parameters(), with_cb[0].named_parameters()):
        assert torch.equal(p, q), n
    assert [s for s, _ in calls] == [10, 20, 30]
    index = TrainingIndex(tmp_path / "index")
    assert [c["step"] for c in index.checkpoints] == [10, 20, 30]
    assert index.learning_rates == pytest.approx([lr for _, lr in calls])
    assert index.n_examples == 64
