"""Checkpoints: resolve folders and MLflow URIs, read their weights, steps and learning rates.

Weights are read from safetensors files only (``model.safetensors``, sharded
``model-*-of-*.safetensors`` with their index, or a PEFT
``adapter_model.safetensors``); pickled ``.bin`` checkpoints are refused. The
weights are bound to a *template* model with ``torch.func.functional_call``, so
the template (the user's model) is never modified.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, MissingLearningRateError
from .subset import tied_groups

logger = logging.getLogger(__name__)

__all__ = ["Checkpoint", "quiet_loading", "resolve_checkpoint", "expand_checkpoints", "read_weights", "bind_weights",
           "learning_rate_of", "step_of", "MLFLOW_SCHEMES"]

MLFLOW_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")
_STEP_RE = re.compile(r"checkpoint-(\d+)$")


@dataclass
class Checkpoint:
    """A checkpoint: its reference as given, its local folder, name, step and learning rate."""

    ref: str
    folder: Path
    name: str
    step: int | None = None
    learning_rate: float | None = None
    lr_source: str = ""


@contextlib.contextmanager
def quiet_loading(quiet: bool = True):
    """Silence transformers' "Loading weights" progress bars for the duration (restored after)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    if quiet and was:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and was:
            hf_logging.enable_progress_bar()


#: Downloads an MLflow model URI to a local folder. The compute layer imports no MLflow: the entry
#: points (:mod:`attrib_mlops.tda_api`, the CLI) install :func:`attrib_mlops.model_refs.resolve_model_ref`.
_URI_RESOLVER: list[Callable[[str], str]] = []


def set_uri_resolver(fn: Callable[[str], str]) -> None:
    """Install the function that turns an MLflow model URI into a local folder."""
    _URI_RESOLVER[:] = [fn]


def resolve_checkpoint(ref: str | os.PathLike) -> Path:
    """A local folder for a checkpoint folder or an MLflow model URI (downloaded by the installed resolver)."""
    s = str(ref)
    if s.startswith(MLFLOW_SCHEMES):
        if not _URI_RESOLVER:
            raise CheckpointError(f"checkpoint '{s}' is an MLflow URI; use attrib_mlops.build_training_index / "
                                  "attribute_training_data (they resolve MLflow URIs), or give a local folder")
        return Path(_URI_RESOLVER[0](s))
    p = Path(s)
    if not p.is_dir():
        raise CheckpointError(f"checkpoint '{s}' is not a folder (nor an MLflow URI runs:/, models:/); "
                              "give a folder written by save_pretrained or the Trainer")
    return p


def _is_checkpoint(p: Path) -> bool:
    return any((p / f).exists() for f in ("model.safetensors", "model.safetensors.index.json",
                                          "adapter_model.safetensors"))


def expand_checkpoints(refs: Any) -> list[str]:
    """Checkpoint references: a folder holding ``checkpoint-<step>`` folders expands to them, by step."""
    if isinstance(refs, (str, os.PathLike)):
        refs = [refs]
    out: list[str] = []
    for r in refs:
        s = str(r)
        p = Path(s)
        if not s.startswith(MLFLOW_SCHEMES) and p.is_dir() and not _is_checkpoint(p):
            subs = [c for c in p.iterdir() if c.is_dir() and _STEP_RE.search(c.name)]
            if subs:
                out += [str(c) for c in sorted(subs, key=lambda c: int(_STEP_RE.search(c.name).group(1)))]
                continue
        out.append(s)
    if not out:
        raise CheckpointError("no checkpoints given; pass checkpoint folders, a folder of checkpoint-<step> "
                              "folders or MLflow model URIs")
    return out


def read_weights(folder: Path) -> tuple[dict[str, torch.Tensor], bool]:
    """All tensors of a checkpoint's safetensors files, and whether it holds adapters only (PEFT)."""
    from safetensors.torch import load_file

    files: list[Path] = []
    if (folder / "model.safetensors").exists():
        files = [folder / "model.safetensors"]
    elif (folder / "model.safetensors.index.json").exists():
        idx = json.loads((folder / "model.safetensors.index.json").read_text())
        files = [folder / f for f in sorted(set(idx.get("weight_map", {}).values()))]
    elif (folder / "adapter_model.safetensors").exists():
        files = [folder / "adapter_model.safetensors"]
    if not files:
        has_bin = any(folder.glob("*.bin"))
        hint = (" (it has pickled .bin weights, which are not read; save with safe_serialization=True)"
                if has_bin else "")
        raise CheckpointError(f"checkpoint '{folder}' has no safetensors weights{hint}")
    out: dict[str, torch.Tensor] = {}
    for f in files:
        out.update(load_file(str(f)))
    return out, files[0].name == "adapter_model.safetensors"


def _normalize(name: str, adapters: set[str]) -> str:
    parts = name.split(".")
    parts = [p for i, p in enumerate(parts) if not (p in adapters and i > 0 and parts[i - 1].startswith("lora_"))]
    name = ".".join(parts)
    return name[len("base_model.model."):] if name.startswith("base_model.model.") else name


def bind_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], *, required: list[str],
                 partial: bool = False, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Parameter values for ``functional_call(model, ..., tie_weights=False)`` from a checkpoint.

    Checkpoint keys are matched to ``named_parameters(remove_duplicate=False)``
    names (PEFT adapter names and the ``base_model.model.`` prefix are
    normalised); tied names missing from the file take their partner's value;
    parameters an adapter checkpoint (``partial``) does not hold keep the
    model's own (the frozen base weights). Values are cast to the device and
    dtype of the model's parameter.

    Raises:
        CheckpointError: a parameter of ``required`` (or, for a full checkpoint,
            any parameter) has no value in the checkpoint.
    """
    params = dict(model.named_parameters(remove_duplicate=False))
    adapters = set(getattr(model, "peft_config", {}) or {}) | {"default"}
    by_norm = {_normalize(k, adapters): v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    found: set[str] = set()
    for n, p in params.items():
        v = state.get(n)
        if v is None:
            v = by_norm.get(_normalize(n, adapters))
        if v is not None:
            if tuple(v.shape) != tuple(p.shape):
                raise CheckpointError(f"{where}: weight {n!r} has shape {tuple(v.shape)} but the model's is "
                                      f"{tuple(p.shape)}; the checkpoint is of another model")
            out[n] = v.to(device=p.device, dtype=p.dtype)
            found.add(n)
    for group in tied_groups(model):
        src = next((g for g in group if g in found), None)
        for g in group:
            if g not in found and src is not None:
                out[g] = out[src]
                found.add(g)
    missing = [n for n in required if n not in found]
    if missing:
        raise CheckpointError(f"{where} holds no weights for {missing[:3]}{'...' if len(missing) > 3 else ''} "
                              "of the parameter subset; is it a checkpoint of this model?")
    if not partial:
        absent = [n for n in params if n not in found]
        if absent:
            raise CheckpointError(f"{where} holds no weights for {absent[:3]}{'...' if len(absent) > 3 else ''}; "
                                  "it is not a full checkpoint of this model")
    for n, p in params.items():
        if n not in out:
            out[n] = p.detach()
    return out


def step_of(folder: Path) -> int | None:
    """Global step from ``trainer_state.json``, else from a ``checkpoint-<step>`` folder name."""
    st = folder / "trainer_state.json"
    if st.exists():
        try:
            return int(json.loads(st.read_text())["global_step"])
        except (KeyError, ValueError, TypeError, json.JSONDecodeError):
            pass
    m = _STEP_RE.search(folder.name)
    return int(m.group(1)) if m else None


def learning_rate_of(folder: Path, prev_step: int | None) -> tuple[float, str]:
    """Learning rate of the interval ending at this checkpoint, from ``trainer_state.json``.

    The mean of the ``learning_rate`` values logged in ``(prev_step, step]``,
    else the last one logged at or before ``step``.

    Raises:
        MissingLearningRateError: no ``trainer_state.json`` or no logged learning rate.
    """
    st = folder / "trainer_state.json"
    ask = ("pass learning_rates=[...] (one per checkpoint, or one for all) to build_training_index, "
           "or --learning-rate on the command line")
    if not st.exists():
        raise MissingLearningRateError(f"checkpoint '{folder}' has no recorded learning rate (no trainer_state.json); "
                                       + ask)
    try:
        state = json.loads(st.read_text())
    except json.JSONDecodeError as e:
        raise MissingLearningRateError(f"checkpoint '{folder}': trainer_state.json is not valid JSON ({e}); " + ask) from e
    step = int(state.get("global_step", 0))
    logged = [(int(h["step"]), float(h["learning_rate"])) for h in state.get("log_history", [])
              if "learning_rate" in h and "step" in h and int(h["step"]) <= step]
    if not logged:
        raise MissingLearningRateError(f"checkpoint '{folder}' has no recorded learning rate (trainer_state.json "
                                       "logs none); " + ask)
    lo = -1 if prev_step is None else prev_step
    inside = [lr for s, lr in logged if s > lo]
    if inside:
        return sum(inside) / len(inside), f"trainer_state.json: mean of {len(inside)} logged values in ({lo}, {step}]"
    s, lr = logged[-1]
    return lr, f"trainer_state.json: logged at step {s}"
