"""Proof of correctness: the native fast path equals Inseq cell by cell.

Tolerance: both engines compute the same float32 quantities on the same model
and inputs; they differ only in the order of floating-point operations (one
forward over the full sequence with right padding and batched samples vs. one
forward per prefix, batch size 1). On these models that gives differences of a
few float32 ulps of the largest cell (observed < 1e-6 relative). We assert
``|native - inseq| <= 1e-4 * max|inseq| + 1e-7`` per cell, i.e. agreement to
four significant digits of the matrix scale, far below any difference a user
could see or a metric could react to, and identical NaN (future) masks.
Integrated gradients use the same baseline (UNK embedding), the same number of
steps and the same rule (Gauss-Legendre, Captum's default).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attrib_mlops import attribute
from attrib_mlops.engines.native import METHODS

RTOL = 1e-4
ATOL = 1e-7


def _assert_same(native, inseq):
    assert len(native) == len(inseq)
    for a, b in zip(native, inseq):
        assert a.source_tokens == b.source_tokens
        assert a.target_tokens == b.target_tokens
        assert a.shape == b.shape
        np.testing.assert_array_equal(np.isnan(a.matrix), np.isnan(b.matrix))
        scale = float(np.nanmax(np.abs(b.matrix)))
        assert scale > 0, "degenerate reference matrix"
        diff = float(np.nanmax(np.abs(a.matrix - b.matrix)))
        assert diff <= RTOL * scale + ATOL, f"{a.method}: max cell difference {diff:.3g} vs scale {scale:.3g}"
        np.testing.assert_allclose(a.step_scores["probability"], b.step_scores["probability"], rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(a.step_scores["entropy"], b.step_scores["entropy"], rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def trained(tiny):
    """The tiny model briefly trained (a copy; the session fixture stays random)."""
    import copy

    model, tok = tiny
    model = copy.deepcopy(model)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, len(tok), (32, 12), generator=g)
    ids[:, 6:] = ids[:, :6]  # a copy task: second half repeats the first
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, tok


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("which", ["random", "trained"])
def test_native_equals_inseq(method, which, tiny, trained, samples):
    model, tok = tiny if which == "random" else trained
    prompts, targets = samples
    kw = {"n_steps": 16} if method == "integrated_gradients" else {}
    native = attribute(model, tok, prompts, targets, methods=method, engine="native", batch_size=3, **kw)
    inseq = attribute(model, tok, prompts, targets, methods=method, engine="inseq", **kw)
    assert all(r.engine == "native" for r in native) and all(r.engine == "inseq" for r in inseq)
    _assert_same(native, inseq)


@pytest.mark.slow
def test_attention_layer_selection_matches_inseq(tiny, samples):
    model, tok = tiny
    prompts, targets = samples
    for layers, heads in ([[1], None], [[0], [0, 2]]):
        a = attribute(model, tok, prompts, targets, methods="attention", engine="native", layers=layers, heads=heads)
        b = attribute(model, tok, prompts, targets, methods="attention", engine="inseq", layers=layers, heads=heads)
        _assert_same(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("agg", ["sum", "mean"])
def test_dim_aggregations_match_inseq(agg, tiny, samples):
    model, tok = tiny
    prompts, targets = samples
    a = attribute(model, tok, prompts, targets, methods="input_x_gradient", engine="native", dim_aggregation=agg)
    b = attribute(model, tok, prompts, targets, methods="input_x_gradient", engine="inseq", dim_aggregation=agg)
    for x, y in zip(a, b):
        scale = float(np.nanmax(np.abs(y.matrix)))
        assert float(np.nanmax(np.abs(x.matrix - y.matrix))) <= RTOL * scale + ATOL
