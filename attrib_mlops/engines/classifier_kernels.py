"""Batched building blocks for sequence classifiers (torch): class probabilities and per-class gradients.

The native methods (:mod:`attrib_mlops.engines.methods`) that declare the
``classifier`` model kind implement ``compute_classifier(run)`` with these and the
model-independent kernels of :mod:`.native_kernels` (integration path, attention
mean, occluded copies): one implementation of each kernel serves causal LMs and
classifiers. :class:`~attrib_mlops.engines.classifier.ClassifierEngine` pads the
samples and calls ``compute_classifier`` with a :class:`ClassifierRun`.

Every ``compute_classifier`` returns ``(cells, p0, per)``: ``cells`` [N, L, K] the
attributions of the K attributed classes (padded positions included),
``p0`` [N, C] the class probabilities of the unperturbed inputs and ``per`` the
attributed class indices of each sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch

from ..options import AttributeOptions
from .classifier_prep import ClassifierBatch, ClassifierForward
from .native_kernels import dim_agg

__all__ = ["ClassifierRun", "ClassifierOutputs", "class_probs", "column_grads", "gradients", "equal_length_groups"]

#: ``(cells [N, L, K], class probabilities [N, C], per-sample attributed classes)``.
ClassifierOutputs = tuple[torch.Tensor, torch.Tensor, list[list[int]]]


class ClassifierRun(NamedTuple):
    """One padded batch of a sequence classifier handed to a method's ``compute_classifier``."""

    model: Any
    tokenizer: Any
    fwd: ClassifierForward
    batch: ClassifierBatch
    x0: torch.Tensor  # [N, L, D] input embeddings (detached)
    options: AttributeOptions
    pooling: str  # "first" (encoders) or "last" (decoders)


def class_probs(run: ClassifierRun) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[list[int]]]:
    """``(p0, cols, valid, per)``: class probabilities of the unperturbed batch (no grad) and the columns they select."""
    with torch.no_grad():
        p0 = run.fwd(run.x0, run.batch.mask, run.batch.pos).softmax(-1)
    return (p0, *run.batch.columns(p0.argmax(-1)))


def equal_length_groups(batch: ClassifierBatch) -> list[tuple[torch.Tensor, slice]]:
    """``(sample indices, rows)`` of the batch's samples grouped by length, shortest first.

    ``x[idx, rows]`` is then an unpadded sub-batch (every mask entry 1): methods whose cost
    grows with the number of positions (integrated gradients runs ``n_steps`` forwards of
    each) skip the padding's compute. Right padding: ``rows`` starts at 0; left: at ``L - n``.
    """
    by_len: dict[int, list[int]] = {}
    for b, n in enumerate(batch.lengths):
        by_len.setdefault(n, []).append(b)
    dev = batch.ids.device
    return [(torch.tensor(idx, device=dev), slice(batch.L - n, batch.L) if batch.left else slice(0, n))
            for n, idx in sorted(by_len.items())]


def column_grads(probs: torch.Tensor, x: torch.Tensor, cols: torch.Tensor, valid: torch.Tensor,
                 weights: torch.Tensor | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(k, d probs[cols[:, k]] / d x)`` for every column k; ``weights`` [len(x)] scale each row's output."""
    K = cols.shape[1]
    for k in range(K):
        out = probs.gather(1, cols[:, k : k + 1]).squeeze(1) * valid[:, k].to(probs.dtype)
        if weights is not None:
            out = out * weights
        (g,) = torch.autograd.grad(out.sum(), x, retain_graph=k < K - 1)
        yield k, g


def gradients(run: ClassifierRun, cell: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> ClassifierOutputs:
    """Gradient methods: ``cell(grad, x0)`` per attributed class, reduced by ``options.dim_aggregation``.

    One forward serves the prediction and every class's gradient.
    """
    batch, x0 = run.batch, run.x0
    with torch.enable_grad():
        x = x0.clone().requires_grad_(True)
        probs = run.fwd(x, batch.mask, batch.pos).softmax(-1)
        p0 = probs.detach()
        cols, valid, per = batch.columns(p0.argmax(-1))
        cells = torch.zeros((batch.N, batch.L, cols.shape[1]), dtype=torch.float32)
        for k, g in column_grads(probs, x, cols, valid):
            cells[:, :, k] = dim_agg(cell(g, x0), run.options.dim_aggregation).cpu()
    return cells, p0, per
