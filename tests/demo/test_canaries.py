"""Synthetic canary and flipped-label training sets: deterministic, with the promised structure."""

from __future__ import annotations

from attrib_mlops.demo.canaries import (
    CANARY_KEY,
    CANARY_VALUE,
    canary_query,
    canary_vocab,
    flip_permutation,
    make_canary_dataset,
    make_flipped_dataset,
)


def test_canary_rows_are_the_only_ones_with_the_canary_tokens():
    ds, pos = make_canary_dataset(50, n_canaries=5, seed=3)
    assert len(ds) == 55 and len(pos) == 5 and sorted(pos) == pos
    again, pos2 = make_canary_dataset(50, n_canaries=5, seed=3)
    assert list(again["prompt"]) == list(ds["prompt"]) and pos2 == pos
    for i, row in enumerate(ds):
        has = CANARY_KEY in row["prompt"].split() or CANARY_VALUE in row["target"].split()
        assert has == (i in pos) == row["canary"]
        if row["canary"]:
            assert row["prompt"].endswith(f"? {CANARY_KEY}") and row["target"] == f" {CANARY_VALUE}"
            assert row["id"].startswith("canary-")
    q = canary_query()
    assert q["prompt"] not in set(ds["prompt"]) and q["target"] == f" {CANARY_VALUE}"
    vocab = set(canary_vocab())
    assert all(set(r["prompt"].split()) <= vocab for r in ds)


def test_flipped_rows_contradict_the_mapping():
    ds = make_flipped_dataset(200, flip_rate=0.1, seed=1)
    pi = flip_permutation(16, 1)
    assert sum(ds["flipped"]) == 20 and len(set(ds["id"])) == 200
    for row in ds:
        key = int(row["prompt"].split()[-1][1:])
        value = int(row["target"].strip()[1:])
        assert (value != pi[key]) == row["flipped"]
    assert list(make_flipped_dataset(200, flip_rate=0.1, seed=1)["prompt"]) == list(ds["prompt"])
