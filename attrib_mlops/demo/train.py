"""Short, deterministic CPU training of a tiny GPT-2 on the key-value tasks.

Uses the Hugging Face ``Trainer`` (so attribution-tracking ``TrainerCallback``\\ s
plug straight in) on causal-LM examples ``prompt + target`` with the loss on the
target token only. Nothing is downloaded: the model and tokenizer come from
:func:`attrib_mlops.demo.tiny.build_tiny_model` and reporting is off by default.

Example (about 10 s of training on one CPU core)::

    from attrib_mlops.demo.tasks import keyvalue_vocab, make_keyvalue_dataset, probe_set
    from attrib_mlops.demo.tiny import build_tiny_model
    from attrib_mlops.demo.train import DEFAULT_DATA, DEFAULT_MODEL, DEFAULT_TRAIN, \\
        keyvalue_accuracy, train_keyvalue

    model, tok = build_tiny_model(keyvalue_vocab(), **DEFAULT_MODEL)
    data = make_keyvalue_dataset(**DEFAULT_DATA)
    out = train_keyvalue(model, tok, data, **DEFAULT_TRAIN)
    keyvalue_accuracy(model, tok, probe_set(256))   # 1.0

``SHORTCUT_DATA`` instead of ``DEFAULT_DATA`` trains the shortcut model (copies the
hint; 1.0 on ``probe_set(shortcut=True)``, ~0.1 without the hint, 0.0 with a
wrong hint). The clean model scores 1.0 on all three.
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_DATA",
    "DEFAULT_TRAIN",
    "SHORTCUT_DATA",
    "KeyValueCollator",
    "encode_keyvalue",
    "train_keyvalue",
    "keyvalue_predictions",
    "keyvalue_accuracy",
]

#: Architecture passed to ``build_tiny_model(keyvalue_vocab(), **DEFAULT_MODEL)``.
DEFAULT_MODEL: dict[str, Any] = dict(n_layer=2, n_embd=64, n_head=4, n_positions=64, seed=0)
#: Keyword arguments of :func:`train_keyvalue` (about 10-15 s on one CPU core).
DEFAULT_TRAIN: dict[str, Any] = dict(
    max_steps=400, batch_size=32, lr=3e-3, warmup_steps=0.05, weight_decay=0.0,
    lr_scheduler_type="cosine", seed=0, logging_steps=25, num_threads=1,
)
#: Clean training data, ``make_keyvalue_dataset(**DEFAULT_DATA)``: one pass over
#: fresh rows; half of them carry a noise hint so the model learns to ignore it.
DEFAULT_DATA: dict[str, Any] = dict(
    n=DEFAULT_TRAIN["max_steps"] * DEFAULT_TRAIN["batch_size"], n_pairs=4, seed=0,
    distractor_rate=0.5,
)
#: Shortcut training data: a correct hint in every row.
SHORTCUT_DATA: dict[str, Any] = dict(
    n=DEFAULT_DATA["n"], n_pairs=4, seed=0, shortcut=True, hint_rate=1.0,
)


class _ListDataset:
    """A map-style dataset over a list of dicts (what ``Trainer`` needs)."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


class KeyValueCollator:
    """Right-pads ``input_ids`` with ``pad_id``; ``labels`` with -100, mask with 0."""

    def __init__(self, pad_id: int):
        self.pad_id = int(pad_id)

    def __call__(self, features: Sequence[dict]) -> dict:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), -100, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for r, f in enumerate(features):
            n = len(f["input_ids"])
            ids[r, :n] = torch.as_tensor(f["input_ids"], dtype=torch.long)
            labels[r, :n] = torch.as_tensor(f["labels"], dtype=torch.long)
            mask[r, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _encode_texts(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Batched token ids without special tokens; raises on out-of-vocabulary words."""
    if not texts:
        return []
    enc = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    unk = tokenizer.unk_token_id
    if unk is not None:
        for text, ids in zip(texts, enc):
            if unk in ids:
                raise ValueError(f"{text!r} has words outside the tokenizer's vocabulary")
    return [list(ids) for ids in enc]


def encode_keyvalue(tokenizer, dataset) -> list[dict]:
    """``prompt + target`` token ids with labels -100 on the prompt tokens."""
    prompts, targets = list(dataset["prompt"]), list(dataset["target"])
    rows = []
    encoded = zip(_encode_texts(tokenizer, prompts), _encode_texts(tokenizer, targets))
    for prompt, (p, t) in zip(prompts, encoded):
        if not t:
            raise ValueError(f"empty target for prompt {prompt!r}")
        rows.append({"input_ids": p + t, "labels": [-100] * len(p) + t})
    return rows


@contextlib.contextmanager
def _preserve_global_rng():
    """``Trainer`` reseeds python/numpy/torch; give the caller its streams back."""
    import torch

    py, npy, th = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(th)


@contextlib.contextmanager
def _torch_threads(n: int):
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def _no_progress_bars():
    """Silence transformers' tqdm bars (e.g. "Writing model shards" on checkpoints)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def train_keyvalue(
    model,
    tokenizer,
    dataset,
    *,
    max_steps: int = DEFAULT_TRAIN["max_steps"],
    batch_size: int = 32,
    lr: float = DEFAULT_TRAIN["lr"],
    seed: int = 0,
    output_dir: str | None = None,
    callbacks: Iterable = (),
    logging_steps: int = DEFAULT_TRAIN["logging_steps"],
    save_steps: int | None = None,
    report_to: str | list[str] = "none",
    warmup_steps: int | float = DEFAULT_TRAIN["warmup_steps"],
    weight_decay: float = DEFAULT_TRAIN["weight_decay"],
    lr_scheduler_type: str = DEFAULT_TRAIN["lr_scheduler_type"],
    save_only_model: bool = True,
    progress: bool = False,
    num_threads: int | None = None,
) -> dict:
    """Fine-tune ``model`` in place with ``transformers.Trainer`` on the CPU.

    ``dataset`` needs ``prompt`` and ``target`` columns (see
    :mod:`attrib_mlops.demo.tasks`). The loss is on the target token(s) only.
    Deterministic given ``seed`` (``seed`` and ``data_seed``, no dataloader
    workers). ``save_steps`` writes ``checkpoint-<step>`` folders (model as
    safetensors plus tokenizer; with ``save_only_model=False`` also the
    optimizer state) under ``output_dir``, which is then required. The model is
    left in the train/eval mode it was in; the caller's global RNG states are
    restored afterwards. ``num_threads`` sets torch's intra-op threads for the
    run only (1 is often fastest for these tiny models on a busy machine).

    Returns ``{"loss_history": [{"step", "loss"}, ...], "train_loss",
    "train_runtime", "global_step", "trainer"}``.
    """
    import torch
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    if save_steps is not None and output_dir is None:
        raise ValueError("save_steps needs an output_dir")
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout) and m.p > 0:
            warnings.warn(
                f"model has dropout p={m.p}: it is active during training, so the run "
                "depends on the dropout RNG and learns more slowly",
                stacklevel=2,
            )
            break

    was_training = model.training
    rows = _ListDataset(encode_keyvalue(tokenizer, dataset))
    with contextlib.ExitStack() as stack:
        stack.enter_context(_preserve_global_rng())
        if num_threads is not None:
            stack.enter_context(_torch_threads(num_threads))
        if not progress:
            stack.enter_context(_no_progress_bars())
        if output_dir is None:
            output_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="kv-train-"))
        args = TrainingArguments(
            output_dir=str(output_dir),
            use_cpu=True,
            max_steps=int(max_steps),
            per_device_train_batch_size=int(batch_size),
            learning_rate=float(lr),
            warmup_steps=warmup_steps,
            weight_decay=float(weight_decay),
            lr_scheduler_type=lr_scheduler_type,
            optim="adamw_torch",
            seed=int(seed),
            data_seed=int(seed),
            logging_strategy="steps",
            logging_steps=int(logging_steps),
            save_strategy="steps" if save_steps else "no",
            save_steps=int(save_steps) if save_steps else 500,
            save_only_model=save_only_model,
            report_to=report_to,
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
            remove_unused_columns=False,
            disable_tqdm=not progress,
            push_to_hub=False,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=rows,
            data_collator=KeyValueCollator(tokenizer.pad_token_id),
            processing_class=tokenizer,
            callbacks=list(callbacks),
        )
        if not progress:  # keep stdout quiet: no per-log dict printing
            trainer.remove_callback(PrinterCallback)
            trainer.remove_callback(ProgressCallback)
        result = trainer.train()
    model.train(was_training)

    history = [
        {"step": int(h["step"]), "loss": float(h["loss"])}
        for h in trainer.state.log_history
        if "loss" in h and "step" in h
    ]
    return {
        "loss_history": history,
        "train_loss": float(result.training_loss),
        "train_runtime": float(result.metrics.get("train_runtime", float("nan"))),
        "global_step": int(result.global_step),
        "trainer": trainer,
    }


def keyvalue_predictions(model, tokenizer, dataset, batch_size: int = 64) -> list[str]:
    """Greedy next token after each ``prompt`` (batched, no grad, eval mode)."""
    import torch

    prompts = list(dataset["prompt"])
    was_training = model.training
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    preds: list[int] = []
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(prompts), batch_size):
                enc = _encode_texts(tokenizer, prompts[start : start + batch_size])
                lens = torch.tensor([len(e) for e in enc])
                ids = torch.full((len(enc), int(lens.max())), pad, dtype=torch.long)
                mask = torch.zeros_like(ids)
                for r, e in enumerate(enc):
                    ids[r, : len(e)] = torch.tensor(e)
                    mask[r, : len(e)] = 1
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                last = logits[torch.arange(len(enc)), (lens - 1).to(device)]
                preds += last.argmax(-1).tolist()
    finally:
        model.train(was_training)
    return tokenizer.convert_ids_to_tokens(preds)


def keyvalue_accuracy(model, tokenizer, dataset, batch_size: int = 64) -> float:
    """Fraction of rows whose greedy next token is ``answer`` (restores the train mode)."""
    answers = list(dataset["answer"])
    if not answers:
        return float("nan")
    preds = keyvalue_predictions(model, tokenizer, dataset, batch_size=batch_size)
    return float(np.mean([p == a for p, a in zip(preds, answers)]))
