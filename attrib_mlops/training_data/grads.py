"""Per-example gradients of the training loss over a parameter subset.

``vmap`` mode: ``torch.func.vmap(torch.func.grad(loss))`` over a right-padded
batch, each example run by ``functional_call`` with its own batch dimension of
one. The model gets input embeddings and no attention mask: with causal
attention and right padding a real token never sees a pad, so the loss on real
tokens is exactly that of the unpadded example (and transformers' mask and
padding checks, which branch on tensor values, are skipped). For the duration
of the vmap call the attention implementation is switched to ``eager`` (SDPA
kernels have no batching rule and would run example by example) and restored
afterwards. ``loop``
mode: one ``torch.autograd.grad`` call per unpadded example, the fallback when a
model cannot run under vmap (data-dependent control flow, ``.item()``, in-place
ops on inputs). Both take the weights as an explicit dictionary, so the model
object is only a function: its parameters, flags and mode are not touched.

The per-example training loss is the negative log-likelihood of the tokens
whose label is not -100 (labels shifted by one, as a causal-LM head does),
averaged (``mean``) or summed (``sum``). The query loss is the summed negative
log-probability of the selected target tokens, i.e. minus the summed
log-probability LLM Attributor differentiates.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Literal

import torch
from torch.func import functional_call, grad, vmap

from .subset import ParamSpec

logger = logging.getLogger(__name__)

__all__ = ["GradComputer", "nll", "eager_attention"]


@contextlib.contextmanager
def eager_attention(model: torch.nn.Module):
    """Switch a transformers model to eager attention for the duration (restored after)."""
    cfg = getattr(model, "config", None)
    current = getattr(cfg, "_attn_implementation", None)
    setter = getattr(model, "set_attn_implementation", None)
    if not callable(setter) or current in (None, "eager") or not isinstance(current, str):
        yield
        return
    try:
        setter("eager")
    except Exception:  # noqa: BLE001 - a model that cannot switch keeps its implementation
        yield
        return
    try:
        yield
    finally:
        setter(current)


def nll(logits: torch.Tensor, labels: torch.Tensor, reduction: str) -> torch.Tensor:
    """Negative log-likelihood of one sequence: ``logits`` [T, V] predict ``labels`` [T] shifted by one."""
    lp = torch.log_softmax(logits[:-1].float(), dim=-1)
    lab = labels[1:]
    valid = lab >= 0
    picked = lp.gather(-1, torch.where(valid, lab, torch.zeros_like(lab))[:, None])[:, 0]
    total = -(picked * valid).sum()
    if reduction == "mean":
        return total / valid.sum().clamp(min=1)
    return total


def _logits(out: Any) -> torch.Tensor:
    """Logits ``[1, T, V]`` from a model output (transformers output, tuple or tensor)."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    return out[0]


class GradComputer:
    """Per-example gradients of a model's loss with respect to a parameter subset.

    Args:
        model: the model, used as a function of its weights (never modified).
        specs: the parameter subset.
        mode: ``vmap``, ``loop`` or ``auto`` (vmap, falling back to the loop once
            and for all if the model cannot run under vmap).
        loss_reduction: ``mean`` or ``sum`` over the loss tokens of an example.
        max_grad_bytes: memory bound of one batch of float32 per-example gradients.

    Example:
        >>> import torch
        >>> from attrib_mlops.demo.tiny import build_tiny_model
        >>> from attrib_mlops.training_data.subset import select_params
        >>> m, _ = build_tiny_model(["a", "b"], n_layer=1, n_embd=8, n_head=2)
        >>> gc = GradComputer(m, select_params(m))
        >>> w = {n: p.detach() for n, p in m.named_parameters(remove_duplicate=False)}
        >>> g = gc.per_example(w, [[4, 5, 4]], [[-100, 5, 4]])
        >>> g["lm_head.weight"].shape
        torch.Size([1, 48])
    """

    def __init__(self, model: torch.nn.Module, specs: list[ParamSpec], *,
                 mode: Literal["auto", "vmap", "loop"] = "auto", loss_reduction: str = "mean",
                 max_grad_bytes: int = 512 * 1024**2):
        self.model = model
        self.specs = list(specs)
        self.names = [s.name for s in self.specs]
        self.mode = mode
        self.loss_reduction = loss_reduction
        per_example_bytes = 4 * sum(s.numel for s in self.specs)
        self.micro_batch = max(1, int(max_grad_bytes) // max(per_example_bytes, 1))
        self._kwargs: dict[str, Any] = {"use_cache": False} if getattr(model, "config", None) is not None else {}
        pad = getattr(getattr(model, "config", None), "pad_token_id", None)
        self.pad_id = int(pad) if isinstance(pad, int) and pad >= 0 else 0
        self.device = next(model.parameters()).device
        self.embed_name = self._embedding_weight_name()

    def _embedding_weight_name(self) -> str | None:
        get = getattr(self.model, "get_input_embeddings", None)
        try:
            emb = get() if callable(get) else None
        except Exception:  # noqa: BLE001
            emb = None
        if emb is None or not hasattr(emb, "weight"):
            return None
        for name, mod in self.model.named_modules(remove_duplicate=False):
            if mod is emb:
                self._embed_module = emb
                return f"{name}.weight" if name else "weight"
        return None

    # -- the loss of one example, as a function of the subset's weights
    def _loss(self, sub: dict[str, torch.Tensor], rest: dict[str, torch.Tensor], ids: torch.Tensor,
              mask: torch.Tensor, labels: torch.Tensor, reduction: str) -> torch.Tensor:
        out = functional_call(self.model, {**rest, **sub}, (ids[None],),
                              {"attention_mask": mask[None], **self._kwargs}, tie_weights=False)
        return nll(_logits(out)[0], labels, reduction)

    def _loss_embeds(self, sub: dict[str, torch.Tensor], rest: dict[str, torch.Tensor], ids: torch.Tensor,
                     labels: torch.Tensor, reduction: str) -> torch.Tensor:
        weights = {**rest, **sub}
        emb = functional_call(self._embed_module, {"weight": weights[self.embed_name]}, (ids[None],))
        out = functional_call(self.model, weights, (), {"inputs_embeds": emb, **self._kwargs}, tie_weights=False)
        return nll(_logits(out)[0], labels, reduction)

    def _split(self, weights: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        sub = {n: weights[n].detach() for n in self.names}
        rest = {n: w.detach() for n, w in weights.items() if n not in sub}
        return sub, rest

    def _vmap(self, sub, rest, ids, mask, labels, reduction):
        with eager_attention(self.model):
            if self.embed_name is not None:
                fn = vmap(grad(self._loss_embeds), in_dims=(None, None, 0, 0, None))
                return fn(sub, rest, ids, labels, reduction)
            fn = vmap(grad(self._loss), in_dims=(None, None, 0, 0, 0, None))
            return fn(sub, rest, ids, mask, labels, reduction)

    def _loop(self, sub, rest, ids, mask, labels, reduction):
        outs: dict[str, list[torch.Tensor]] = {n: [] for n in self.names}
        for b in range(ids.shape[0]):
            n = int(mask[b].sum())
            leaves = {k: v.detach().requires_grad_(True) for k, v in sub.items()}
            loss = self._loss(leaves, rest, ids[b, :n], mask[b, :n], labels[b, :n], reduction)
            gs = torch.autograd.grad(loss, [leaves[k] for k in self.names], allow_unused=True)
            for k, g in zip(self.names, gs):
                outs[k].append(torch.zeros_like(leaves[k]) if g is None else g.detach())
        return {k: torch.stack(v) for k, v in outs.items()}

    def _batch(self, seqs: list[list[int]], labels: list[list[int]]):
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        lab = torch.full((len(seqs), width), -100, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, (s, l) in enumerate(zip(seqs, labels)):
            ids[r, : len(s)] = torch.as_tensor(s, dtype=torch.long)
            lab[r, : len(l)] = torch.as_tensor(l, dtype=torch.long)
            mask[r, : len(s)] = 1
        return ids.to(self.device), mask.to(self.device), lab.to(self.device)

    def _run(self, weights, seqs, labels, reduction) -> dict[str, torch.Tensor]:
        sub, rest = self._split(weights)
        ids, mask, lab = self._batch(seqs, labels)
        with torch.enable_grad():
            if self.mode in ("auto", "vmap"):
                try:
                    return self._vmap(sub, rest, ids, mask, lab, reduction)
                except Exception as e:  # noqa: BLE001 - any failure of the model under vmap
                    if self.mode == "vmap":
                        raise
                    logger.warning("per-example gradients: the model cannot run under torch.func.vmap "
                                   "(%s: %s); using one autograd call per example", type(e).__name__, e)
                    self.mode = "loop"
            return self._loop(sub, rest, ids, mask, lab, reduction)

    def per_example(self, weights: dict[str, torch.Tensor], seqs: list[list[int]],
                    labels: list[list[int]]) -> dict[str, torch.Tensor]:
        """``{name: [B, numel]}`` float32 gradients of each example's training loss."""
        parts: dict[str, list[torch.Tensor]] = {n: [] for n in self.names}
        for start in range(0, len(seqs), self.micro_batch):
            stop = start + self.micro_batch
            g = self._run(weights, seqs[start:stop], labels[start:stop], self.loss_reduction)
            for n in self.names:
                parts[n].append(g[n].reshape(g[n].shape[0], -1).to(torch.float32))
        return {n: v[0] if len(v) == 1 else torch.cat(v) for n, v in parts.items()}

    def query(self, weights: dict[str, torch.Tensor], ids: list[int], positions: list[int]) -> dict[str, torch.Tensor]:
        """``{name: [numel]}`` float32 gradient of -sum_j log p(ids[j] | ids[:j]) over ``positions``."""
        labels = [-100] * len(ids)
        for j in positions:
            labels[j] = ids[j]
        g = self._run(weights, [ids], [labels], "sum")
        return {n: g[n].reshape(-1).to(torch.float32) for n in self.names}
