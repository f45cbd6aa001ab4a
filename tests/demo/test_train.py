"""Short CPU training on the key-value task with the HF Trainer."""

from __future__ import annotations

import pytest
import torch

from attrib_mlops.demo.tasks import keyvalue_vocab, make_keyvalue_dataset, probe_set
from attrib_mlops.demo.tiny import build_tiny_model, build_word_tokenizer
from attrib_mlops.demo.train import (
    DEFAULT_DATA,
    DEFAULT_MODEL,
    DEFAULT_TRAIN,
    SHORTCUT_DATA,
    KeyValueCollator,
    encode_keyvalue,
    keyvalue_accuracy,
    keyvalue_predictions,
    train_keyvalue,
)

STEPS = 250  # the default is 400; 250 already gets ~0.9-1.0 and keeps each run to a few seconds
TRAIN = dict(DEFAULT_TRAIN, max_steps=STEPS)


def _model():
    return build_tiny_model(keyvalue_vocab(), **DEFAULT_MODEL)


def test_encode_masks_the_prompt_and_collator_pads():
    tok = build_word_tokenizer(keyvalue_vocab())
    ds = make_keyvalue_dataset(3, seed=0, distractor_rate=1.0)
    ds = ds.select([0]).to_dict()
    short = {"prompt": ["k0 = v1 ; ? k0"], "target": [" v1"]}
    rows = encode_keyvalue(tok, {"prompt": ds["prompt"] + short["prompt"],
                                 "target": ds["target"] + short["target"]})
    for r in rows:
        assert r["labels"][:-1] == [-100] * (len(r["input_ids"]) - 1)
        assert r["labels"][-1] == r["input_ids"][-1]
    batch = KeyValueCollator(tok.pad_token_id)(rows)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    n_short = len(rows[1]["input_ids"])
    assert (batch["input_ids"][1, n_short:] == tok.pad_token_id).all()
    assert (batch["labels"][1, n_short:] == -100).all()
    width = batch["input_ids"].shape[1]
    assert batch["attention_mask"][1].tolist() == [1] * n_short + [0] * (width - n_short)
    with pytest.raises(ValueError, match="vocabulary"):
        encode_keyvalue(tok, {"prompt": ["k0 = zebra ; ? k0"], "target": [" v1"]})


def test_accuracy_restores_mode_and_matches_predictions():
    model, tok = _model()
    probe = probe_set(20)
    model.train()
    preds = keyvalue_predictions(model, tok, probe, batch_size=7)
    acc = keyvalue_accuracy(model, tok, probe, batch_size=7)
    assert model.training
    assert len(preds) == 20
    assert acc == sum(p == a for p, a in zip(preds, probe["answer"])) / 20
    model.eval()
    keyvalue_accuracy(model, tok, probe)
    assert not model.training


def test_save_steps_needs_output_dir():
    model, tok = _model()
    with pytest.raises(ValueError, match="output_dir"):
        train_keyvalue(model, tok, probe_set(4), max_steps=1, save_steps=1)


@pytest.mark.slow
def test_short_training_learns_and_is_deterministic(tmp_path):
    probe = probe_set(256)
    data = make_keyvalue_dataset(**dict(DEFAULT_DATA, n=STEPS * TRAIN["batch_size"]))

    runs = []
    for i in range(2):
        model, tok = _model()
        if i == 0:
            untrained = keyvalue_accuracy(model, tok, probe)
        rng_before = torch.get_rng_state()
        out = train_keyvalue(
            model, tok, data, **TRAIN, output_dir=str(tmp_path / f"run{i}"), save_steps=STEPS
        )
        assert torch.equal(torch.get_rng_state(), rng_before)  # caller's RNG untouched
        assert not model.training  # left in eval mode, as built
        runs.append((out, keyvalue_accuracy(model, tok, probe)))

    (out, acc), (out2, acc2) = runs
    assert out["global_step"] == STEPS
    assert len(out["loss_history"]) == STEPS // TRAIN["logging_steps"]
    assert out["loss_history"] == out2["loss_history"]  # same seed -> identical
    assert acc == acc2
    assert untrained < 0.2
    assert acc > 0.5, (acc, out["loss_history"])  # chance: 1/16 (1/4 among in-context values)
    assert out["loss_history"][-1]["loss"] < 0.5 * out["loss_history"][0]["loss"]

    ckpt = tmp_path / "run0" / f"checkpoint-{STEPS}"
    assert (ckpt / "model.safetensors").is_file()
    assert (ckpt / "tokenizer.json").is_file()


@pytest.mark.slow
def test_shortcut_model_follows_the_hint():
    steps = 100
    model, tok = _model()
    data = make_keyvalue_dataset(**dict(SHORTCUT_DATA, n=steps * TRAIN["batch_size"]))
    train_keyvalue(model, tok, data, **dict(TRAIN, max_steps=steps))
    assert keyvalue_accuracy(model, tok, probe_set(128, shortcut=True)) > 0.9
    assert keyvalue_accuracy(model, tok, probe_set(128, shortcut=True, hint_rate=0.0)) < 0.2
