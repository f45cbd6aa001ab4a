"""Checks that an index fits the model, tokenizer, parameter subset and training set at hand."""

from __future__ import annotations

from typing import Any

from .errors import IndexMismatchError, TrainDataMismatchError
from .storage import TrainingIndex
from .subset import ParamSpec, model_fingerprint, tokenizer_fingerprint

__all__ = ["check_model", "check_tokenizer", "check_params", "check_train", "check_projection"]


def _short(h: str | None) -> str:
    return (h or "?")[:12]


def check_params(index: TrainingIndex, specs: list[ParamSpec]) -> None:
    """The index's parameter subset equals ``specs`` (names and shapes, in order)."""
    have = [(p.name, p.shape) for p in index.params]
    want = [(p.name, p.shape) for p in specs]
    if have != want:
        extra = [n for n, _ in want if n not in dict(have)]
        missing = [n for n, _ in have if n not in dict(want)]
        raise IndexMismatchError(
            f"the index at '{index.path}' was built for another parameter subset ({len(have)} tensors"
            + (f"; not in it: {extra[:3]}" if extra else "") + (f"; only in it: {missing[:3]}" if missing else "")
            + "); query with the index's subset or rebuild the index with these params")


def check_model(index: TrainingIndex, model: Any) -> None:
    """The model has the architecture the index was built for, and the subset's parameters."""
    fp = model_fingerprint(model)
    want = index.manifest["model"]["fingerprint"]
    if fp != want:
        params = dict(model.named_parameters(remove_duplicate=False))
        missing = [p.name for p in index.params if p.name not in params]
        shapes = [p.name for p in index.params if p.name in params and tuple(params[p.name].shape) != p.shape]
        detail = (f"; it lacks {missing[:3]}" if missing else "") + (f"; other shapes for {shapes[:3]}" if shapes else "")
        raise IndexMismatchError(
            f"the index at '{index.path}' was built for another model ({index.manifest['model'].get('ref')}, "
            f"architecture {_short(want)}; this model is {_short(fp)}{detail}); query with that model or rebuild "
            "the index for this one")


def check_tokenizer(index: TrainingIndex, tokenizer: Any) -> None:
    fp = tokenizer_fingerprint(tokenizer)
    want = index.manifest["tokenizer"]["fingerprint"]
    if fp != want:
        raise IndexMismatchError(
            f"the index at '{index.path}' was built with another tokenizer (vocabulary {_short(want)}, this one "
            f"{_short(fp)}); use the tokenizer of the indexed checkpoints")


def check_train(index: TrainingIndex, fingerprint: str) -> None:
    want = index.manifest["train"]["fingerprint"]
    if fingerprint != want:
        raise TrainDataMismatchError(
            f"the training set no longer matches the index at '{index.path}' (fingerprint {_short(fingerprint)}, "
            f"index built on {_short(want)} with {index.n_examples} examples); pass the same examples in the same "
            "order, or build a new index")


def check_projection(index: TrainingIndex, projection: dict[str, Any]) -> None:
    have = index.manifest["projection"]
    keys = ("kind", "dim", "seed", "fingerprint")
    if any(have.get(k) != projection.get(k) for k in keys):
        diff = {k: (have.get(k), projection.get(k)) for k in keys if have.get(k) != projection.get(k)}
        if "fingerprint" in diff and len(diff) == 1:
            raise IndexMismatchError(
                f"the projection of the index at '{index.path}' cannot be reproduced here (same seed, other random "
                "draws: another torch version?); rebuild the index with this environment")
        raise IndexMismatchError(f"the index at '{index.path}' uses another projection "
                                 f"({', '.join(f'{k}: {a} vs {b}' for k, (a, b) in diff.items())}); keep the "
                                 "index's projection options or build a new index")
