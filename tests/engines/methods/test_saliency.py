"""Saliency against a brute-force reference: one autograd call per target token (the template for a method test)."""

from __future__ import annotations

import numpy as np
import torch

from attrib_mlops import attribute


def test_saliency_equals_per_target_autograd(tiny, samples):
    model, tok = tiny
    prompts, targets = samples
    results = attribute(model, tok, prompts, targets, methods="saliency", engine="native", batch_size=2)
    for r, p, t in zip(results, prompts, targets):
        ids = tok(p + t, return_tensors="pt")["input_ids"]
        n = r.n_prompt
        emb = model.get_input_embeddings()(ids).detach()
        for j in range(len(r.target_tokens)):
            x = emb.clone().requires_grad_(True)
            probs = model(inputs_embeds=x).logits[0, n - 1 + j].float().softmax(-1)
            (g,) = torch.autograd.grad(probs[ids[0, n + j]], x)
            expected = g[0, : n + j].abs().norm(dim=-1).numpy()
            np.testing.assert_allclose(r.matrix[: n + j, j], expected, rtol=1e-4, atol=1e-6)
            assert np.isnan(r.matrix[n + j :, j]).all()
            assert abs(float(r.step_scores["probability"][j]) - float(probs[ids[0, n + j]])) < 1e-5
