"""Checkpoints: expansion, learning rates from trainer_state.json, safetensors only, weight binding."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from attrib_mlops.training_data.checkpoints import (
    bind_weights,
    expand_checkpoints,
    learning_rate_of,
    read_weights,
    resolve_checkpoint,
    step_of,
)
from attrib_mlops.training_data.errors import CheckpointError, MissingLearningRateError


def test_folder_of_checkpoints_expands_by_step(ckpt_root, ckpts, tmp_path):
    assert expand_checkpoints(str(ckpt_root)) == ckpts
    assert expand_checkpoints(ckpts[1]) == [ckpts[1]]
    with pytest.raises(CheckpointError, match="no checkpoints"):
        expand_checkpoints([])
    with pytest.raises(CheckpointError, match="is not a folder"):
        resolve_checkpoint(tmp_path / "missing")


def test_learning_rates_from_trainer_state(ckpts, ckpt_lrs, tmp_path):
    from pathlib import Path

    lr, src = learning_rate_of(Path(ckpts[1]), prev_step=10)
    assert lr == pytest.approx(ckpt_lrs[1]) and "mean of 2" in src
    lr0, _ = learning_rate_of(Path(ckpts[0]), prev_step=None)
    assert lr0 == pytest.approx(ckpt_lrs[0])
    # no value logged after the previous checkpoint: the last one before it
    lr_last, src = learning_rate_of(Path(ckpts[1]), prev_step=20)
    assert lr_last == pytest.approx(0.04) and "logged at step 20" in src
    assert step_of(Path(ckpts[1])) == 20
    bare = tmp_path / "checkpoint-7"
    shutil.copytree(ckpts[0], bare)
    (bare / "trainer_state.json").unlink()
    assert step_of(bare) == 7
    with pytest.raises(MissingLearningRateError, match="pass learning_rates="):
        learning_rate_of(bare, None)
    (bare / "trainer_state.json").write_text(json.dumps({"global_step": 7, "log_history": [{"loss": 1, "step": 5}]}))
    with pytest.raises(MissingLearningRateError, match="logs none"):
        learning_rate_of(bare, None)


def test_only_safetensors_are_read(ckpts, tmp_path):
    state, partial = read_weights(__import__("pathlib").Path(ckpts[0]))
    assert "transformer.wte.weight" in state and not partial
    d = tmp_path / "pickled"
    d.mkdir()
    (d / "pytorch_model.bin").write_bytes(b"\x80\x02")
    with pytest.raises(CheckpointError, match="pickled .bin"):
        read_weights(d)


def test_bind_weights_fills_tied_names_and_refuses_foreign_checkpoints(tiny, ckpts):
    from pathlib import Path

    from attrib_mlops.demo.tiny import build_tiny_model

    model, _ = tiny
    state, partial = read_weights(Path(ckpts[0]))
    w = bind_weights(model, state, required=["lm_head.weight"], partial=partial)
    assert torch.equal(w["lm_head.weight"], state["transformer.wte.weight"])
    assert not torch.equal(w["lm_head.weight"], model.lm_head.weight)  # the checkpoint's, not the model's
    other, _ = build_tiny_model([f"w{i}" for i in range(40)], n_layer=2, n_embd=16, n_head=2)
    with pytest.raises(CheckpointError, match="another model"):
        bind_weights(other, state, required=["lm_head.weight"])
    deeper, _ = build_tiny_model([f"w{i}" for i in range(40)], n_layer=3, n_embd=32, n_head=4, n_positions=64)
    with pytest.raises(CheckpointError, match="not a full checkpoint"):
        bind_weights(deeper, state, required=["lm_head.weight"])
