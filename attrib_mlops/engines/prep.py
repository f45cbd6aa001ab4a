"""Model loading, sample encoding and the model-state guard shared by engines.

Everything that touches the user's model goes through :func:`model_guard`, which
puts the model in eval mode for the duration and restores its training mode,
``requires_grad`` flags, global grad mode and RNG streams afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ContextLengthError, InputError, ModelLoadError
from ..options import AttributeOptions

logger = logging.getLogger(__name__)

__all__ = [
    "Encoded",
    "load_model_and_tokenizer",
    "model_ref_of",
    "encode_samples",
    "generate_targets",
    "model_guard",
    "model_device",
    "context_limit",
    "is_encoder_decoder",
]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Encoded:
    """One teacher-forced sample: token ids of prompt + target, and the boundary."""

    ids: list[int]
    n_prompt: int
    prompt: str
    target: str
    sample_id: str | None = None
    truncated: int = 0  # prompt tokens dropped from the left when truncate=True

    @property
    def n_target(self) -> int:
        return len(self.ids) - self.n_prompt


def is_encoder_decoder(model: Any) -> bool:
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


def model_device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - parameterless model
        return torch.device("cpu")


def model_ref_of(model: Any) -> str:
    """A human-readable reference for provenance: the path/hub id it came from."""
    ref = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    return str(ref) if ref else type(model).__name__


def context_limit(model: Any) -> int | None:
    cfg = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def load_model_and_tokenizer(
    model: Any, tokenizer: Any = None, options: AttributeOptions | None = None
) -> tuple[Any, Any, str]:
    """Accept loaded objects or references (local path or hub id).

    MLflow URIs are resolved to a local folder before this is called
    (:func:`attrib_mlops.model_refs.load_model`): engines import no MLflow.

    Returns ``(model, tokenizer, model_ref)``. A loaded model is used as it is
    (its device and dtype are the user's); a reference is loaded with
    ``trust_remote_code`` off unless the options turn it on.
    """
    options = options or AttributeOptions()
    model_ref = model if isinstance(model, (str, os.PathLike)) else model_ref_of(model)
    if isinstance(model, (str, os.PathLike)):
        ref = str(model)
        path = ref
        try:
            from transformers import (
                AutoConfig,
                AutoModelForCausalLM,
                AutoModelForSeq2SeqLM,
                AutoModelForSequenceClassification,
            )

            cfg = AutoConfig.from_pretrained(path, trust_remote_code=options.trust_remote_code)
            cls = AutoModelForSeq2SeqLM if getattr(cfg, "is_encoder_decoder", False) else AutoModelForCausalLM
            if any(str(a).endswith("ForSequenceClassification") for a in (getattr(cfg, "architectures", None) or [])):
                cls = AutoModelForSequenceClassification
            kwargs: dict[str, Any] = {"trust_remote_code": options.trust_remote_code}
            if options.dtype:
                kwargs["dtype"] = _DTYPES[options.dtype]
            model = cls.from_pretrained(path, **kwargs)
        except Exception as e:  # noqa: BLE001
            hint = "" if Path(path).exists() else " (not a local folder; hub ids need network access)"
            raise ModelLoadError(f"could not load model '{ref}'{hint}: {type(e).__name__}: {e}") from e
        if options.device:
            model.to(options.device)
        model.eval()
        if tokenizer is None:
            tokenizer = path
    if tokenizer is None:
        ref = model_ref_of(model)
        if Path(ref).exists():
            tokenizer = ref
        else:
            raise InputError("no tokenizer given and the model does not name a local folder to load one from")
    if isinstance(tokenizer, (str, os.PathLike)):
        where = str(tokenizer)
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer), trust_remote_code=options.trust_remote_code)
        except Exception as e:  # noqa: BLE001
            raise ModelLoadError(f"could not load tokenizer '{tokenizer}': {type(e).__name__}: {e}") from e
        _require_vocabulary(tokenizer, where)
    return model, tokenizer, str(model_ref)


def _require_vocabulary(tokenizer: Any, where: str) -> None:
    """Fail when a loaded tokenizer is empty (transformers builds one from a folder without tokenizer files)."""
    try:
        empty = len(tokenizer) <= 1 or not _ids(tokenizer, "a b c 1 2 3")
    except Exception:  # noqa: BLE001 - an unusual tokenizer: let encoding report its own errors
        return
    if empty:
        raise ModelLoadError(f"the tokenizer of '{where}' is missing: the folder has no tokenizer files "
                             "(tokenizer.json, vocab/merges); save the tokenizer there or pass its folder or hub id "
                             "as the tokenizer")


def _ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` with the tokenizer's special tokens, and one BOS only.

    A chat template (Llama, Mistral...) writes the BOS token into the rendered text and the
    tokenizer adds its own: the doubled BOS is off-distribution for the model, so the added
    one is dropped (see :func:`written_bos`).
    """
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    if _double_bos(tokenizer, ids):
        return ids[1:]
    return ids


def _double_bos(tokenizer: Any, ids: list[int]) -> bool:
    bos = getattr(tokenizer, "bos_token_id", None)
    return bos is not None and len(ids) >= 2 and ids[0] == bos and ids[1] == bos


def written_bos(tokenizer: Any, text: str) -> bool:
    """True when ``text`` already starts with the BOS token (written by a chat template) and the
    tokenizer adds one too: naive encoding (Inseq's) would give two BOS tokens.

    >>> from attrib_mlops.demo.tiny import build_word_tokenizer
    >>> written_bos(build_word_tokenizer(["a"]), "[BOS] a")   # this tokenizer adds no BOS itself
    False
    """
    return _double_bos(tokenizer, list(tokenizer(text, add_special_tokens=True)["input_ids"]))


def encode_samples(
    tokenizer: Any,
    prompts: list[str],
    targets: list[str],
    *,
    limit: int | None,
    truncate: bool = False,
    sample_ids: list[str | None] | None = None,
) -> list[Encoded]:
    """Tokenise ``prompt + target`` as one string and find the prompt boundary.

    Raises :class:`InputError` when the target adds no token or when the
    tokeniser merges across the boundary (so the prompt's tokens are not a
    prefix of the full text's tokens), and :class:`ContextLengthError` when the
    sequence exceeds ``limit`` and ``truncate`` is off.
    """
    out: list[Encoded] = []
    sample_ids = sample_ids or [None] * len(prompts)
    for k, (prompt, target) in enumerate(zip(prompts, targets)):
        p_ids = _ids(tokenizer, prompt)
        full = _ids(tokenizer, prompt + target)
        # tokenizers that append EOS (T5-style) would put it inside the prompt
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is not None and p_ids and p_ids[-1] == eos and full and full[-1] == eos and len(full) > len(p_ids):
            p_ids = p_ids[:-1]
            full = full[:-1]
        n = len(p_ids)
        if full[:n] != p_ids:
            raise InputError(
                f"sample {k}: the tokens of the prompt are not a prefix of the tokens of prompt+target "
                f"(the tokenizer merges across the boundary: prompt ends {tokenizer.convert_ids_to_tokens(p_ids[-2:])}, "
                f"prompt+target has {tokenizer.convert_ids_to_tokens(full[max(0, n - 2) : n + 1])}). "
                "Start the target with a space (e.g. ' Paris') or end the prompt at a word boundary."
            )
        if len(full) == n:
            raise InputError(f"sample {k}: target {target!r} adds no token to the prompt; give a non-empty target")
        dropped = 0
        if limit is not None and len(full) > limit:
            excess = len(full) - limit
            if not truncate:
                raise ContextLengthError(
                    f"sample {k}: prompt+target is {len(full)} tokens but the model's context is {limit}. "
                    "Shorten the prompt, or pass truncate=True to drop the oldest prompt tokens."
                )
            if excess >= n:
                raise ContextLengthError(
                    f"sample {k}: the target alone ({len(full) - n} tokens) does not fit the model's context ({limit})"
                )
            full = full[excess:]
            n -= excess
            dropped = excess
        out.append(Encoded(full, n, prompt, target, sample_ids[k], dropped))
    return out


def generate_targets(
    model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, limit: int | None
) -> list[str]:
    """Greedy continuations (text) of each prompt; EOS and what follows are dropped."""
    device = model_device(model)
    eos = getattr(tokenizer, "eos_token_id", None)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos if eos is not None else 0)
    targets = []
    with model_guard(model), torch.no_grad():
        for k, prompt in enumerate(prompts):
            ids = _ids(tokenizer, prompt)
            room = max_new_tokens if limit is None else min(max_new_tokens, limit - len(ids))
            if room < 1:
                raise ContextLengthError(
                    f"sample {k}: the prompt ({len(ids)} tokens) leaves no room to generate in the context ({limit})"
                )
            inp = torch.tensor([ids], device=device)
            gen = model.generate(
                inp,
                attention_mask=torch.ones_like(inp),
                max_new_tokens=room,
                do_sample=False,
                pad_token_id=pad,
            )
            new = gen[0, inp.shape[1] :].tolist() if not is_encoder_decoder(model) else gen[0].tolist()
            if eos is not None and eos in new:
                new = new[: new.index(eos)]
            text = tokenizer.decode(new, skip_special_tokens=True)
            if not text.strip():
                raise InputError(f"sample {k}: the model generated no text for prompt {prompt!r}; give a target")
            # word-level tokenizers decode without the joining space
            if prompt and not prompt[-1].isspace() and not text[0].isspace():
                if _ids(tokenizer, prompt + text)[: len(ids)] != ids:
                    text = " " + text
            targets.append(text)
    return targets


@contextlib.contextmanager
def model_guard(model: Any):
    """Eval mode, no parameter grads and a forked RNG for the duration; all restored after."""
    was_training = bool(getattr(model, "training", False))
    flags = [(p, p.requires_grad) for p in model.parameters()]
    devices = []
    if torch.cuda.is_available():
        devices = list(range(torch.cuda.device_count()))
    grad_enabled = torch.is_grad_enabled()
    try:
        with torch.random.fork_rng(devices=devices):
            model.eval()
            for p, _ in flags:
                p.requires_grad_(False)
            yield model
    finally:
        for p, f in flags:
            p.requires_grad_(f)
        model.train(was_training)
        torch.set_grad_enabled(grad_enabled)
