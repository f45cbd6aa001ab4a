"""The index folder: manifest, safetensors shards (float16, no pickle), chunked reads, extension, atomicity."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from attrib_mlops.training_data import TrainingIndex, build_training_index
from attrib_mlops.training_data.errors import (
    IndexMismatchError,
    NoTrainingIndexError,
    TrainDataMismatchError,
    TrainingIndexError,
)


@pytest.fixture(scope="module")
def built(ckpts, rows, tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "index"
    return build_training_index(ckpts, None, rows, projection_dim=48, shard_rows=4, out_dir=str(out),
                                show_progress=False)


def test_manifest_records_what_the_index_was_built_from(built, ckpts, ckpt_lrs):
    m = json.loads((built.path / "manifest.json").read_text())
    assert m["format"] == "attrib-mlops-training-index" and m["version"] == 1 and m["dtype"] == "float16"
    assert [c["ref"] for c in m["checkpoints"]] == ckpts
    assert [c["step"] for c in m["checkpoints"]] == [10, 20]
    assert [c["learning_rate"] for c in m["checkpoints"]] == pytest.approx(ckpt_lrs)
    assert "trainer_state.json" in m["checkpoints"][1]["lr_source"]
    assert m["params"][-1]["name"] == "lm_head.weight" and m["params"][-1]["shape"] == [44, 32]
    assert m["projection"]["kind"] == "sjlt" and m["projection"]["dim"] == 48 and m["projection"]["seed"] == 0
    assert len(m["projection"]["fingerprint"]) == 64
    for key in ("train", "model", "tokenizer"):
        assert len(m[key]["fingerprint"]) == 64
    assert m["train"]["n_examples"] == 10 and m["n_examples"] == 10
    assert built.ids == list("abcdefghij") and built.texts[0] == "w1 w2 w3 w4"
    assert built.examples()[0]["prompt_chars"] == len("w1 w2 w3")


def test_shards_are_float16_safetensors_and_nothing_is_pickled(built):
    files = sorted(p.relative_to(built.path).as_posix() for p in built.path.rglob("*") if p.is_file())
    assert files[:2] == ["ckpt-000/layers-00000.safetensors", "ckpt-000/layers-00001.safetensors"]
    assert all(f.endswith((".safetensors", ".json", ".jsonl")) for f in files)
    assert not any(f.endswith((".pt", ".pkl", ".bin", ".pickle")) for f in files)
    rows = [f for f in files if "rows-" in f]
    assert len(rows) == 2 * 3  # 10 examples in shards of 4: 4 + 4 + 2, per checkpoint
    with safe_open(str(built.path / rows[0]), framework="pt") as fh:
        assert fh.get_slice("grads").get_dtype() == "F16" and fh.get_slice("grads").get_shape() == [4, 48]
        assert fh.get_tensor("scale").dtype == torch.float32
        assert fh.get_tensor("grads").abs().max() == 1.0  # each row scaled to max |value| 1
    size = built.size_bytes()
    assert size["projected"] == 2 * 10 * 48 * 2  # checkpoints x N x d x 2 bytes
    assert size["layers"] > 0 and size["total"] > size["projected"]


def test_chunked_reads_equal_whole_reads(built):
    whole = torch.cat([g.float() * s[:, None] for _, g, s in built.row_chunks(1, chunk_rows=1000)])
    parts = list(built.row_chunks(1, chunk_rows=3))
    assert [p[0] for p in parts] == [0, 3, 4, 7, 8]  # chunks never cross a shard
    assert torch.equal(torch.cat([g.float() * s[:, None] for _, g, s in parts]), whole)
    assert whole.shape == (10, 48)
    lay = built.params[0].name
    a = torch.cat([g for _, g in built.layer_chunks(0, lay, 1000)])
    b = torch.cat([g for _, g in built.layer_chunks(0, lay, 2)])
    assert torch.equal(a, b) and a.shape == (10, built.params[0].numel)
    assert built.norms(0).shape == (10,) and built.sqnorms(0).shape == (10, len(built.params))


def test_extending_an_index_adds_checkpoints_and_checks_it_matches(ckpts, rows, tmp_path):
    out = str(tmp_path / "ext")
    first = build_training_index(ckpts[:1], None, rows, projection_dim=48, out_dir=out, show_progress=False)
    assert len(first.checkpoints) == 1
    again = build_training_index(ckpts, None, rows, projection_dim=48, out_dir=out, show_progress=False)
    assert [c["ref"] for c in again.checkpoints] == ckpts and [c["dir"] for c in again.checkpoints] == [
        "ckpt-000", "ckpt-001"]
    with pytest.raises(TrainDataMismatchError, match="no longer matches"):
        build_training_index(ckpts, None, rows[:-1], projection_dim=48, out_dir=out, show_progress=False)
    with pytest.raises(IndexMismatchError, match="another projection"):
        build_training_index(ckpts, None, rows, projection_dim=48, projection_seed=5, out_dir=out,
                             show_progress=False)
    with pytest.raises(IndexMismatchError, match="another training loss"):
        build_training_index(ckpts, None, rows, projection_dim=48, loss_reduction="sum", out_dir=out,
                             show_progress=False)
    with pytest.raises(IndexMismatchError, match="another parameter subset"):
        build_training_index(ckpts, None, rows, projection_dim=48, last_blocks=2, out_dir=out, show_progress=False)
    assert not list((tmp_path / "ext").glob("*.partial"))


def test_bad_folders(tmp_path, built):
    with pytest.raises(NoTrainingIndexError, match="build one"):
        TrainingIndex(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({**built.manifest, "version": 99}))
    with pytest.raises(TrainingIndexError, match="upgrade attrib-mlops"):
        TrainingIndex(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(TrainingIndexError, match="not valid JSON"):
        TrainingIndex(tmp_path)
