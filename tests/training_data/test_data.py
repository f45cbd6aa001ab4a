"""Training data: datasets, records, columns and texts; ids; loss tokens; fingerprints; files."""

from __future__ import annotations

import json

import datasets
import pytest

from attrib_mlops.errors import InputError
from attrib_mlops.training_data.data import (
    load_train_file,
    normalize_train_data,
    tokenize_examples,
    train_fingerprint,
)


def test_sources_give_the_same_examples_and_fingerprint(rows):
    recs = [r for r in rows if "prompt" in r]
    ds = datasets.Dataset.from_list(recs)
    cols = {k: [r[k] for r in recs] for k in recs[0]}
    a, b, c = (normalize_train_data(x) for x in (recs, ds, cols))
    assert [e.id for e in a] == [e.id for e in b] == [e.id for e in c] == ["a", "b", "d", "f", "g", "i"]
    assert train_fingerprint(a) == train_fingerprint(b) == train_fingerprint(c)
    assert train_fingerprint(a) != train_fingerprint(a[::-1])
    changed = [dict(r) for r in recs]
    changed[0]["target"] = " w5"
    assert train_fingerprint(normalize_train_data(changed)) != train_fingerprint(a)


def test_ids_default_to_positions_and_must_be_unique():
    ex = normalize_train_data(["w1 w2", {"text": "w3 w4"}, {"id": 7, "text": "w5 w6"}])
    assert [e.id for e in ex] == ["0", "1", "7"]
    with pytest.raises(InputError, match="share the id 'x'"):
        normalize_train_data([{"id": "x", "text": "a"}, {"id": "x", "text": "b"}])


def test_loss_tokens(tiny):
    _, tok = tiny
    ex = normalize_train_data([{"prompt": "w1 w2", "completion": " w3 w4"}, "w5 w6 w7",
                               {"input_ids": [4, 5, 6], "labels": [-100, 5, 6]}])
    cut = tokenize_examples(ex, tok, max_length=None)
    assert cut == 0
    w = tok.convert_tokens_to_ids
    assert ex[0].input_ids == [w("w1"), w("w2"), w("w3"), w("w4")]
    assert ex[0].labels == [-100, -100, w("w3"), w("w4")] and ex[0].n_loss_tokens == 2
    assert ex[1].labels == ex[1].input_ids and ex[1].n_loss_tokens == 2
    assert ex[2].pretokenized and ex[2].labels == [-100, 5, 6]
    long = normalize_train_data(["w1 w2 w3 w4 w5"])
    assert tokenize_examples(long, tok, max_length=3) == 1 and len(long[0].input_ids) == 3


def test_bad_examples(tiny):
    _, tok = tiny
    with pytest.raises(InputError, match="none of the fields"):
        normalize_train_data([{"question": "a"}])
    with pytest.raises(InputError, match="empty"):
        normalize_train_data([])
    with pytest.raises(InputError, match="is a string"):
        normalize_train_data("not-a-file.jsonl")
    with pytest.raises(InputError, match="no token to compute a loss on"):
        tokenize_examples(normalize_train_data(["w1"]), tok, max_length=None)
    with pytest.raises(InputError, match="differ in length"):
        normalize_train_data([{"input_ids": [1, 2], "labels": [1]}])


def test_named_fields_and_files(tmp_path, rows):
    ex = normalize_train_data([{"q": "w1", "a": " w2"}], prompt_field="q", target_field="a")
    assert ex[0].prompt == "w1" and ex[0].target == " w2"
    f = tmp_path / "train.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert [e.id for e in normalize_train_data(f)] == [r["id"] for r in rows]
    (tmp_path / "t.json").write_text(json.dumps(["w1 w2", "w3 w4"]))
    assert len(load_train_file(tmp_path / "t.json")) == 2
    datasets.Dataset.from_list(rows[:2]).save_to_disk(str(tmp_path / "saved"))
    assert [e.id for e in normalize_train_data(str(tmp_path / "saved"))] == ["a", "b"]
    (tmp_path / "bad.txt").write_text("x")
    with pytest.raises(InputError, match="unsupported"):
        load_train_file(tmp_path / "bad.txt")
    with pytest.raises(InputError, match="does not exist"):
        load_train_file(tmp_path / "missing.jsonl")
