"""Faithfulness metrics on a hand-built model (closed form) and on the demo's methods."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attrib_mlops.errors import InputError, UnsupportedMethodError
from attrib_mlops.result import AttributionResult
from attrib_mlops.sources.faithfulness import faithfulness, faithfulness_many, random_baseline

PROMPT = ["a", "b", "c", "d", "?"]


def _result(column: list[float]) -> AttributionResult:
    toks = PROMPT + ["t"]
    mat = np.full((6, 1), np.nan, np.float32)
    mat[:5, 0] = column
    return AttributionResult(mat, toks, ["t"], "hand", "native", n_prompt=5, prompt=" ".join(PROMPT), target=" t")


def test_closed_form_on_the_bag_of_tokens_model(bow):
    model, tok = bow
    ids = {w: tok.convert_tokens_to_ids(w) for w in PROMPT + ["t"]}
    p = lambda words: model.prob([ids[w] for w in words], ids["t"])  # noqa: E731
    r = _result([4.0, 1.0, 0.5, 0.2, 0.1])  # ranking a, b, c, d, ?
    for ablation in ("mask", "remove"):
        got = faithfulness(model, tok, r, fractions=(0.2, 0.4), deletion_steps=5, ablation=ablation)
        full = p(PROMPT)
        assert got["probability"] == pytest.approx(full, rel=1e-6)
        assert got["comprehensiveness_k20"] == pytest.approx(full - p(["b", "c", "d", "?"]), abs=1e-6)
        assert got["comprehensiveness_k40"] == pytest.approx(full - p(["c", "d", "?"]), abs=1e-6)
        assert got["sufficiency_k20"] == pytest.approx(full - p(["a"]), rel=1e-5, abs=1e-6)
        assert got["sufficiency_k40"] == pytest.approx(full - p(["a", "b"]), rel=1e-5, abs=1e-6)
        assert got["comprehensiveness"] == pytest.approx((got["comprehensiveness_k20"] + got["comprehensiveness_k40"]) / 2)
        curve = [p(PROMPT[k:]) for k in range(6)]
        auc = sum((curve[k] + curve[k + 1]) / 2 * 0.2 for k in range(5))
        assert got["deletion_auc"] == pytest.approx(auc, abs=1e-6)
        assert got["n_forwards"] == 1 + 2 * 2 + 5


def test_faithful_ranking_beats_random_and_reversed(bow):
    model, tok = bow
    good = faithfulness(model, tok, _result([4.0, 1.0, 0.5, 0.2, 0.1]))
    bad = faithfulness(model, tok, _result([0.0, 0.1, 0.5, 0.6, 0.7]))
    rnd = faithfulness_many(model, tok, [random_baseline(_result([0.0] * 5), seed=s) for s in range(8)])
    assert good["comprehensiveness"] > rnd["comprehensiveness"] > bad["comprehensiveness"]
    assert good["sufficiency"] < rnd["sufficiency"] < bad["sufficiency"]
    assert good["deletion_auc"] < rnd["deletion_auc"] < bad["deletion_auc"]
    assert all(isinstance(v, float) for v in good.values())


def test_bad_input(bow):
    model, tok = bow
    r = _result([1.0] * 5)
    with pytest.raises(InputError, match="fractions"):
        faithfulness(model, tok, r, fractions=(0.0,))
    with pytest.raises(InputError, match="unknown ablation"):
        faithfulness(model, tok, r, ablation="zero")
    enc_dec = AttributionResult(np.ones((2, 1)), ["a", "b"], ["t"], "m", "inseq", n_prompt=2)
    with pytest.raises(UnsupportedMethodError, match="decoder-only"):
        faithfulness(model, tok, enc_dec)
    odd = AttributionResult(np.ones((2, 1)), ["zebra", "t"], ["t"], "m", "native", n_prompt=1)
    with pytest.raises(InputError, match="not in this tokenizer's vocabulary"):
        faithfulness(model, tok, odd)


@pytest.mark.slow
def test_demo_methods_on_the_trained_keyvalue_model(kv_clean):
    """Which token method is most faithful on the clean key-value model: a fact, with the ground truth as oracle."""
    from attrib_mlops import attribute
    from attrib_mlops.demo.tasks import probe_set

    model, tok = kv_clean
    probe = probe_set(8)
    prompts, targets = list(probe["prompt"]), list(probe["target"])
    table = {}
    for method in ("saliency", "input_x_gradient", "integrated_gradients", "attention", "occlusion"):
        res = attribute(model, tok, prompts, targets, methods=method, n_steps=16)
        table[method] = faithfulness_many(model, tok, res)
    base = attribute(model, tok, prompts, targets, methods="saliency")
    oracle = []
    for r, gt in zip(base, probe["ground_truth"]):
        mat = np.where(np.isnan(r.matrix), np.nan, 0.0).astype(np.float32)
        mat[gt[0], 0] = 1.0
        oracle.append(AttributionResult(mat, r.source_tokens, r.target_tokens, "ground_truth", "native",
                                        n_prompt=r.n_prompt, prompt=r.prompt, target=r.target))
    table["ground_truth"] = faithfulness_many(model, tok, oracle)
    table["random"] = faithfulness_many(model, tok, [random_baseline(r, seed=i) for i, r in enumerate(base)])
    for name, row in table.items():
        print(f"{name:22s} comp={row['comprehensiveness']:.3f} suff={row['sufficiency']:.3f} "
              f"del_auc={row['deletion_auc']:.3f}")
    assert table["ground_truth"]["comprehensiveness"] > table["random"]["comprehensiveness"] + 0.3
    best = max(table, key=lambda m: table[m]["comprehensiveness"] if m not in ("ground_truth", "random") else -1)
    assert table[best]["comprehensiveness"] > table["random"]["comprehensiveness"]
    assert table["occlusion"]["comprehensiveness"] > table["random"]["comprehensiveness"]
    assert math.isfinite(table["integrated_gradients"]["deletion_auc"])
