"""Queries: which training examples drove the selected target tokens of a prompt's continuation."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attrib_mlops._util import package_versions
from attrib_mlops.engines.prep import (
    context_limit,
    encode_samples,
    generate_targets,
    load_model_and_tokenizer,
    model_guard,
)
from attrib_mlops.errors import InputError, UnknownMethodError
from attrib_mlops.options import AttributeOptions

from .checkpoints import bind_weights, quiet_loading, read_weights, resolve_checkpoint
from .compat import check_model, check_projection, check_tokenizer
from .errors import CheckpointError, NoTrainingIndexError, TargetTokenError, TrainingIndexError
from .grads import GradComputer
from .options import QueryOptions, parse_query_options
from .projection import CHUNK, Projector
from .result import TrainingDataAttribution
from .scoring import METHODS, datainf, grad_cos, require_layers, tracin
from .storage import TrainingIndex

__all__ = ["Query", "open_index", "prepare_query", "select_positions", "query_gradients", "score_queries",
           "load_query_model", "attribute_training_data"]


@dataclass
class Query:
    """An encoded query: token ids of prompt + target and the positions whose log-probability is attributed."""

    prompt: str
    target: str
    ids: list[int]
    n_prompt: int
    selected: list[int]
    target_tokens: list[str]

    @property
    def positions(self) -> list[int]:
        return [self.n_prompt + j for j in self.selected]


def open_index(index: Any) -> TrainingIndex:
    """A :class:`TrainingIndex` from an index object or a folder."""
    if isinstance(index, TrainingIndex):
        return index
    if isinstance(index, (str, os.PathLike)) and Path(index).is_dir():
        return TrainingIndex(index)
    raise NoTrainingIndexError(f"no training-data index folder at '{index}'; give a TrainingIndex, an index folder "
                               "or (through attrib_mlops.attribute_training_data) an MLflow run id")


def select_positions(target_tokens: Any, n_target: int, target: str) -> list[int]:
    """Validated 0-based target token positions (None = all)."""
    if target_tokens is None:
        return list(range(n_target))
    sel = [target_tokens] if isinstance(target_tokens, (int, np.integer)) else list(target_tokens)
    if not sel:
        raise TargetTokenError("target_tokens is empty; give target token positions (0-based) or None for all")
    out = []
    for j in sel:
        if isinstance(j, bool) or not isinstance(j, (int, np.integer)):
            raise TargetTokenError(f"target token position {j!r} is not an integer")
        if not 0 <= int(j) < n_target:
            raise TargetTokenError(f"target token {int(j)} is out of range: the target {target!r} has {n_target} "
                                   f"token{'s' if n_target != 1 else ''} (valid positions 0..{n_target - 1})")
        out.append(int(j))
    return sorted(set(out))


def prepare_query(model: Any, tokenizer: Any, prompt: str, target: str | None, target_tokens: Any,
                  opts: QueryOptions) -> Query:
    """Encode prompt + target (generating the target greedily when None) and select the attributed tokens."""
    if not isinstance(prompt, str):
        raise InputError(f"prompt must be a string, got {type(prompt).__name__}")
    limit = context_limit(model)
    if target is None:
        target = generate_targets(model, tokenizer, [prompt], opts.max_new_tokens, limit)[0]
    enc = encode_samples(tokenizer, [prompt], [target], limit=limit)[0]
    sel = select_positions(target_tokens, enc.n_target, target)
    toks = tokenizer.convert_ids_to_tokens(enc.ids[enc.n_prompt:])
    return Query(prompt, target, list(enc.ids), enc.n_prompt, sel, [str(t) for t in toks])


def _weights_folder(index: TrainingIndex, c: int, opts: QueryOptions) -> tuple[Path, str]:
    ck = index.checkpoints[c]
    if opts.checkpoints is not None:
        if len(opts.checkpoints) != len(index.checkpoints):
            raise InputError(f"checkpoints: got {len(opts.checkpoints)} locations for the index's "
                             f"{len(index.checkpoints)} checkpoints; give one per checkpoint, in order")
        return resolve_checkpoint(opts.checkpoints[c]), opts.checkpoints[c]
    folder = ck.get("folder")
    if folder and Path(folder).is_dir():
        return Path(folder), ck["ref"]
    try:
        return resolve_checkpoint(ck["ref"]), ck["ref"]
    except CheckpointError:
        raise CheckpointError(
            f"the weights of indexed checkpoint '{ck['name']}' are no longer at '{folder or ck['ref']}'; pass "
            "checkpoints=[...] with their current locations (one per indexed checkpoint)") from None


def query_gradients(index: TrainingIndex, model: Any, queries: list[Query], opts: QueryOptions, *,
                    layers: bool) -> tuple[list[list[torch.Tensor]], list[list[dict[str, torch.Tensor]]] | None]:
    """Projected (and, with ``layers``, unprojected per-layer) query gradients at every checkpoint.

    Returns ``(q_proj[c][j], q_layers[c][j])``.
    """
    specs = index.params
    pj = index.manifest["projection"]
    projector = Projector(specs, pj["dim"], pj["seed"], pj["kind"], chunk=pj.get("chunk", CHUNK))
    check_projection(index, projector.to_dict())
    gc = GradComputer(model, specs, mode=opts.per_example)
    q_proj: list[list[torch.Tensor]] = []
    q_layers: list[list[dict[str, torch.Tensor]]] | None = [] if layers else None
    from tqdm.auto import tqdm

    with model_guard(model):
        for c in tqdm(range(len(index.checkpoints)), desc="query gradients", disable=not opts.show_progress):
            folder, ref = _weights_folder(index, c, opts)
            state, partial = read_weights(folder)
            weights = bind_weights(model, state, required=[s.name for s in specs], partial=partial,
                                   where=f"checkpoint '{ref}'")
            per_q = [gc.query(weights, q.ids, q.positions) for q in queries]
            q_proj.append([projector.project({k: v[None] for k, v in g.items()})[0] for g in per_q])
            if q_layers is not None:
                q_layers.append(per_q)
    return q_proj, q_layers


def score_queries(index: TrainingIndex, model: Any, queries: list[Query], method: str,
                  opts: QueryOptions) -> list[np.ndarray]:
    """Scores of every training example for each query."""
    if method not in METHODS:
        raise UnknownMethodError(f"unknown training-data method {method!r}; valid methods: {', '.join(METHODS)}")
    if not index.checkpoints:
        raise TrainingIndexError(f"the index at '{index.path}' holds no checkpoint yet; index at least one")
    if method == "datainf":
        require_layers(index)  # before any gradient is computed
    device = next(model.parameters()).device
    q_proj, q_layers = query_gradients(index, model, queries, opts, layers=method == "datainf")
    kw = {"chunk_rows": opts.chunk_rows, "device": device}
    if method == "tracin":
        return tracin(index, q_proj, compute=opts.compute, **kw)
    if method == "grad_cos":
        return grad_cos(index, q_proj, compute=opts.compute, **kw)
    return datainf(index, q_layers, damping=opts.damping, **kw)


def load_query_model(index: TrainingIndex, model: Any, tokenizer: Any, opts: QueryOptions) -> tuple[Any, Any, str]:
    """Model and tokenizer from objects or references (None = the index's last checkpoint), checked against the index."""
    if model is None:
        model = _weights_folder(index, len(index.checkpoints) - 1, opts)[0]
    lopts = AttributeOptions(device=opts.device, trust_remote_code=opts.trust_remote_code)
    with quiet_loading(not opts.show_progress):
        model, tokenizer, ref = load_model_and_tokenizer(model, tokenizer, lopts)
    check_model(index, model)
    check_tokenizer(index, tokenizer)
    return model, tokenizer, ref


def provenance(index: TrainingIndex, method: str, model_ref: str, opts: QueryOptions) -> dict[str, Any]:
    info: dict[str, Any] = {
        "index": str(index.path), "method": method, "model": model_ref,
        "checkpoints": [{"name": c["name"], "step": c.get("step"), "learning_rate": c["learning_rate"]}
                        for c in index.checkpoints],
        "projection": {k: index.manifest["projection"][k] for k in ("kind", "dim", "seed")},
        "params": [p.name for p in index.params],
        "train_fingerprint": index.manifest["train"]["fingerprint"],
        "versions": package_versions(("attrib-mlops", "torch", "transformers")),
    }
    if method == "datainf":
        info["damping"] = opts.damping
    return info


def attribute_training_data(index: Any, model: Any, tokenizer: Any, prompt: str, target: str | None = None,
                            target_tokens: Any = None, method: str = "tracin", top_k: int = 10,
                            **options: Any) -> TrainingDataAttribution:
    """Score every training example of an index for the selected target tokens of a continuation.

    Args:
        index: a :class:`TrainingIndex` or an index folder.
        model: the model (object or reference; None = the index's last checkpoint).
            It must have the indexed architecture; the weights of each indexed
            checkpoint are bound to it for that checkpoint's query gradient.
        tokenizer: its tokenizer (object, reference or None = the model's folder).
        prompt: the prompt.
        target: the continuation to attribute: a user text, or None for the
            model's greedy generation.
        target_tokens: 0-based positions in the target's tokens (None = all).
        method: ``tracin``, ``grad_cos`` or ``datainf``.
        top_k: default ``k`` of the result's :meth:`~TrainingDataAttribution.top`.
        **options: see :class:`~attrib_mlops.training_data.options.QueryOptions`.

    Example:
        >>> res = attribute_training_data("out/index", None, None, "k3 = v1 ; ? k3", " v1")  # doctest: +SKIP
        >>> res.top(3)["positive"][0]["id"]                                                 # doctest: +SKIP
        'canary-0'
    """
    opts = parse_query_options(**options)
    idx = open_index(index)
    model, tokenizer, model_ref = load_query_model(idx, model, tokenizer, opts)
    q = prepare_query(model, tokenizer, prompt, target, target_tokens, opts)
    scores = score_queries(idx, model, [q], method, opts)[0]
    return TrainingDataAttribution(scores, idx.ids, idx.texts, method, q.prompt, q.target, q.target_tokens,
                                   q.selected, None, provenance(idx, method, model_ref, opts), top_k)

