"""Batched building blocks of the native engine (torch): padding, scoring, per-target gradients.

The native methods (:mod:`attrib_mlops.engines.methods`) are written with these;
:class:`~attrib_mlops.engines.native.NativeEngine` batches the samples and calls
each method's ``compute(run)`` with a :class:`Run`. See the native engine's module
docstring for why one forward pass serves every target position.

The model-independent kernels (:func:`dim_agg`, :func:`path_gradient_sums`,
:func:`mean_attention`, :func:`occluded_copies`, :func:`eager_attention`) serve the
causal LM and the sequence-classifier side (:mod:`.classifier_kernels`) alike: one
implementation of each.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import torch

from ..errors import InputError, UnsupportedMethodError
from ..options import AttributeOptions
from .prep import Encoded, model_device, model_guard

__all__ = [
    "Batch", "Scorer", "Run", "Outputs", "integration_points", "prob_entropy", "dim_agg", "empty_matrices",
    "fill_column", "split_scores", "baseline_embeddings", "token_baseline", "use_vmap", "per_target_grads", "gradients",
    "step_scores", "chunks", "progress", "path_gradient_sums", "mean_attention", "occluded_copies",
    "eager_attention",
]

#: What a native method returns for a batch: per sample the matrix, the target probabilities and entropies.
Outputs = tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]


def integration_points(n_steps: int, rule: str) -> tuple[list[float], list[float]]:
    """Alphas and step weights of an integration rule on [0, 1] (Captum's definitions)."""
    n = n_steps
    if rule == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(n)
        return list(0.5 * (x + 1.0)), list(0.5 * w)
    if rule == "riemann_trapezoid":
        if n < 2:
            raise InputError("riemann_trapezoid needs n_steps >= 2")
        alphas = list(np.linspace(0.0, 1.0, n))
        w = [1.0 / n] * n  # Captum's weights (they sum to (n-1)/n)
        w[0] = w[-1] = 1.0 / (2 * n)
        return alphas, w
    if rule == "riemann_left":
        return list(np.linspace(0.0, 1.0 - 1.0 / n, n)), [1.0 / n] * n
    if rule == "riemann_right":
        return list(np.linspace(1.0 / n, 1.0, n)), [1.0 / n] * n
    if rule == "riemann_middle":
        return list(np.linspace(1.0 / (2 * n), 1.0 - 1.0 / (2 * n), n)), [1.0 / n] * n
    raise InputError(f"unknown integration rule {rule!r}")


class Batch:
    """Right-padded samples. Right padding is exact for causal models: real
    tokens never attend to the padding that follows them, and positions are
    unchanged."""

    def __init__(self, samples: list[Encoded], pad_id: int, device: torch.device):
        self.samples = samples
        self.lengths = [len(s.ids) for s in samples]
        self.n_prompt = [s.n_prompt for s in samples]
        self.n_target = [s.n_target for s in samples]
        L = max(self.lengths)
        T = max(self.n_target)
        ids = torch.full((len(samples), L), pad_id, dtype=torch.long)
        mask = torch.zeros((len(samples), L), dtype=torch.long)
        pos = torch.zeros((len(samples), T), dtype=torch.long)
        tgt = torch.zeros((len(samples), T), dtype=torch.long)
        valid = torch.zeros((len(samples), T), dtype=torch.bool)
        for b, s in enumerate(samples):
            ids[b, : len(s.ids)] = torch.tensor(s.ids)
            mask[b, : len(s.ids)] = 1
            t = s.n_target
            pos[b, :t] = torch.arange(s.n_prompt - 1, s.n_prompt - 1 + t)
            tgt[b, :t] = torch.tensor(s.ids[s.n_prompt :])
            valid[b, :t] = True
        self.ids, self.mask = ids.to(device), mask.to(device)
        self.pos, self.tgt, self.valid = pos.to(device), tgt.to(device), valid.to(device)
        self.L, self.T = L, T


class Scorer:
    """Target probabilities from input embeddings, via the cheapest exact route."""

    def __init__(self, model: Any, split: bool):
        self.model = model
        self.split = split
        if split:
            self.body = model.base_model
            self.head = model.get_output_embeddings()

    def hidden(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-position states from which target logits are read (hidden or logits)."""
        if self.split:
            return self.body(inputs_embeds=x, attention_mask=mask).last_hidden_state
        return self.model(inputs_embeds=x, attention_mask=mask).logits

    def logits_at(self, h: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Float32 logits at ``pos`` ([N, K] positions) -> [N, K, V]."""
        g = h.gather(1, pos.unsqueeze(-1).expand(*pos.shape, h.shape[-1]))
        if self.split:
            g = self.head(g)
        return g.float()


class Run(NamedTuple):
    """One batch handed to a native method's ``compute``."""

    model: Any
    tokenizer: Any
    scorer: Scorer
    batch: Batch
    options: AttributeOptions


def prob_entropy(logits: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logp = logits.log_softmax(-1)
    p = logp.exp()
    prob = p.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    ent = -(p * logp).nansum(-1)
    return prob, ent


def dim_agg(v: torch.Tensor, how: str) -> torch.Tensor:
    v = v.float()
    if how == "l2":
        return torch.linalg.vector_norm(v, dim=-1)
    if how == "sum":
        return v.sum(-1)
    return v.mean(-1)


def path_gradient_sums(
    x0: torch.Tensor, base: torch.Tensor, options: AttributeOptions, n_cols: int,
    grads: Callable[[torch.Tensor, Callable[[torch.Tensor], torch.Tensor], torch.Tensor],
                    Iterator[tuple[int, torch.Tensor]]],
) -> torch.Tensor:
    """Integrated gradients' weighted gradient sums along the path ``base -> x0``: [n_cols, N, L, D] (float32).

    The interpolation steps of every sample are batched, ``options.max_tokens_per_forward``
    tokens per forward; ``grads(xs, rep, weights)`` yields ``(column, d out_column / d xs)``
    for the stacked points ``xs`` [S*N, L, D], where ``rep`` repeats a per-sample tensor
    for the S steps and ``weights`` [S*N] are the integration weights to scale each output by.
    Multiply by ``x0 - base`` for the attributions.
    """
    alphas, steps = integration_points(options.n_steps, options.ig_method)
    N, L = x0.shape[0], x0.shape[1]
    total = torch.zeros((n_cols, N, L, x0.shape[-1]), dtype=torch.float32, device=x0.device)
    per_fwd = max(1, options.max_tokens_per_forward // max(1, N * L))
    with torch.enable_grad():
        for s0 in range(0, len(alphas), per_fwd):
            a = torch.tensor(alphas[s0 : s0 + per_fwd], dtype=x0.dtype, device=x0.device)
            w = torch.tensor(steps[s0 : s0 + per_fwd], dtype=torch.float32, device=x0.device)
            S = a.shape[0]
            xs = (base.unsqueeze(0) + a.view(S, 1, 1, 1) * (x0 - base).unsqueeze(0)).reshape(S * N, L, -1)
            xs = xs.detach().requires_grad_(True)
            rep = lambda t: t.unsqueeze(0).expand(S, *t.shape).reshape(S * N, *t.shape[1:])  # noqa: E731
            for j, g in grads(xs, rep, w.repeat_interleave(N)):
                total[j] += g.float().reshape(S, N, L, -1).sum(0)
    return total


@contextlib.contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    """Switch to eager attention (the only one that returns weights) for the duration."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    switch = impl not in (None, "eager") and hasattr(model, "set_attn_implementation")
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(impl)


def mean_attention(model: Any, atts: Any, options: AttributeOptions) -> torch.Tensor:
    """Attention weights averaged over ``options.layers`` and ``options.heads``: [N, L(query), L(key)] float32.

    Raises:
        UnsupportedMethodError: the model returned no attention weights.
        InputError: a layer or head index out of range.
    """
    if not atts or atts[0] is None:
        raise UnsupportedMethodError(
            f"{type(model).__name__} returned no attention weights; load it with attn_implementation='eager'"
        )
    n_layers = len(atts)
    layers = options.layers if options.layers is not None else list(range(n_layers))
    try:
        sel = torch.stack([atts[i] for i in layers])  # [l, N, H, L, L]
    except IndexError:
        raise InputError(f"layers={options.layers} out of range: the model has {n_layers} layers") from None
    if options.heads is not None:
        H = sel.shape[2]
        if any(h >= H or h < -H for h in options.heads):
            raise InputError(f"heads={options.heads} out of range: the model has {H} heads")
        sel = sel[:, :, options.heads]
    return sel.float().mean(dim=(0, 2))


def occluded_copies(x0: torch.Tensor, base: torch.Tensor, jobs: list[tuple[int, int]], per_fwd: int,
                    ) -> Iterator[tuple[list[tuple[int, int]], torch.Tensor, torch.Tensor, torch.Tensor]]:
    """For each slice of ``jobs`` ((sample, position) pairs): ``(part, samples, positions, copies)``.

    ``copies`` [len(part), L, D] are the samples' embeddings with that one position replaced
    by the baseline's; at most ``per_fwd`` copies per slice (one forward each).
    """
    for k0 in range(0, len(jobs), per_fwd):
        part = jobs[k0 : k0 + per_fwd]
        bs = torch.tensor([b for b, _ in part], device=x0.device)
        rows = torch.tensor([i for _, i in part], device=x0.device)
        xs = x0[bs].clone()
        ar = torch.arange(len(part), device=x0.device)
        xs[ar, rows] = base[bs, rows]
        yield part, bs, rows, xs


def empty_matrices(batch: Batch) -> list[np.ndarray]:
    out = []
    for b in range(len(batch.samples)):
        m = np.full((batch.lengths[b], batch.n_target[b]), np.nan, dtype=np.float32)
        out.append(m)
    return out

def fill_column(mats: list[np.ndarray], batch: Batch, j: int, cells: np.ndarray) -> None:
    """cells: [N, L] scores for target j; keep rows 0..n_prompt+j-1."""
    for b in range(len(batch.samples)):
        if j < batch.n_target[b]:
            upto = batch.n_prompt[b] + j
            mats[b][:upto, j] = cells[b, :upto]

def split_scores(batch: Batch, prob: torch.Tensor, ent: torch.Tensor) -> tuple[list[np.ndarray], list[np.ndarray]]:
    p, e = prob.detach().cpu().numpy(), ent.detach().cpu().numpy()
    return [p[b, : batch.n_target[b]] for b in range(len(batch.samples))], [
        e[b, : batch.n_target[b]] for b in range(len(batch.samples))
    ]

def token_baseline(model: Any, tokenizer: Any, ids: torch.Tensor, keep: torch.Tensor, x0: torch.Tensor,
                   options: AttributeOptions) -> torch.Tensor:
    """Reference embeddings: ``zeros``, or ``unk`` = the unknown token's embedding wherever ``keep`` is False.

    Raises:
        InputError: ``baseline='unk'`` with a tokenizer that has no unknown token.
    """
    if options.baseline == "zeros":
        return torch.zeros_like(x0)
    unk = tokenizer.unk_token_id
    if unk is None:
        raise InputError(
            "baseline='unk' needs a tokenizer with an unknown token (tokenizer.unk_token_id is None); "
            "pass baseline='zeros'"
        )
    base_ids = torch.where(keep, ids, torch.full_like(ids, unk))
    return model.get_input_embeddings()(base_ids).detach()


def baseline_embeddings(model, tokenizer, batch: Batch, x0: torch.Tensor, options: AttributeOptions) -> torch.Tensor:
    """Causal LMs: the ``unk`` baseline keeps EOS tokens as they are (Inseq's convention)."""
    eos = tokenizer.eos_token_id
    keep = batch.ids == eos if eos is not None else torch.zeros_like(batch.ids, dtype=torch.bool)
    return token_baseline(model, tokenizer, batch.ids, keep, x0, options)


def use_vmap(options: AttributeOptions, device: torch.device) -> bool:
    return options.vjp == "vmap" or (options.vjp == "auto" and device.type == "cuda")

def per_target_grads(
    scorer: Scorer, x: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, tgt: torch.Tensor,
    valid: torch.Tensor, weights: torch.Tensor | None, use_vmap: bool,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (j, d prob_j / d x, prob_j, entropy_j) for every target column j.

    ``weights`` ([N]) scales each sequence's output (integration weights).
    """
    h = scorer.hidden(x, mask)
    T = pos.shape[1]
    go_scale = valid.to(x.dtype)
    if weights is not None:
        go_scale = go_scale * weights.to(x.dtype).unsqueeze(1)
    if use_vmap:
        logits = scorer.logits_at(h, pos)
        prob, ent = prob_entropy(logits, tgt)
        eye = torch.eye(T, dtype=prob.dtype, device=prob.device)
        go = eye.unsqueeze(1) * go_scale.to(prob.dtype).unsqueeze(0)  # [T, N, T]
        (g,) = torch.autograd.grad(prob, x, grad_outputs=go, is_grads_batched=True)
        for j in range(T):
            yield j, g[j], prob[:, j].detach(), ent[:, j].detach()
        return
    for j in range(T):
        logits = scorer.logits_at(h, pos[:, j : j + 1])
        prob, ent = prob_entropy(logits, tgt[:, j : j + 1])
        (g,) = torch.autograd.grad(
            prob.squeeze(1), x, grad_outputs=go_scale[:, j].to(prob.dtype), retain_graph=j < T - 1
        )
        yield j, g, prob[:, 0].detach(), ent[:, 0].detach()


def gradients(run: Run, cell: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Outputs:
    """Gradient methods: ``cell(grad, x0)`` per target column, reduced by ``options.dim_aggregation``."""
    model, scorer, batch, options = run.model, run.scorer, run.batch, run.options
    mats = empty_matrices(batch)
    x0 = model.get_input_embeddings()(batch.ids).detach()
    prob = torch.zeros(batch.pos.shape, dtype=torch.float32)
    ent = torch.zeros_like(prob)
    with torch.enable_grad():
        x = x0.clone().requires_grad_(True)
        vmap = use_vmap(options, x.device)
        for j, g, p, e in per_target_grads(scorer, x, batch.mask, batch.pos, batch.tgt, batch.valid, None, vmap):
            cells = dim_agg(cell(g, x0), options.dim_aggregation).cpu().numpy()
            fill_column(mats, batch, j, cells)
            prob[:, j], ent[:, j] = p.cpu(), e.cpu()
    probs, ents = split_scores(batch, prob, ent)
    return mats, probs, ents


def step_scores(model: Any, tokenizer: Any, samples: list[Encoded], batch_size: int = 8) -> list[dict[str, np.ndarray]]:
    """Probability and entropy of each target token under teacher forcing (no grad)."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    out: list[dict[str, np.ndarray]] = []
    with model_guard(model), torch.no_grad():
        for chunk in chunks(samples, batch_size):
            batch = Batch(chunk, pad_id, model_device(model))
            logits = model(input_ids=batch.ids, attention_mask=batch.mask).logits
            g = logits.gather(1, batch.pos.unsqueeze(-1).expand(*batch.pos.shape, logits.shape[-1])).float()
            prob, ent = prob_entropy(g, batch.tgt)
            p, e = split_scores(batch, prob, ent)
            out.extend({"probability": pp, "entropy": ee} for pp, ee in zip(p, e))
    return out


def chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class _NullBar:
    def update(self, n: int) -> None:  # noqa: D401
        pass

    def close(self) -> None:
        pass


def progress(total: int, desc: str, show: bool):
    if not show:
        return _NullBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="sample")

