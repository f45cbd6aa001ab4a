"""TracIn-CP, grad-cos and DataInf against brute-force computations on a tiny model.

Brute force: per-example gradients by a plain autograd loop (conftest), the
projection as an explicit matrix, dot products and the DataInf closed form
with explicit (g g^T + lambda I)^-1 per example and layer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attrib_mlops.training_data import attribute_training_data, build_training_index
from attrib_mlops.training_data.projection import Projector

PROMPT, TARGET = "w1 w2 w3", " w4 w9 w5"
# tolerance: float16 storage (relative 2^-11 per element, each row scaled to max 1) plus float16
# matrix-vector rounding; relative to the largest |score|
TOL = 5e-3


@pytest.fixture(scope="module")
def model_tok(ckpts):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(ckpts[1]), AutoTokenizer.from_pretrained(ckpts[1])


@pytest.fixture(scope="module")
def index(ckpts, rows, tmp_path_factory):
    return build_training_index(ckpts, None, rows, projection_dim=64, per_layer="always", shard_rows=4,
                                out_dir=str(tmp_path_factory.mktemp("idx") / "index"), show_progress=False)


@pytest.fixture(scope="module")
def small_index(ckpts, rows, tmp_path_factory):
    params = ["transformer.h.1.ln_1.*", "transformer.h.1.attn.c_attn.bias", "transformer.h.1.attn.c_proj.bias",
              "transformer.h.1.mlp.c_proj.bias"]
    return build_training_index(ckpts, None, rows, params=params, projection_dim=100, projection="sjlt",
                                per_layer="always", out_dir=str(tmp_path_factory.mktemp("idx") / "small"),
                                show_progress=False)


def _reference(index, ckpts, model_tok, rows, brute, positions):
    _, tok = model_tok
    names = [p.name for p in index.params]
    ids = tok(PROMPT + TARGET)["input_ids"]
    n_prompt = len(tok(PROMPT)["input_ids"])
    pos = [n_prompt + j for j in positions]
    G = [brute.train_grads(c, names, tok, rows) for c in ckpts]
    Q = [brute.query_grad(c, names, ids, pos) for c in ckpts]
    return G, Q


def _close(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = np.abs(want).max()
    assert scale > 0
    assert np.abs(got - want).max() <= TOL * scale, (got, want)


def test_tracin_and_grad_cos_equal_brute_force(index, ckpts, ckpt_lrs, model_tok, rows, brute):
    model, tok = model_tok
    assert index.manifest["projection"]["kind"] == "sjlt" and index.dim == 64
    assert index.learning_rates == pytest.approx(ckpt_lrs)
    G, Q = _reference(index, ckpts, model_tok, rows, brute, [0, 2])
    P = Projector(index.params, 64, index.manifest["projection"]["seed"], "sjlt").matrix().double()
    tracin = sum(lr * (g @ P) @ (q @ P) for lr, g, q in zip(ckpt_lrs, G, Q))
    cos = sum(lr / sum(ckpt_lrs) * ((g @ P) @ (q @ P)) / ((g @ P).norm(dim=1) * (q @ P).norm())
              for lr, g, q in zip(ckpt_lrs, G, Q))
    res = attribute_training_data(index, model, tok, PROMPT, TARGET, target_tokens=[0, 2], method="tracin")
    _close(res.scores, tracin.numpy())
    exact = attribute_training_data(index, model, tok, PROMPT, TARGET, [0, 2], "tracin", compute="float32")
    _close(exact.scores, tracin.numpy())
    res = attribute_training_data(index, model, tok, PROMPT, TARGET, target_tokens=[0, 2], method="grad_cos")
    _close(res.scores, cos.numpy())
    assert np.abs(res.scores).max() <= 1 + 1e-3
    # the projected TracIn approximates the unprojected one (a loose sanity check, not the formula test)
    full = sum(lr * g @ q for lr, g, q in zip(ckpt_lrs, G, Q)).numpy()
    assert np.corrcoef(full, tracin.numpy())[0, 1] > 0.5


def test_identity_projection_gives_exact_dot_products(ckpts, ckpt_lrs, rows, model_tok, brute, tmp_path):
    model, tok = model_tok
    params = ["transformer.h.1.mlp.c_proj.bias", "lm_head.weight"]
    idx = build_training_index(ckpts, None, rows, params=params, projection_dim=2048, out_dir=str(tmp_path / "i"),
                               show_progress=False)
    assert idx.manifest["projection"]["kind"] == "identity" and idx.dim == 32 + 44 * 32
    G, Q = _reference(idx, ckpts, model_tok, rows, brute, [1])
    want = sum(lr * g @ q for lr, g, q in zip(ckpt_lrs, G, Q)).numpy()
    _close(attribute_training_data(idx, model, tok, PROMPT, TARGET, [1]).scores, want)


def _datainf_naive(G_layers, Q_layers, damping=0.1):
    """mean_c sum_l q_l^T [(1/n) sum_i (g_il g_il^T + lambda_l I)^-1] g_kl with explicit inverses."""
    n_ck = len(G_layers)
    total = None
    for Gc, Qc in zip(G_layers, Q_layers):
        for g, q in zip(Gc, Qc):  # layers
            n, d = g.shape
            lam = damping * float(g.pow(2).sum(dim=1).mean()) / d
            hinv = sum(torch.linalg.inv(torch.outer(g[i], g[i]) + lam * torch.eye(d, dtype=g.dtype))
                       for i in range(n)) / n
            s = g @ (hinv @ q)
            total = s if total is None else total + s
    return (total / n_ck).numpy()


def test_datainf_equals_the_naive_closed_form(small_index, ckpts, model_tok, rows, brute):
    model, tok = model_tok
    idx = small_index
    assert idx.manifest["projection"]["kind"] == "sjlt" and idx.manifest["per_layer"]
    G, Q = _reference(idx, ckpts, model_tok, rows, brute, [0, 1, 2])
    sizes = [p.numel for p in idx.params]
    assert sizes == [32, 32, 96, 32, 32]
    split = lambda v: list(torch.split(v, sizes, dim=-1))  # noqa: E731
    want = _datainf_naive([split(g) for g in G], [split(q) for q in Q])
    res = attribute_training_data(idx, model, tok, PROMPT, TARGET, method="datainf")
    _close(res.scores, want)
    assert res.info["damping"] == 0.1
    # another damping changes the scores as the closed form says
    want2 = _datainf_naive([split(g) for g in G], [split(q) for q in Q], damping=1.0)
    _close(attribute_training_data(idx, model, tok, PROMPT, TARGET, method="datainf", damping=1.0).scores, want2)


def test_datainf_on_the_default_subset_uses_the_stored_layers(index, ckpts, model_tok, rows, brute):
    """Large layers (the block's 32x96 weights) through the Sherman-Morrison form, checked with a float64
    evaluation of the same closed form (explicit inverses of 3072x3072 matrices would be too slow here)."""
    model, tok = model_tok
    G, Q = _reference(index, ckpts, model_tok, rows, brute, [0, 1, 2])
    sizes = [p.numel for p in index.params]
    want = None
    for g_all, q_all in zip(G, Q):
        for g, q in zip(torch.split(g_all, sizes, dim=1), torch.split(q_all, sizes)):
            n, d = g.shape
            sq = g.pow(2).sum(dim=1)
            lam = 0.1 * float(sq.mean()) / d
            r = sum(q - (g[i] @ q) / (lam + sq[i]) * g[i] for i in range(n)) / (n * lam)
            want = g @ r if want is None else want + g @ r
    want = (want / len(G)).numpy()
    _close(attribute_training_data(index, model, tok, PROMPT, TARGET, method="datainf").scores, want)


def test_self_influence_equals_brute_force(index, ckpts, ckpt_lrs, model_tok, rows, brute):
    _, tok = model_tok
    names = [p.name for p in index.params]
    G = [brute.train_grads(c, names, tok, rows) for c in ckpts]
    want = sum(lr * g.pow(2).sum(dim=1) for lr, g in zip(ckpt_lrs, G)).numpy()
    np.testing.assert_allclose(index.self_influence("tracin"), want, rtol=1e-4)
    np.testing.assert_allclose(index.self_influence("grad_norm"), sum(g.pow(2).sum(dim=1) for g in G).numpy(),
                               rtol=1e-4)
