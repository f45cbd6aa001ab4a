"""Batched teacher-forced forwards of many ablations of one prompt.

The target's token log-probabilities are computed for ``R`` ablated versions of
one prompt, many rows per forward pass:

* ``mask``: every row has the same token ids (prompt, then the target minus its
  last token); dropped prompt tokens get 0 in the attention mask and the
  positions stay ``0..L-1`` (passed explicitly as ``position_ids``), so no
  padding is needed at all (AT2's ablation);
* ``drop``: the dropped prompt tokens are cut out of the id sequence
  (positions shift), no re-tokenisation;
* texts: each row is an ablated prompt *text*, re-tokenised (ContextCite's
  ``remove`` ablation); the target ids are appended unchanged.

Rows of different lengths are padded on the left (default: every row then ends
with the same target tokens, so the model computes logits for the last ``T``
positions only, through ``logits_to_keep`` when the model supports it) or on
the right; ``position_ids`` are always explicit (each row's own ``0..n-1``,
whatever its padding), so both paddings give the unpadded result. Log-probabilities are float64:
``log(1 - p_t)`` is computed from the other tokens' logits (as ContextCite
does) and ``log p_t = log1p(-(1 - p_t))`` when ``p_t > 1/2``, so a target whose
probability is close to 1 keeps a finite log-odds.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ContextLengthError, InputError

__all__ = ["Prepared", "encode_prompt", "Forwarder"]

Span = tuple[int, int]


@dataclass
class Prepared:
    """One teacher-forced sample: the rendered prompt, its token ids and offsets, and the target ids."""

    prompt: str
    target: str
    prompt_ids: list[int]
    target_ids: list[int]
    offsets: list[Span] | None
    add_special_tokens: bool
    target_tokens: list[str]
    sample_id: str | None = None

    @property
    def n_prompt(self) -> int:
        return len(self.prompt_ids)

    @property
    def n_target(self) -> int:
        return len(self.target_ids)


def _is_fast(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "is_fast", False))


def encode_prompt(
    tokenizer: Any,
    prompt: str,
    target: str,
    *,
    add_special_tokens: bool,
    limit: int | None,
    index: int = 0,
    sample_id: str | None = None,
) -> Prepared:
    """Tokenise ``prompt + target`` as one string and split it at the prompt boundary.

    Raises :class:`InputError` when the target adds no token or the tokenizer
    merges across the boundary, :class:`ContextLengthError` past the context.
    """
    fast = _is_fast(tokenizer)
    enc = tokenizer(prompt, add_special_tokens=add_special_tokens, return_offsets_mapping=fast)
    p_ids = list(enc["input_ids"])
    offsets = [tuple(map(int, o)) for o in enc["offset_mapping"]] if fast else None
    full = list(tokenizer(prompt + target, add_special_tokens=add_special_tokens)["input_ids"])
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is not None and p_ids and p_ids[-1] == eos and full and full[-1] == eos and len(full) > len(p_ids):
        p_ids, full = p_ids[:-1], full[:-1]  # T5-style tokenizers append EOS
        offsets = offsets[:-1] if offsets is not None else None
    n = len(p_ids)
    if not target or len(full) <= n:
        raise InputError(f"sample {index}: target {target!r} adds no token to the prompt; give a non-empty target")
    if full[:n] != p_ids:
        raise InputError(
            f"sample {index}: the prompt's tokens are not a prefix of the tokens of prompt+target (the tokenizer "
            "merges across the boundary). Start the target with a space or end the prompt at a word boundary."
        )
    if n == 0:
        raise InputError(f"sample {index}: the prompt has no token; give a non-empty prompt")
    if limit is not None and len(full) > limit:
        raise ContextLengthError(
            f"sample {index}: prompt+target is {len(full)} tokens but the model's context is {limit}; "
            "shorten the prompt or the target (sources cannot be attributed on a truncated prompt)"
        )
    tgt = full[n:]
    return Prepared(prompt, target, p_ids, tgt, offsets, add_special_tokens,
                    list(tokenizer.convert_ids_to_tokens(tgt)), sample_id)


def _token_logprobs(logits: torch.Tensor, tgt: torch.Tensor) -> np.ndarray:
    """[R, T, V] logits, [R, T] target ids -> [R, T] float64 log p, accurate for p near 0 and near 1."""
    z = logits.detach().float()
    lse = torch.logsumexp(z, dim=-1)
    zy = z.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    others = z.scatter(-1, tgt.unsqueeze(-1), float("-inf"))
    logq = (torch.logsumexp(others, dim=-1) - lse).double().cpu().numpy()  # log(1 - p)
    logp = (zy - lse).double().cpu().numpy()
    with np.errstate(divide="ignore"):
        near_one = logq < -math.log(2.0)
        logp = np.where(near_one, np.log1p(-np.exp(np.minimum(logq, 0.0))), logp)
    return np.minimum(logp, 0.0)


class Forwarder:
    """Runs ablation rows of one prompt through a causal LM in batches (see module docstring).

    Args:
        model: a causal LM (eval mode and no-grad are the caller's: use ``model_guard``).
        tokenizer: its tokenizer (for re-tokenising ablated texts).
        device: where the inputs go (the model's device).
        max_tokens_per_forward: rows x length bound per forward pass.
        padding: ``left`` or ``right`` for rows of different lengths.
    """

    def __init__(self, model: Any, tokenizer: Any, device: torch.device, max_tokens_per_forward: int = 8192,
                 padding: str = "left"):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_tokens = int(max_tokens_per_forward)
        self.padding = padding
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self.pad_id = int(pad)
        try:
            params = inspect.signature(model.forward).parameters
        except (TypeError, ValueError):  # pragma: no cover - exotic wrappers
            params = {}
        self.keep_logits = "logits_to_keep" in params
        self.n_rows = 0  # sequences run through the model
        self.n_calls = 0  # forward calls
        self.n_empty_prompts = 0  # rows whose ablated prompt had no token left (BOS inserted)

    # ------------------------------------------------------------ public rows
    def token_masks(self, s: Prepared, keep_tokens: np.ndarray, mode: str = "mask") -> np.ndarray:
        """Log-probs ``[R, T]`` with prompt tokens dropped by ``keep_tokens`` (``[R, P]`` bool).

        ``mode="mask"``: attention mask, positions unchanged; ``"drop"``: ids cut out.
        """
        keep = np.asarray(keep_tokens, dtype=bool)
        if keep.ndim != 2 or keep.shape[1] != s.n_prompt:
            raise InputError(f"keep_tokens must be [rows, {s.n_prompt}], got {keep.shape}")
        body = s.target_ids[:-1]
        if mode == "mask":
            ids = s.prompt_ids + body
            pos = list(range(len(ids)))
            rows = [(ids, [int(k) for k in r] + [1] * len(body), pos) for r in keep]
            return self._run(rows, s.target_ids)
        if mode == "drop":
            seqs = [[t for t, k in zip(s.prompt_ids, r) if k] for r in keep]
            return self._run([self._plain_row(p, body) for p in seqs], s.target_ids)
        raise InputError(f"unknown token ablation mode {mode!r}; valid: mask, drop")

    def texts(self, s: Prepared, prompts: Sequence[str]) -> np.ndarray:
        """Log-probs ``[R, T]`` of the target after each ablated prompt text (re-tokenised)."""
        body = s.target_ids[:-1]
        enc = self.tokenizer(list(prompts), add_special_tokens=s.add_special_tokens)["input_ids"] if prompts else []
        return self._run([self._plain_row(list(p), body) for p in enc], s.target_ids)

    # --------------------------------------------------------------- internals
    def _plain_row(self, prompt_ids: list[int], body: list[int]) -> tuple[list[int], list[int], list[int]]:
        if not prompt_ids:
            bos = getattr(self.tokenizer, "bos_token_id", None)
            if bos is None:
                bos = getattr(self.tokenizer, "eos_token_id", None)
            if bos is None:
                raise InputError(
                    "an ablation removed every prompt token and the tokenizer has no BOS/EOS token to stand for "
                    "the empty context; keep some non-source text in the prompt or use ablation='mask'"
                )
            prompt_ids = [int(bos)]
            self.n_empty_prompts += 1
        ids = prompt_ids + body
        return ids, [1] * len(ids), list(range(len(ids)))

    def _run(self, rows: list[tuple[list[int], list[int], list[int]]], target_ids: list[int]) -> np.ndarray:
        T = len(target_ids)
        out = np.empty((len(rows), T), dtype=np.float64)
        if not rows:
            return out
        order = sorted(range(len(rows)), key=lambda r: len(rows[r][0]))  # similar lengths share a forward
        start = 0
        while start < len(order):
            L = len(rows[order[start]][0])
            stop = start + 1
            while stop < len(order):
                L2 = len(rows[order[stop]][0])
                if (stop + 1 - start) * L2 > self.max_tokens:
                    break
                L = L2
                stop += 1
            idx = order[start:stop]
            out[idx] = self._forward([rows[i] for i in idx], target_ids)
            start = stop
        return out

    @torch.no_grad()
    def _forward(self, rows: list[tuple[list[int], list[int], list[int]]], target_ids: list[int]) -> np.ndarray:
        R, T = len(rows), len(target_ids)
        L = max(len(r[0]) for r in rows)
        ids = torch.full((R, L), self.pad_id, dtype=torch.long)
        att = torch.zeros((R, L), dtype=torch.long)
        pos = torch.zeros((R, L), dtype=torch.long)
        read = torch.zeros((R, T), dtype=torch.long)  # position that predicts each target token
        left = self.padding == "left"
        for r, (i, a, p) in enumerate(rows):
            n = len(i)
            off = L - n if left else 0
            ids[r, off : off + n] = torch.tensor(i)
            att[r, off : off + n] = torch.tensor(a)
            pos[r, off : off + n] = torch.tensor(p)
            read[r] = torch.arange(off + n - T, off + n)
        kwargs: dict[str, Any] = {}
        same_read = bool((read == read[0]).all())
        if self.keep_logits and same_read and int(read[0, 0]) == L - T:
            kwargs["logits_to_keep"] = T
        dev = self.device
        logits = self.model(
            input_ids=ids.to(dev), attention_mask=att.to(dev), position_ids=pos.to(dev), **kwargs
        ).logits
        if "logits_to_keep" in kwargs:
            sel = logits[:, -T:]
        else:
            r_dev = read.to(logits.device)
            sel = logits.gather(1, r_dev.unsqueeze(-1).expand(R, T, logits.shape[-1]))
        tgt = torch.tensor(target_ids, device=sel.device).expand(R, T)
        self.n_rows += R
        self.n_calls += 1
        return _token_logprobs(sel, tgt)
