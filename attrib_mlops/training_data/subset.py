"""Which parameters the gradients are taken of, and fingerprints of model and tokenizer.

Default subset: the last transformer blocks plus the output head, or every
LoRA adapter weight when the model carries PEFT adapters. Parameter names are
those of ``model.named_parameters(remove_duplicate=False)``, so a tied output
head keeps its own name (``lm_head.weight``) next to the input embedding
(``transformer.wte.weight``). Gradients are taken with ``functional_call(...,
tie_weights=False)``: the head's gradient is that of its use as the output
projection; the input-embedding use stays frozen like the blocks below (and
selecting the embedding's name takes the gradient of its input use only).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import torch

from attrib_mlops.errors import InputError

__all__ = ["ParamSpec", "select_params", "model_fingerprint", "tokenizer_fingerprint", "has_lora", "tied_groups"]


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of the subset: its name and shape."""

    name: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= int(s)
        return n

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "numel": self.numel}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParamSpec:
        return cls(str(d["name"]), tuple(int(s) for s in d["shape"]))


def _all_params(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return dict(model.named_parameters(remove_duplicate=False))


def has_lora(model: torch.nn.Module) -> bool:
    """True when the model carries LoRA adapter weights (PEFT)."""
    return any(".lora_" in n for n, _ in model.named_parameters())


def tied_groups(model: torch.nn.Module) -> list[list[str]]:
    """Names that share one tensor (tied weights), as groups of two or more."""
    by_id: dict[int, list[str]] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), []).append(n)
    return [g for g in by_id.values() if len(g) > 1]


def _blocks(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList] | None:
    """The ModuleList holding the most parameters (the transformer's stack of blocks)."""
    best, best_n = None, 0
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) > 0:
            n = sum(p.numel() for p in mod.parameters())
            if n > best_n:
                best, best_n = (name, mod), n
    return best


def _head_names(model: torch.nn.Module) -> list[str]:
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if head is None:
        return []
    for name, mod in model.named_modules(remove_duplicate=False):
        if mod is head:
            return [f"{name}.{n}" if name else n for n, _ in mod.named_parameters(recurse=False)]
    return []


def select_params(model: torch.nn.Module, patterns: list[str] | None = None, *, last_blocks: int = 1,
                  include_head: bool = True) -> list[ParamSpec]:
    """The parameter subset, in ``named_parameters`` order.

    Args:
        model: the model (a PEFT model selects its LoRA weights by default).
        patterns: explicit names or ``fnmatch`` patterns; None = default subset.
        last_blocks: number of last transformer blocks in the default subset.
        include_head: whether the default subset takes the output head.

    Raises:
        InputError: a pattern matching nothing, or an empty subset.

    Example:
        >>> from attrib_mlops.demo.tiny import build_tiny_model
        >>> m, _ = build_tiny_model(["a", "b"], n_layer=2, n_embd=8, n_head=2)
        >>> [p.name for p in select_params(m)][-1]
        'lm_head.weight'
    """
    params = _all_params(model)
    names = list(params)
    chosen: list[str]
    if patterns:
        chosen = []
        for pat in patterns:
            hits = [n for n in names if n == pat or fnmatch.fnmatchcase(n, pat)]
            if not hits:
                sample = ", ".join(names[:3] + ["..."] + names[-2:]) if len(names) > 5 else ", ".join(names)
                raise InputError(f"parameter pattern {pat!r} matches no parameter of the model ({sample})")
            chosen += [h for h in hits if h not in chosen]
        chosen = [n for n in names if n in set(chosen)]
    elif has_lora(model):
        chosen = [n for n in names if ".lora_" in n]
    else:
        chosen = []
        found = _blocks(model)
        if found is not None and last_blocks > 0:
            prefix, blocks = found
            first = max(0, len(blocks) - last_blocks)
            for i in range(first, len(blocks)):
                pre = f"{prefix}.{i}."
                chosen += [n for n in names if n.startswith(pre)]
        if include_head:
            chosen += [n for n in _head_names(model) if n not in chosen]
        chosen = [n for n in names if n in set(chosen)]
    if not chosen:
        raise InputError("the parameter subset is empty; pass params=[...] with parameter names or patterns")
    return [ParamSpec(n, tuple(params[n].shape)) for n in chosen]


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of the architecture: model type and every parameter's name and shape (not the weights)."""
    cfg = getattr(model, "config", None)
    arch = {
        "model_type": getattr(cfg, "model_type", type(model).__name__),
        "params": [[n, list(p.shape)] for n, p in model.named_parameters(remove_duplicate=False)],
    }
    return hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of the vocabulary and special tokens."""
    try:
        vocab = sorted(tokenizer.get_vocab().items())
    except Exception:  # noqa: BLE001 - tokenizers without get_vocab
        vocab = [[type(tokenizer).__name__, getattr(tokenizer, "vocab_size", None)]]
    special = sorted(str(t) for t in getattr(tokenizer, "all_special_tokens", []))
    blob = json.dumps({"vocab": vocab, "special": special}, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()
