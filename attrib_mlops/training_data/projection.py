"""Seeded random projection of per-example gradients.

``sjlt`` is a sparse sign projection (a count sketch): coordinate ``i`` of
parameter ``p`` is added, with a random sign ``s(p, i)``, to one random output
coordinate ``h(p, i)``. For any vectors x, y: E[<Px, Py>] = <x, y>, with
variance (||x||^2 ||y||^2 + <x, y>^2 - 2 sum_i x_i^2 y_i^2) / dim, no worse than a
dense Gaussian projection. No dense P x dim matrix exists anywhere: the hash and
the signs are drawn per parameter in chunks from a generator seeded by
(seed, parameter name, chunk number), cached up to a byte budget and redrawn
otherwise, so projecting costs O(P) per example and memory O(chunk).

``identity`` keeps the gradients as they are (the subset's parameters in order,
flattened): exact, for subsets no larger than the projection dimension.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import torch

from .subset import ParamSpec

__all__ = ["Projector"]

CHUNK = 1 << 20


def _chunk_seed(seed: int, name: str, chunk: int) -> int:
    digest = hashlib.sha256(f"{seed}:{name}:{chunk}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class Projector:
    """Projects per-layer gradients ``{name: [B, numel]}`` to ``[B, dim]``.

    Args:
        specs: the parameter subset, in order.
        dim: output dimension (ignored for ``identity``: the total size).
        seed: projection seed.
        kind: ``sjlt`` or ``identity``.
        chunk: parameter coordinates per generator draw (part of the projection's definition).
        cache_bytes: budget for cached hash/sign chunks (beyond it they are redrawn).

    Example:
        >>> import torch
        >>> from attrib_mlops.training_data.subset import ParamSpec
        >>> proj = Projector([ParamSpec("w", (3, 4))], dim=8, seed=0, kind="sjlt")
        >>> proj.project({"w": torch.ones(2, 12)}).shape
        torch.Size([2, 8])
    """

    def __init__(self, specs: list[ParamSpec], dim: int, seed: int, kind: Literal["sjlt", "identity"] = "sjlt",
                 *, chunk: int = CHUNK, cache_bytes: int = 256 * 1024**2):
        self.specs = list(specs)
        self.kind = kind
        self.seed = int(seed)
        self.total = sum(s.numel for s in self.specs)
        self.dim = self.total if kind == "identity" else int(dim)
        self.chunk = int(chunk)
        self.cache_bytes = int(cache_bytes)
        self._cache: dict[tuple[str, int, str], tuple[torch.Tensor, torch.Tensor]] = {}
        self._cached = 0

    def _hash(self, name: str, chunk: int, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (name, chunk, str(device))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        g = torch.Generator(device="cpu")
        g.manual_seed(_chunk_seed(self.seed, name, chunk))
        idx = torch.randint(0, self.dim, (length,), generator=g, dtype=torch.int64)
        sign = torch.randint(0, 2, (length,), generator=g, dtype=torch.int8).to(torch.float32).mul_(2).sub_(1)
        out = (idx.to(device), sign.to(device))
        size = length * 12
        if self._cached + size <= self.cache_bytes:
            self._cache[key] = out
            self._cached += size
        return out

    def project(self, grads: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, dim]`` float32 projection of per-example gradients (``[B, numel]`` or ``[B, *shape]`` each)."""
        first = grads[self.specs[0].name]
        b, device = first.shape[0], first.device
        flat = {s.name: grads[s.name].reshape(b, -1).to(torch.float32) for s in self.specs}
        if self.kind == "identity":
            return torch.cat([flat[s.name] for s in self.specs], dim=1)
        out = torch.zeros(b, self.dim, dtype=torch.float32, device=device)
        for s in self.specs:
            x = flat[s.name]
            for c, start in enumerate(range(0, s.numel, self.chunk)):
                stop = min(start + self.chunk, s.numel)
                idx, sign = self._hash(s.name, c, stop - start, device)
                out.index_add_(1, idx, x[:, start:stop] * sign)
        return out

    def matrix(self) -> torch.Tensor:
        """The dense ``[P, dim]`` matrix (tests and tiny subsets only)."""
        if self.kind == "identity":
            return torch.eye(self.total)
        rows = []
        for s in self.specs:
            for c, start in enumerate(range(0, s.numel, self.chunk)):
                stop = min(start + self.chunk, s.numel)
                idx, sign = self._hash(s.name, c, stop - start, torch.device("cpu"))
                m = torch.zeros(stop - start, self.dim)
                m[torch.arange(stop - start), idx] = sign
                rows.append(m)
        return torch.cat(rows)

    def fingerprint(self) -> str:
        """sha256 of the kind, dimension, seed and the first hash/sign draws of every parameter.

        Stored in the manifest; a query recomputes it, so a projection that
        would come out differently (another torch RNG) is caught, not used.
        """
        h = hashlib.sha256(f"{self.kind}:{self.dim}:{self.seed}:{self.chunk}".encode())
        if self.kind == "sjlt":
            for s in self.specs:
                idx, sign = self._hash(s.name, 0, min(s.numel, self.chunk), torch.device("cpu"))
                h.update(idx[:64].numpy().tobytes())
                h.update(sign[:64].numpy().tobytes())
        return h.hexdigest()

    def to_dict(self) -> dict:
        return {"kind": self.kind, "dim": self.dim, "seed": self.seed, "chunk": self.chunk,
                "fingerprint": self.fingerprint()}
