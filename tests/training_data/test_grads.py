"""Per-example gradients: vmap equals the loop fallback, both equal a brute-force autograd loop."""

from __future__ import annotations

import logging

import pytest
import torch

from attrib_mlops.training_data.checkpoints import bind_weights, read_weights
from attrib_mlops.training_data.grads import GradComputer, eager_attention
from attrib_mlops.training_data.subset import select_params


@pytest.fixture(scope="module")
def loaded(ckpts):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(ckpts[1])  # default attention (sdpa)
    tok = AutoTokenizer.from_pretrained(ckpts[1])
    return model, tok


def _weights(model, folder, names):
    state, partial = read_weights(__import__("pathlib").Path(folder))
    return bind_weights(model, state, required=names, partial=partial)


def _batch(tok, rows, brute):
    enc = [brute.encode(tok, r) for r in rows]
    return [e[0] for e in enc], [e[1] for e in enc]


def test_default_subset_is_last_block_and_untied_head(loaded):
    model, _ = loaded
    names = [s.name for s in select_params(model)]
    assert names[-1] == "lm_head.weight"
    assert all(n.startswith("transformer.h.1.") for n in names[:-1]) and len(names) > 5
    assert "transformer.wte.weight" not in names
    two = [s.name for s in select_params(model, last_blocks=2, include_head=False)]
    assert any(n.startswith("transformer.h.0.") for n in two) and "lm_head.weight" not in two


@pytest.mark.parametrize("params", [None, ["transformer.h.0.attn.*", "transformer.wte.weight"]])
def test_vmap_equals_loop_equals_brute_force(loaded, ckpts, rows, brute, params):
    model, tok = loaded
    specs = select_params(model, params)
    names = [s.name for s in specs]
    w = _weights(model, ckpts[1], names)
    seqs, labels = _batch(tok, rows, brute)  # different lengths: vmap pads, the loop does not
    gv = GradComputer(model, specs, mode="vmap").per_example(w, seqs, labels)
    gl = GradComputer(model, specs, mode="loop").per_example(w, seqs, labels)
    ref = brute.train_grads(ckpts[1], names, tok, rows)
    flat_v = torch.cat([gv[n] for n in names], dim=1).double()
    flat_l = torch.cat([gl[n] for n in names], dim=1).double()
    scale = ref.abs().max()
    assert scale > 0
    assert (flat_v - flat_l).abs().max() <= 1e-5 * scale
    assert (flat_v - ref).abs().max() <= 1e-5 * scale
    # gradients differ across examples (not a broadcast of one)
    assert (ref[0] - ref[1]).abs().max() > 1e-3 * scale


def test_micro_batches_give_the_same_gradients(loaded, ckpts, rows, brute):
    model, tok = loaded
    specs = select_params(model)
    w = _weights(model, ckpts[0], [s.name for s in specs])
    seqs, labels = _batch(tok, rows, brute)
    full = GradComputer(model, specs, mode="vmap").per_example(w, seqs, labels)
    per_ex_bytes = 4 * sum(s.numel for s in specs)
    small = GradComputer(model, specs, mode="vmap", max_grad_bytes=3 * per_ex_bytes)
    assert small.micro_batch == 3
    split = small.per_example(w, seqs, labels)
    for s in specs:
        torch.testing.assert_close(full[s.name], split[s.name], rtol=1e-5, atol=1e-7)


def test_query_gradient_equals_brute_force(loaded, ckpts, brute):
    model, tok = loaded
    specs = select_params(model)
    names = [s.name for s in specs]
    ids = tok("w1 w2 w3 w4 w5 w6")["input_ids"]
    pos = [4, 5]
    g = GradComputer(model, specs).query(_weights(model, ckpts[0], names), ids, pos)
    ref = brute.query_grad(ckpts[0], names, ids, pos)
    got = torch.cat([g[n] for n in names]).double()
    assert (got - ref).abs().max() <= 1e-5 * ref.abs().max()


class _NoVmap(torch.nn.Module):
    """A model that reads a tensor value in forward (``.item()``): vmap cannot run it."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask=None):
        if int(input_ids.max().item()) < 0:  # data-dependent control flow
            raise AssertionError
        return self.inner(input_ids=input_ids, attention_mask=attention_mask).logits


def test_auto_falls_back_to_the_loop_when_vmap_cannot_run(loaded, ckpts, rows, brute, caplog):
    model, tok = loaded
    wrapped = _NoVmap(model)
    specs = select_params(wrapped, ["inner.lm_head.weight", "inner.transformer.h.1.mlp.*"])
    names = [s.name for s in specs]
    inner_w = _weights(model, ckpts[1], [n[len("inner."):] for n in names])
    w = {"inner." + k: v for k, v in inner_w.items()}
    seqs, labels = _batch(tok, rows[:4], brute)
    with pytest.raises(RuntimeError):
        GradComputer(wrapped, specs, mode="vmap").per_example(w, seqs, labels)
    gc = GradComputer(wrapped, specs, mode="auto")
    with caplog.at_level(logging.WARNING):
        g = gc.per_example(w, seqs, labels)
    assert gc.mode == "loop" and "cannot run under torch.func.vmap" in caplog.text
    ref = brute.train_grads(ckpts[1], [n[len("inner."):] for n in names], tok, rows[:4])
    got = torch.cat([g[n] for n in names], dim=1).double()
    assert (got - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_eager_attention_is_restored(loaded):
    model, _ = loaded
    before = model.config._attn_implementation
    assert before != "eager"
    with eager_attention(model):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == before
    with pytest.raises(ZeroDivisionError):
        with eager_attention(model):
            1 / 0
    assert model.config._attn_implementation == before
