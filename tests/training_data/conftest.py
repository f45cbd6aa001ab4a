"""Fixtures of the training-data attribution tests: tiny checkpoints, training rows, brute-force references.

The references are written independently of the package: per-example
gradients by a plain loop over examples with ``torch.autograd.grad`` on a real
``GPT2LMHeadModel`` (its own ``labels=`` loss), the tied output head untied into
its own ``nn.Parameter`` (the package takes the head's gradient for its use as
output projection only).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: the machine is shared and tiny models are slower with more."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _perturbed(model, seed: int, scale: float = 0.05):
    import copy

    m = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return m


def _trainer_state(folder: Path, step: int, lrs: list[tuple[int, float]]) -> None:
    hist = [{"step": s, "learning_rate": lr, "loss": 1.0} for s, lr in lrs]
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": hist}))


@pytest.fixture(scope="session")
def ckpt_root(tiny, tmp_path_factory):
    """Two checkpoints of the session's tiny GPT-2 (perturbed weights) with trainer_state.json learning rates."""
    from attrib_mlops.demo.tiny import save_tiny

    model, tok = tiny
    root = tmp_path_factory.mktemp("tda-ckpts")
    for k, (step, seed) in enumerate(((10, 1), (20, 2))):
        d = save_tiny(_perturbed(model, seed), tok, root / f"checkpoint-{step}")
        lrs = [(5, 0.2), (10, 0.1)] if k == 0 else [(5, 0.2), (10, 0.1), (15, 0.06), (20, 0.04)]
        _trainer_state(d, step, lrs)
    return root


@pytest.fixture(scope="session")
def ckpts(ckpt_root):
    return [str(ckpt_root / "checkpoint-10"), str(ckpt_root / "checkpoint-20")]


#: learning rates learning_rate_of() reads from the fixture's trainer_state.json files
CKPT_LRS = [(0.2 + 0.1) / 2, (0.06 + 0.04) / 2]


@pytest.fixture(scope="session")
def ckpt_lrs():
    return list(CKPT_LRS)


@pytest.fixture(scope="session")
def rows():
    """Ten training examples: prompt/target records (loss on the target) and plain texts (loss on all)."""
    out = [
        {"id": "a", "prompt": "w1 w2 w3", "target": " w4"},
        {"id": "b", "prompt": "w5 w6", "target": " w7 w8"},
        {"id": "c", "text": "w9 w10 w11 w12 w13"},
        {"id": "d", "prompt": "w1 w2 w3", "target": " w9"},
        {"id": "e", "text": "w20 w21"},
        {"id": "f", "prompt": "w30 w31 w32 w33 w34 w35", "target": " w36"},
        {"id": "g", "prompt": "w4", "target": " w3 w2 w1"},
        {"id": "h", "text": "w7 w7 w7 w7"},
        {"id": "i", "prompt": "w0 w1", "target": " w2"},
        {"id": "j", "text": "w38 w39 w37 w36 w35 w34 w33"},
    ]
    return out


def _encode(tok, row) -> tuple[list[int], list[int]]:
    if "prompt" in row:
        p = tok(row["prompt"])["input_ids"]
        t = tok(row["target"], add_special_tokens=False)["input_ids"]
        return p + t, [-100] * len(p) + t
    ids = tok(row["text"])["input_ids"]
    return ids, list(ids)


def _load_untied(folder: str):
    from transformers import GPT2LMHeadModel

    m = GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager")
    m.eval()
    if m.lm_head.weight is m.transformer.wte.weight:
        m.lm_head.weight = torch.nn.Parameter(m.transformer.wte.weight.detach().clone())
    return m


def bf_train_grads(folder: str, names: list[str], tok, rows) -> torch.Tensor:
    """[N, P] per-example gradients of the HF model's own loss, by a plain loop (float64)."""
    m = _load_untied(folder)
    params = dict(m.named_parameters(remove_duplicate=False))
    out = []
    for row in rows:
        ids, labels = _encode(tok, row)
        loss = m(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
        gs = torch.autograd.grad(loss, [params[n] for n in names])
        out.append(torch.cat([g.reshape(-1) for g in gs]).double())
    return torch.stack(out)


def bf_query_grad(folder: str, names: list[str], ids: list[int], positions: list[int]) -> torch.Tensor:
    """[P] gradient of -sum_j log p(ids[j] | ids[:j]) over positions, with the HF model."""
    m = _load_untied(folder)
    params = dict(m.named_parameters(remove_duplicate=False))
    logp = torch.log_softmax(m(input_ids=torch.tensor([ids])).logits[0].double(), -1)
    loss = -sum(logp[j - 1, ids[j]] for j in positions)
    gs = torch.autograd.grad(loss, [params[n] for n in names])
    return torch.cat([g.reshape(-1) for g in gs]).double()


@pytest.fixture(scope="session")
def brute():
    return SimpleNamespace(train_grads=bf_train_grads, query_grad=bf_query_grad, encode=_encode)
