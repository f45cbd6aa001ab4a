"""The synthetic multi-document task."""

from __future__ import annotations

import pytest

from attrib_mlops.demo.multidoc import make_multidoc_dataset, multidoc_vocab
from attrib_mlops.demo.tiny import build_word_tokenizer


def test_answer_in_exactly_one_document_and_deterministic():
    ds = make_multidoc_dataset(50, seed=3)
    again = make_multidoc_dataset(50, seed=3)
    assert ds["prompt"] == again["prompt"]
    assert ds["prompt"] != make_multidoc_dataset(50, seed=4)["prompt"]
    docs_hit = set()
    for row in ds:
        lines = row["prompt"].split("\n")
        assert lines == list(row["sources"]) and lines[-1] == "? answer"
        holders = [i for i, line in enumerate(lines) if row["answer"] in line.split()]
        assert holders == [row["answer_doc"]]
        assert sum(w.startswith("a") and w != "answer" for w in row["prompt"].split()) == 1
        assert row["target"] == " " + row["answer"]
        docs_hit.add(row["answer_doc"])
    assert docs_hit == {0, 1, 2, 3}


def test_variable_document_count_and_vocabulary():
    ds = make_multidoc_dataset(200, seed=0, min_docs=1)
    counts = {len(r["sources"]) - 1 for r in ds}
    assert counts == {1, 2, 3, 4}
    tok = build_word_tokenizer(multidoc_vocab())
    ids = tok(ds["prompt"][:20])["input_ids"]
    assert all(tok.unk_token_id not in row for row in ids)
    with pytest.raises(ValueError, match="min_docs"):
        make_multidoc_dataset(1, min_docs=5)
