"""PEFT models: the default subset is the LoRA adapters; adapter checkpoints are bound without touching the model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

peft = pytest.importorskip("peft", reason="the [lora] extra (peft) is installed by scripts/install.sh")

LRS = [0.1, 0.05]


@pytest.fixture(scope="module")
def lora(tiny, tmp_path_factory):
    from peft import LoraConfig, get_peft_model

    base, tok = tiny
    cfg = LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"], fan_in_fan_out=True, lora_dropout=0.0)
    model = get_peft_model(copy.deepcopy(base), cfg)
    model.eval()
    root = tmp_path_factory.mktemp("lora")
    folders = []
    for k in range(2):
        ck = copy.deepcopy(model)
        g = torch.Generator().manual_seed(10 + k)
        with torch.no_grad():
            for n, p in ck.named_parameters():
                if "lora_" in n:  # B starts at zero: give both factors values so both have gradients
                    p.copy_(0.2 * torch.randn(p.shape, generator=g))
        ck.save_pretrained(str(root / f"checkpoint-{k + 1}"))
        folders.append(str(root / f"checkpoint-{k + 1}"))
    return model, tok, folders


def _brute(model, folder, tok, rows, brute, prompt, target):
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    m = copy.deepcopy(model)
    set_peft_model_state_dict(m, load_file(f"{folder}/adapter_model.safetensors"))
    params = {n: p for n, p in m.named_parameters() if "lora_" in n}
    G = []
    for row in rows:
        ids, labels = brute.encode(tok, row)
        loss = m(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss
        G.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(params.values()))]).double())
    ids = tok(prompt + target)["input_ids"]
    n = len(tok(prompt)["input_ids"])
    logp = torch.log_softmax(m(input_ids=torch.tensor([ids])).logits[0].double(), -1)
    q = torch.autograd.grad(-sum(logp[j - 1, ids[j]] for j in range(n, len(ids))), list(params.values()))
    return torch.stack(G), torch.cat([g.reshape(-1) for g in q]).double(), list(params)


def test_lora_index_equals_brute_force_and_leaves_the_model(lora, rows, brute, tmp_path):
    from attrib_mlops.training_data import attribute_training_data, build_training_index

    model, tok, folders = lora
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    idx = build_training_index(folders, tok, rows, learning_rates=LRS, model=model, out_dir=str(tmp_path / "i"),
                               show_progress=False)
    names = [p.name for p in idx.params]
    assert names and all(".lora_" in n for n in names) and idx.manifest["selection"]["lora"]
    assert idx.manifest["projection"]["kind"] == "identity"  # 2 layers x (2x32 + 96x2) adapter weights
    res = attribute_training_data(idx, model, tok, "w1 w2 w3", " w4 w9", method="tracin")
    want = 0
    for lr, folder in zip(LRS, folders):
        G, q, bnames = _brute(model, folder, tok, rows, brute, "w1 w2 w3", " w4 w9")
        assert bnames == names
        want = want + lr * (G @ q)
    want = want.numpy()
    assert np.abs(res.scores - want).max() <= 5e-3 * np.abs(want).max()
    di = attribute_training_data(idx, model, tok, "w1 w2 w3", " w4 w9", method="datainf")
    assert np.isfinite(di.scores).all() and np.abs(di.scores).max() > 0
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n  # adapter checkpoints were bound functionally, not loaded
