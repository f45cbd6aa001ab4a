"""The seeded sparse sign projection: equals its explicit matrix, is seeded, preserves inner products."""

from __future__ import annotations

import pytest
import torch

from attrib_mlops.training_data.projection import Projector
from attrib_mlops.training_data.subset import ParamSpec

SPECS = [ParamSpec("a.weight", (30, 20)), ParamSpec("b.bias", (7,)), ParamSpec("c.weight", (1000,))]


def _grads(b: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {s.name: torch.randn((b, *s.shape), generator=g) for s in SPECS}


@pytest.mark.parametrize("chunk", [1 << 20, 64])  # one chunk per parameter, or many (chunk boundaries)
def test_projection_equals_its_matrix(chunk):
    proj = Projector(SPECS, dim=32, seed=3, kind="sjlt", chunk=chunk)
    g = _grads(5)
    flat = torch.cat([g[s.name].reshape(5, -1) for s in SPECS], dim=1)
    m = proj.matrix()
    assert m.shape == (sum(s.numel for s in SPECS), 32)
    assert set(m.abs().sum(dim=1).tolist()) == {1.0}  # one +-1 per coordinate
    torch.testing.assert_close(proj.project(g), flat @ m, rtol=1e-5, atol=1e-5)


def test_seeded_and_reproducible():
    a = Projector(SPECS, 32, seed=1).project(_grads(3))
    b = Projector(SPECS, 32, seed=1).project(_grads(3))
    c = Projector(SPECS, 32, seed=2).project(_grads(3))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert Projector(SPECS, 32, 1).fingerprint() == Projector(SPECS, 32, 1).fingerprint()
    assert Projector(SPECS, 32, 1).fingerprint() != Projector(SPECS, 32, 2).fingerprint()
    assert Projector(SPECS, 32, 1).fingerprint() != Projector(SPECS, 32, 1, chunk=64).fingerprint()


def test_inner_products_are_unbiased():
    """Mean of <Px, Py> over seeds -> <x, y>, within 4 standard errors of the count-sketch variance."""
    g = _grads(2, seed=7)
    x = torch.cat([g[s.name][0].reshape(-1) for s in SPECS]).double()
    y = torch.cat([g[s.name][1].reshape(-1) for s in SPECS]).double()
    y = y + 0.5 * x  # correlated, so <x, y> is far from 0
    dim, seeds = 64, 300
    est = []
    for seed in range(seeds):
        m = Projector(SPECS, dim, seed).matrix().double()
        est.append(float((x @ m) @ (y @ m)))
    est = torch.tensor(est, dtype=torch.float64)
    true = float(x @ y)
    var = (x.pow(2).sum() * y.pow(2).sum() + true**2 - 2 * (x.pow(2) * y.pow(2)).sum()) / dim
    assert abs(float(est.mean()) - true) < 4 * (float(var) / seeds) ** 0.5
    assert abs(float(est.var()) / float(var) - 1) < 0.3  # the variance formula of the docs holds


def test_identity_projection_is_the_concatenation():
    proj = Projector(SPECS, dim=10_000, seed=0, kind="identity")
    g = _grads(4)
    assert proj.dim == sum(s.numel for s in SPECS)
    torch.testing.assert_close(proj.project(g), torch.cat([g[s.name].reshape(4, -1) for s in SPECS], dim=1))
