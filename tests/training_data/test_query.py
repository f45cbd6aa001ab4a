"""Queries: target selection, generated targets, the model left as it was, and every bad input's error."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from attrib_mlops.errors import SpecError, UnknownMethodError
from attrib_mlops.training_data import attribute_training_data, build_training_index
from attrib_mlops.training_data.errors import (
    CheckpointError,
    IndexMismatchError,
    MissingLearningRateError,
    TargetTokenError,
    TrainingIndexError,
)


@pytest.fixture(scope="module")
def index(ckpts, rows, tmp_path_factory):
    return build_training_index(ckpts, None, rows, projection_dim=64, per_layer="never",
                                out_dir=str(tmp_path_factory.mktemp("q") / "index"), show_progress=False)


@pytest.fixture(scope="module")
def model_tok(ckpts):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(ckpts[1]), AutoTokenizer.from_pretrained(ckpts[1])


def test_target_tokens_select_what_is_attributed(index, model_tok):
    model, tok = model_tok
    all_ = attribute_training_data(index, model, tok, "w1 w2 w3", " w4 w9")
    first = attribute_training_data(index, model, tok, "w1 w2 w3", " w4 w9", target_tokens=0)
    second = attribute_training_data(index, model, tok, "w1 w2 w3", " w4 w9", target_tokens=[1])
    assert all_.selected == [0, 1] and first.selected == [0] and second.selected == [1]
    assert all_.target_tokens == ["w4", "w9"]
    # the query gradient is linear in the selected log-probabilities, and so are TracIn scores
    np.testing.assert_allclose(all_.scores, first.scores + second.scores, atol=3e-3 * np.abs(all_.scores).max())
    assert not np.allclose(first.scores, second.scores)
    # example "a" is "w1 w2 w3" -> " w4": it supports w4 more than anything supports w9
    assert first.top(1)["positive"][0]["id"] == "a"


def test_generated_target_and_result_metadata(index, model_tok, ckpts):
    model, tok = model_tok
    res = attribute_training_data(index, model, tok, "w1 w2 w3", max_new_tokens=3, top_k=4)
    assert res.target.strip() and len(res.target_tokens) == 3 and res.selected == [0, 1, 2]
    assert res.info["checkpoints"][1]["step"] == 20 and res.info["projection"]["dim"] == 64
    assert len(res.top()["positive"]) + len(res.top()["negative"]) <= 8 and res.top_k == 4
    # model=None, tokenizer=None: the index's last checkpoint
    again = attribute_training_data(index, None, None, "w1 w2 w3", res.target)
    np.testing.assert_allclose(again.scores, res.scores, rtol=1e-5, atol=1e-6)


def test_the_model_is_left_as_it_was(ckpts, rows, model_tok, tmp_path):
    model, tok = model_tok
    model.train()
    flags = {n: (i % 2 == 0) for i, (n, _) in enumerate(model.named_parameters())}
    for n, p in model.named_parameters():
        p.requires_grad_(flags[n])
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    attn = model.config._attn_implementation
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    try:
        idx = build_training_index(ckpts, tok, rows, model=model, out_dir=str(tmp_path / "i"), show_progress=False)
        res = attribute_training_data(idx, model, tok, "w1 w2 w3", None, max_new_tokens=2)
        assert res.n_examples == len(rows)
        assert torch.equal(torch.get_rng_state(), rng)
        assert model.training and torch.is_grad_enabled()
        assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
        assert model.config._attn_implementation == attn
        for n, p in model.state_dict().items():
            assert torch.equal(p, before[n]), n
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(True)


def test_errors_of_bad_input(index, model_tok, ckpts, rows, tmp_path):
    from attrib_mlops.demo.tiny import build_tiny_model, build_word_tokenizer

    model, tok = model_tok
    with pytest.raises(TargetTokenError, match=r"target token 2 is out of range: the target ' w4 w9' has 2 tokens"):
        attribute_training_data(index, model, tok, "w1 w2 w3", " w4 w9", target_tokens=[0, 2])
    with pytest.raises(TargetTokenError, match="out of range"):
        attribute_training_data(index, model, tok, "w1 w2 w3", " w4 w9", target_tokens=-1)
    with pytest.raises(TargetTokenError, match="empty"):
        attribute_training_data(index, model, tok, "w1 w2 w3", " w4", target_tokens=[])
    other, _ = build_tiny_model([f"w{i}" for i in range(40)], n_layer=1, n_embd=32, n_head=4, n_positions=64)
    with pytest.raises(IndexMismatchError, match="another model"):
        attribute_training_data(index, other, tok, "w1", " w2")
    foreign = build_word_tokenizer([f"x{i}" for i in range(40)])
    with pytest.raises(IndexMismatchError, match="another tokenizer"):
        attribute_training_data(index, model, foreign, "x1", " x2")
    with pytest.raises(SpecError, match="unknown key 'chunk_size'"):
        attribute_training_data(index, model, tok, "w1", " w2", chunk_size=10)
    with pytest.raises(UnknownMethodError, match="valid methods: tracin, grad_cos, datainf"):
        attribute_training_data(index, model, tok, "w1", " w2", method="trak")
    with pytest.raises(TrainingIndexError, match="per_layer='always'"):
        attribute_training_data(index, model, tok, "w1", " w2", method="datainf")
    with pytest.raises(SpecError, match="unknown key 'projection_dims'"):
        build_training_index(ckpts, None, rows, projection_dims=8)


def test_checkpoints_without_learning_rate_ask_for_one(ckpts, rows, tmp_path):
    bare = tmp_path / "checkpoint-5"
    shutil.copytree(ckpts[0], bare)
    (bare / "trainer_state.json").unlink()
    with pytest.raises(MissingLearningRateError, match="no recorded learning rate.*pass learning_rates="):
        build_training_index([str(bare)], None, rows, out_dir=str(tmp_path / "i"), show_progress=False)
    assert not (tmp_path / "i").exists()  # nothing computed or written
    idx = build_training_index([str(bare)], None, rows, learning_rates=[0.01], out_dir=str(tmp_path / "i"),
                               show_progress=False)
    assert idx.learning_rates == [0.01] and idx.checkpoints[0]["lr_source"] == "given"


def test_moved_checkpoints(ckpts, rows, model_tok, tmp_path):
    model, tok = model_tok
    moved = [tmp_path / "c1" / "checkpoint-10", tmp_path / "c1" / "checkpoint-20"]
    for src, dst in zip(ckpts, moved):
        shutil.copytree(src, dst)
    idx = build_training_index([str(m) for m in moved], None, rows, projection_dim=32,
                               out_dir=str(tmp_path / "i"), show_progress=False)
    ref = attribute_training_data(idx, model, tok, "w1 w2 w3", " w4")
    shutil.move(str(tmp_path / "c1"), str(tmp_path / "c2"))
    with pytest.raises(CheckpointError, match="no longer at .*pass checkpoints="):
        attribute_training_data(idx, model, tok, "w1 w2 w3", " w4")
    now = [str(tmp_path / "c2" / m.name) for m in moved]
    res = attribute_training_data(idx, model, tok, "w1 w2 w3", " w4", checkpoints=now)
    np.testing.assert_allclose(res.scores, ref.scores, rtol=1e-6)
    json.dumps(res.to_dict(), allow_nan=False)
