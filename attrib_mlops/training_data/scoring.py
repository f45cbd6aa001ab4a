"""The scoring methods: TracIn-CP, gradient cosine and DataInf, over an index in row chunks.

With q_c the query gradient at checkpoint c (the gradient of minus the summed
log-probability of the selected target tokens), g_c,k the training gradient of
example k at checkpoint c, P the projection and lr_c the checkpoint's
learning rate:

* ``tracin``   s_k = sum_c lr_c <P q_c, P g_c,k>
* ``grad_cos`` s_k = sum_c w_c cos(P q_c, P g_c,k),  w_c = lr_c / sum_c' lr_c' (uniform if all are 0)
* ``datainf``  s_k = mean_c sum_l r_c,l . g_c,k,l  with, per layer l (one parameter tensor),
  lambda_l = damping * mean_i ||g_i,l||^2 / d_l and
  r_l = (1/n) sum_i (q_l - (q_l . g_i,l) / (lambda_l + ||g_i,l||^2) g_i,l) / lambda_l
  = [(1/n) sum_i (g_i,l g_i,l^T + lambda_l I)^-1] q_l  (Sherman-Morrison per example; DataInf, Kwon et al. 2024).

Every method is a pass (two for DataInf) of matrix-vector products over row
chunks, so memory stays at one chunk whatever the index size.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import TrainingIndexError
from .storage import TrainingIndex

__all__ = ["METHODS", "projected_scores", "tracin", "grad_cos", "datainf", "require_layers"]

METHODS = ("tracin", "grad_cos", "datainf")
_HALF_MAX_DIM = 16384  # |P q / max|P q|| . row <= dim must stay below float16's max (65504)


def projected_scores(index: TrainingIndex, c: int, queries: list[torch.Tensor], *, chunk_rows: int = 65536,
                     compute: str = "auto", device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """``[<P q, P g_c,k>]_k`` (float32 ``[N]``) for each projected query vector, in one pass over checkpoint ``c``.

    ``compute="auto"`` multiplies the float16 rows by the query scaled to max
    |q| = 1 in float16 on the CPU (float32 accumulation, result rounded to
    float16: relative error ~2^-12 per score, the order of the float16 storage
    error itself); ``float32`` converts each chunk first (exact but ~10x slower).
    """
    device = torch.device(device)
    half = compute == "auto" and device.type == "cpu" and index.dim <= _HALF_MAX_DIM
    prepared = []
    for q in queries:
        q = q.to(device=device, dtype=torch.float32)
        qmax = float(q.abs().max()) or 1.0
        prepared.append(((q / qmax).to(torch.float16) if half else q, qmax if half else 1.0))
    outs = [torch.zeros(index.n_examples, dtype=torch.float32) for _ in queries]
    for start, g, s in index.row_chunks(c, chunk_rows):
        g = g.to(device)
        if not half:
            g = g.to(torch.float32)
        s = s.to(device)
        for out, (q, qmax) in zip(outs, prepared):
            out[start:start + g.shape[0]] = ((g @ q).to(torch.float32) * s * qmax).cpu()
    return outs


def tracin(index: TrainingIndex, q_proj: list[list[torch.Tensor]], **kw) -> list[np.ndarray]:
    """TracIn-CP scores for several queries; ``q_proj[c][j]`` = projected query j at checkpoint c."""
    n_q = len(q_proj[0])
    total = [np.zeros(index.n_examples, dtype=np.float64) for _ in range(n_q)]
    for c, lr in enumerate(index.learning_rates):
        for t, s in zip(total, projected_scores(index, c, q_proj[c], **kw)):
            t += lr * s.double().numpy()
    return [t.astype(np.float32) for t in total]


def grad_cos(index: TrainingIndex, q_proj: list[list[torch.Tensor]], **kw) -> list[np.ndarray]:
    """Learning-rate-weighted mean over checkpoints of cos(P q_c, P g_c,k)."""
    lrs = index.learning_rates
    w = [lr / sum(lrs) for lr in lrs] if sum(lrs) > 0 else [1 / len(lrs)] * len(lrs)
    n_q = len(q_proj[0])
    total = [np.zeros(index.n_examples, dtype=np.float64) for _ in range(n_q)]
    for c in range(len(lrs)):
        norms = index.norms(c).double().numpy()
        safe = np.where(norms > 0, norms, 1.0)
        for t, q, s in zip(total, q_proj[c], projected_scores(index, c, q_proj[c], **kw)):
            qn = float(q.double().norm()) or 1.0
            t += w[c] * np.where(norms > 0, s.double().numpy() / (safe * qn), 0.0)
    return [t.astype(np.float32) for t in total]


def require_layers(index: TrainingIndex) -> None:
    """Raise unless the index holds the unprojected per-layer gradients DataInf needs."""
    if not index.has_layers:
        raise TrainingIndexError(
            f"method 'datainf' needs unprojected per-layer gradients, which the index at '{index.path}' does not "
            "store; rebuild it with per_layer='always' (N x P x 2 bytes) or use 'tracin' or 'grad_cos'")


def datainf(index: TrainingIndex, q_layers: list[list[dict[str, torch.Tensor]]], *, damping: float = 0.1,
            chunk_rows: int = 65536, device: torch.device | str = "cpu", **_: object) -> list[np.ndarray]:
    """DataInf scores for several queries; ``q_layers[c][j]`` = unprojected per-layer query j at checkpoint c."""
    require_layers(index)
    device = torch.device(device)
    n = index.n_examples
    n_q = len(q_layers[0])
    total = [np.zeros(n, dtype=np.float64) for _ in range(n_q)]
    n_ck = len(index.checkpoints)
    for c in range(n_ck):
        sq_all = index.sqnorms(c).to(device=device, dtype=torch.float64)
        for li, p in enumerate(index.params):
            sq = sq_all[:, li]
            lam = damping * float(sq.mean()) / p.numel
            if lam <= 0:
                continue  # no gradient on this layer for any example: it contributes nothing
            vs = [q_layers[c][j][p.name].to(device=device, dtype=torch.float64) for j in range(n_q)]
            us = [torch.zeros_like(v) for v in vs]
            for start, g in index.layer_chunks(c, p.name, chunk_rows):
                g = g.to(device=device, dtype=torch.float64)
                den = lam + sq[start:start + g.shape[0]]
                for v, u in zip(vs, us):
                    u += g.t() @ ((g @ v) / den)
            rs = [(v - u / n) / lam for v, u in zip(vs, us)]
            for start, g in index.layer_chunks(c, p.name, chunk_rows):
                g = g.to(device=device, dtype=torch.float64)
                for t, r in zip(total, rs):
                    t[start:start + g.shape[0]] += (g @ r).cpu().numpy() / n_ck
    return [t.astype(np.float32) for t in total]
