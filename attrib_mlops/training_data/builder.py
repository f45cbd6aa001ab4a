"""Build a training-data index from checkpoints: per-example gradients, projected, stored per checkpoint."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrib_mlops._util import now_iso, package_versions
from attrib_mlops.engines.prep import context_limit, load_model_and_tokenizer, model_guard
from attrib_mlops.errors import InputError
from attrib_mlops.options import AttributeOptions

from .checkpoints import (
    Checkpoint,
    bind_weights,
    expand_checkpoints,
    learning_rate_of,
    quiet_loading,
    read_weights,
    resolve_checkpoint,
    step_of,
)
from .compat import check_model, check_params, check_projection, check_tokenizer, check_train
from .data import normalize_train_data, tokenize_examples, train_fingerprint
from .errors import IndexMismatchError
from .grads import GradComputer
from .options import IndexOptions, parse_index_options
from .projection import Projector
from .storage import FORMAT, MANIFEST, VERSION, IndexWriter, TrainingIndex, write_json_atomic
from .subset import has_lora, model_fingerprint, select_params, tokenizer_fingerprint

logger = logging.getLogger(__name__)

__all__ = ["build_training_index", "resolve_learning_rates"]

VERSIONED = ("attrib-mlops", "torch", "transformers", "safetensors", "peft")


def resolve_learning_rates(learning_rates: Any, refs: list[str], names: list[str]) -> list[float | None]:
    """One learning rate (or None = read it from the checkpoint) per checkpoint."""
    if learning_rates is None:
        return [None] * len(refs)
    if isinstance(learning_rates, (int, float)):
        return [float(learning_rates)] * len(refs)
    if isinstance(learning_rates, Mapping):
        out = []
        for ref, name in zip(refs, names):
            v = learning_rates.get(ref, learning_rates.get(name))
            out.append(None if v is None else float(v))
        return out
    lrs = list(learning_rates)
    if len(lrs) == 1:
        return [float(lrs[0])] * len(refs)
    if len(lrs) != len(refs):
        raise InputError(f"got {len(lrs)} learning rates for {len(refs)} checkpoints; give one per checkpoint or one "
                         "for all")
    return [None if v is None else float(v) for v in lrs]


def _checkpoints(refs: list[str], lrs: list[float | None], names: list[str] | None) -> list[Checkpoint]:
    out: list[Checkpoint] = []
    prev: int | None = None
    for k, ref in enumerate(refs):
        folder = resolve_checkpoint(ref)
        step = step_of(folder)
        name = names[k] if names else (folder.name if not ref.startswith(("runs:/", "models:/")) else ref)
        lr, source = lrs[k], "given"
        if lr is None:
            lr, source = learning_rate_of(folder, prev)
        if lr < 0:
            raise InputError(f"checkpoint '{ref}': learning rate {lr} must be >= 0 for TracIn-CP")
        if lr == 0:
            logger.warning("checkpoint '%s' has learning rate 0 (end of the schedule): it adds nothing to TracIn-CP",
                           ref)
        out.append(Checkpoint(ref, folder, name, step, float(lr), source))
        prev = step
    return out


def _template(opts: IndexOptions, first: Checkpoint, tokenizer: Any) -> tuple[Any, Any, str]:
    lopts = AttributeOptions(device=opts.device, dtype=opts.dtype, trust_remote_code=opts.trust_remote_code)
    if opts.model is not None:
        model = opts.model
        if tokenizer is None:
            tokenizer = str(first.folder)
        _, tokenizer, ref = load_model_and_tokenizer(model, tokenizer, lopts)
        return model, tokenizer, ref
    return load_model_and_tokenizer(str(first.folder), tokenizer, lopts)


def _per_layer(opts: IndexOptions, kind: str, n: int, total: int) -> bool:
    if kind == "identity" or opts.per_layer == "never":
        return False
    return opts.per_layer == "always" or n * total * 2 <= opts.max_per_layer_bytes


def build_training_index(checkpoints: Any, tokenizer: Any, train_data: Any, learning_rates: Any = None,
                         **options: Any) -> TrainingIndex:
    """Per-example gradients of the training loss at each checkpoint, stored as an index folder.

    Args:
        checkpoints: checkpoint folders (``save_pretrained``/Trainer output, safetensors),
            a folder of ``checkpoint-<step>`` folders, or MLflow model URIs.
        tokenizer: a tokenizer or a reference (None = the first checkpoint's).
        train_data: a ``datasets.Dataset``, records (``text``, or ``prompt`` +
            ``target``/``completion``...; ``id`` optional) or plain texts.
        learning_rates: None (read ``trainer_state.json`` of each checkpoint), one
            value, one per checkpoint, or a dict by checkpoint reference or name.
        **options: see :class:`~attrib_mlops.training_data.options.IndexOptions`
            (``out_dir``, ``projection_dim``, ``params``, ``model``...).

    Returns:
        The :class:`TrainingIndex` (``index.path`` is its folder).

    Raises:
        MissingLearningRateError: a checkpoint without a recorded learning rate.
        IndexMismatchError / TrainDataMismatchError: ``out_dir`` holds an index of
            another model, subset, tokenizer, projection or training set.

    Example:
        >>> idx = build_training_index("out/checkpoints", None, ["a b c", "b c a"],  # doctest: +SKIP
        ...                            out_dir="out/index")
        >>> idx.n_examples                                                          # doctest: +SKIP
        2
    """
    opts = parse_index_options(**options)
    refs = expand_checkpoints(checkpoints)
    names = opts.checkpoint_names
    if names is not None and len(names) != len(refs):
        raise InputError(f"got {len(names)} checkpoint_names for {len(refs)} checkpoints")
    lrs = resolve_learning_rates(learning_rates, refs, [Path(r).name for r in refs])
    cks = _checkpoints(refs, lrs, names)  # learning rates are checked before any gradient is computed
    with quiet_loading(not opts.show_progress):
        model, tokenizer, model_ref = _template(opts, cks[0], tokenizer)

    examples = normalize_train_data(train_data, id_field=opts.id_field, text_field=opts.text_field,
                                    prompt_field=opts.prompt_field, target_field=opts.target_field)
    n_cut = tokenize_examples(examples, tokenizer, max_length=opts.max_length or context_limit(model),
                              add_special_tokens=opts.add_special_tokens)
    fingerprint = train_fingerprint(examples)
    specs = select_params(model, opts.params, last_blocks=opts.last_blocks, include_head=opts.include_head)
    total = sum(s.numel for s in specs)
    kind = opts.projection if opts.projection != "auto" else ("identity" if total <= opts.projection_dim else "sjlt")
    projector = Projector(specs, opts.projection_dim, opts.projection_seed, kind)
    per_layer = _per_layer(opts, kind, len(examples), total)

    out = Path(opts.out_dir) if opts.out_dir else Path(tempfile.mkdtemp(prefix="attrib-mlops-index-"))
    if (out / MANIFEST).exists():
        existing = TrainingIndex(out)
        check_model(existing, model)
        check_tokenizer(existing, tokenizer)
        check_params(existing, specs)
        check_projection(existing, projector.to_dict())
        check_train(existing, fingerprint)
        loss = {"reduction": opts.loss_reduction, "add_special_tokens": opts.add_special_tokens,
                "max_length": opts.max_length}
        if existing.manifest.get("loss") != loss:
            raise IndexMismatchError(f"the index at '{out}' was built with another training loss "
                                     f"({existing.manifest.get('loss')}, now {loss}); keep its options or build a "
                                     "new index")
        per_layer = bool(existing.manifest.get("per_layer"))
        done = {c["ref"] for c in existing.checkpoints}
        cks = [c for c in cks if c.ref not in done]
        writer = IndexWriter(out, existing.manifest)
    else:
        manifest = {
            "format": FORMAT, "version": VERSION, "created": now_iso(), "n_examples": len(examples),
            "dtype": "float16", "shard_rows": opts.shard_rows,
            "params": [s.to_dict() for s in specs],
            "selection": {"params": opts.params, "last_blocks": opts.last_blocks, "include_head": opts.include_head,
                          "lora": has_lora(model) and not opts.params},
            "projection": projector.to_dict(), "per_layer": per_layer,
            "loss": {"reduction": opts.loss_reduction, "add_special_tokens": opts.add_special_tokens,
                     "max_length": opts.max_length},
            "train": {"fingerprint": fingerprint, "n_examples": len(examples), "n_truncated": n_cut},
            "model": {"fingerprint": model_fingerprint(model), "ref": model_ref,
                      "type": getattr(getattr(model, "config", None), "model_type", type(model).__name__)},
            "tokenizer": {"fingerprint": tokenizer_fingerprint(tokenizer), "ref": getattr(tokenizer, "name_or_path", "")},
            "checkpoints": [], "info": {"versions": package_versions(VERSIONED)},
        }
        rows = [{"id": e.id, "text": e.text, "prompt_chars": len(e.prompt)} for e in examples]
        writer = IndexWriter(out, manifest, rows)
    if not cks:
        return TrainingIndex(out)

    gc = GradComputer(model, specs, mode=opts.per_example, loss_reduction=opts.loss_reduction,
                      max_grad_bytes=opts.max_grad_bytes)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(cks) * len(examples), desc="per-example gradients", unit="ex", disable=not opts.show_progress)
    try:
        with model_guard(model):
            for ck in cks:
                state, partial = read_weights(ck.folder)
                weights = bind_weights(model, state, required=[s.name for s in specs], partial=partial,
                                       where=f"checkpoint '{ck.ref}'")
                del state
                entry = {"name": ck.name, "ref": ck.ref, "folder": os.path.abspath(ck.folder), "step": ck.step,
                         "learning_rate": ck.learning_rate, "lr_source": ck.lr_source}
                cw = writer.add_checkpoint(entry, specs, per_layer)
                for start in range(0, len(examples), opts.batch_size):
                    batch = examples[start:start + opts.batch_size]
                    g = gc.per_example(weights, [e.input_ids for e in batch], [e.labels for e in batch])
                    cw.add(projector.project(g), g)
                    bar.update(len(batch))
                writer.commit(entry, cw)
                del weights
    finally:
        bar.close()
    if gc.mode == "loop" and opts.per_example == "auto":
        writer.manifest.setdefault("info", {})["per_example"] = "loop (the model cannot run under vmap)"
        write_json_atomic(out / MANIFEST, writer.manifest)
    index = TrainingIndex(out)
    logger.info("training index at %s: %d examples x %d checkpoints x %d dims", out, index.n_examples,
                len(index.checkpoints), index.dim)
    return index

