"""Rationale metrics: Kendall's tau-b against scipy, ceilings, hit@k, the report on real classifier results."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from attrib_mlops.analysis.rationale import (
    accuracy,
    kendall_ceiling,
    kendall_tau_b,
    rank_alignment,
    rationale_alignment,
    rationale_report,
)
from attrib_mlops.errors import InputError


def test_kendall_tau_b_equals_scipy():
    rng = np.random.default_rng(0)
    for n in (2, 5, 17, 40):
        for _ in range(10):
            x = rng.integers(0, 4, n).astype(float)  # with ties
            y = rng.normal(size=n)
            want = stats.kendalltau(x, y).statistic
            got = kendall_tau_b(x, y)
            assert (math.isnan(want) and math.isnan(got)) or got == pytest.approx(want, abs=1e-12)
    assert math.isnan(kendall_tau_b(np.ones(4), np.arange(4.0)))


def test_ceiling_is_reached_by_a_perfect_ranking_only():
    rel = np.array([0, 1, 0, 0, 1, 0, 0], dtype=float)
    perfect = np.array([0.1, 0.9, 0.2, 0.3, 0.8, 0.05, 0.0])
    assert kendall_tau_b(perfect, rel) == pytest.approx(kendall_ceiling(rel))
    assert kendall_ceiling(rel) == pytest.approx(math.sqrt(10 / 21))  # 2*5 discordant-able pairs of 21
    m = rank_alignment(perfect, rel, k=1)
    assert m["kendall_tau_norm"] == pytest.approx(1.0) and m["hit@1"] == 1.0 and m["precision@r"] == 1.0
    worst = rank_alignment(-perfect, rel, k=2)
    assert worst["kendall_tau_norm"] == pytest.approx(-1.0) and worst["hit@2"] == 0.0
    # a tie between a rationale item and another item counts against the rationale
    assert rank_alignment(np.array([1.0, 1.0, 0.0]), np.array([0, 1, 0]), k=1)["hit@1"] == 0.0


def test_bad_inputs():
    with pytest.raises(InputError, match="covers none"):
        rank_alignment(np.ones(3), np.zeros(3))
    with pytest.raises(InputError, match="as many predictions"):
        accuracy(["a"], ["a", "b"])


def test_report_on_classifier_results():
    from attrib_mlops import attribute
    from attrib_mlops.demo.sentiment import make_sentiment_records
    from attrib_mlops.demo.tiny_classifier import build_tiny_classifier

    recs = make_sentiment_records(6, seed=3)
    vocab = sorted({w.strip(".,'").lower() for r in recs for w in r["text"].split()})
    model, tok = build_tiny_classifier("bert", vocab, seed=1)
    res = attribute(model, tok, [r["text"] for r in recs], targets=[r["label"] for r in recs],
                    methods=["occlusion", "attention"], sample_ids=[r["id"] for r in recs], baseline="zeros")
    rep = rationale_report(res, recs, k=1)
    assert set(rep) == {"occlusion", "attention"}
    preds = [r.info["predicted_label"] for r in res if r.method == "occlusion"]
    assert rep["occlusion"]["accuracy"] == pytest.approx(np.mean([p == r["label"] for p, r in zip(preds, recs)]))
    # brute force for one sample at word level: words = the text's words (lower case, punctuation split)
    r0 = next(r for r in res if r.method == "occlusion")
    m = rationale_alignment(r0, recs[0]["rationale_spans"], k=3)
    words = [w for w in __import__("re").findall(r"\w+|[^\w\s]", recs[0]["text"].lower())]
    rel = np.array([w in recs[0]["rationale"] for w in words], dtype=float)
    scores = np.abs(r0.matrix[1:-1, 0])  # one token per word in this vocabulary; [CLS]/[SEP] left out
    assert len(scores) == len(words)
    assert m["kendall_tau"] == pytest.approx(stats.kendalltau(scores, rel).statistic, abs=1e-6)
    with pytest.raises(InputError, match="has no record"):
        rationale_report(res, recs[1:])
