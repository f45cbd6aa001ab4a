"""The native fast path: batched attribution for decoder-only causal LMs.

Why it is faster than attributing one generated token at a time (Inseq's way):
causality means the output at position ``q`` depends only on positions
``<= q``, so one forward pass over the whole teacher-forced sequence serves
every target position, and the gradient of target ``j`` with respect to the
embeddings of the full sequence equals its gradient on the prefix alone (zero
on later positions). So:

* gradient methods: one forward over the full sequence for a batch of samples,
  then one vector-Jacobian product per target position over the whole batch
  (``vjp="loop"``) or all of them at once (``vjp="vmap"``);
* integrated gradients: the same per interpolation step, the interpolation
  steps batched too;
* attention: one forward with attention weights for the whole sequence;
* occlusion: one forward per occluded source position for *all* targets at
  once (Inseq needs one per source position per target).

Logits are computed only at the positions that predict a target token (the LM
head is applied to those hidden states only) when the model's output is
verified to be exactly ``lm_head(base_model(...))``; otherwise the full forward
is used.

Each method is one class in :mod:`attrib_mlops.engines.methods` (registered for the
``native`` engine, see :mod:`attrib_mlops.engines.registry`); its ``compute`` gets one
padded batch (:class:`~attrib_mlops.engines.native_kernels.Run`) and uses the batched
building blocks of :mod:`attrib_mlops.engines.native_kernels`.

Results match Inseq cell by cell (tests/engines/test_native_vs_inseq.py): the
attributed function is the target token's probability, gradients are taken
with respect to the input token embeddings, baselines are the UNK embedding
(EOS stays EOS), per-cell vectors are reduced by the L2 norm by default.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import torch

from ..errors import InputError, UnsupportedMethodError
from ..options import AttributeOptions
from ..result import AttributionResult
from .base import Engine, register_engine
from .native_kernels import Batch, Run, Scorer, chunks, integration_points, progress, step_scores
from .prep import Encoded, is_encoder_decoder, model_device, model_guard
from .registry import AttributionMethod, get_method, method_classes, method_names

logger = logging.getLogger(__name__)

__all__ = ["NativeEngine", "integration_points", "step_scores"]


def __getattr__(name: str) -> tuple[str, ...]:
    # derived from the method registry (kept for callers of the former constants)
    if name == "METHODS":
        return tuple(method_names("native"))
    if name == "GRADIENT_METHODS":
        return tuple(c.name for c in method_classes("native") if c.uses_dim_aggregation)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@register_engine
class NativeEngine(Engine):
    """Batched attribution for decoder-only causal LMs (see module docstring)."""

    name = "native"

    def __init__(self) -> None:
        self._split_ok: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def methods(self) -> list[str]:
        return method_names(self.name)

    # ------------------------------------------------------------------ public
    def attribute(
        self,
        model: Any,
        tokenizer: Any,
        samples: list[Encoded],
        method: str,
        options: AttributeOptions,
        model_ref: str,
    ) -> list[AttributionResult]:
        impl = get_method(method, self.name)()  # UnsupportedMethodError names the native methods
        if is_encoder_decoder(model):
            raise UnsupportedMethodError(
                "the native engine handles decoder-only causal LMs; use engine='inseq' for encoder-decoder models"
            )
        device = torch.device(options.device) if options.device else model_device(model)
        if device != model_device(model):
            raise InputError(
                f"options.device={options.device!r} but the model is on {model_device(model)}; "
                "move the model (model.to(...)) or drop the device option"
            )
        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        results: list[AttributionResult] = []
        with model_guard(model):
            scorer = self._scorer(model, samples, pad_id, device)
            bar = progress(len(samples), f"native {method}", options.show_progress)
            for chunk in chunks(samples, options.batch_size):
                batch = Batch(chunk, pad_id, device)
                mats, probs, ents = impl.compute(Run(model, tokenizer, scorer, batch, options))
                for b, s in enumerate(chunk):
                    results.append(self._result(tokenizer, s, mats[b], probs[b], ents[b], impl, options, model_ref))
                bar.update(len(chunk))
            bar.close()
        return results

    # ----------------------------------------------------------------- helpers
    def _scorer(self, model: Any, samples: list[Encoded], pad_id: int, device: torch.device) -> Scorer:
        ok = self._split_ok.get(model)
        if ok is None:
            ok = False
            head = getattr(model, "get_output_embeddings", lambda: None)()
            body = getattr(model, "base_model", None)
            if isinstance(head, torch.nn.Linear) and body is not None and body is not model:
                batch = Batch(samples[:1], pad_id, device)
                with torch.no_grad():
                    emb = model.get_input_embeddings()(batch.ids)
                    full = model(inputs_embeds=emb, attention_mask=batch.mask).logits.float()
                    try:
                        split = head(body(inputs_embeds=emb, attention_mask=batch.mask).last_hidden_state).float()
                        ok = split.shape == full.shape and bool(
                            torch.allclose(split, full, rtol=1e-4, atol=1e-4 * float(full.abs().max()) + 1e-6)
                        )
                    except Exception:  # noqa: BLE001 - any mismatch means "use the full forward"
                        ok = False
            self._split_ok[model] = ok
            logger.debug("native engine: LM-head split %s for %s", "on" if ok else "off", type(model).__name__)
        return Scorer(model, ok)

    def _result(self, tokenizer, s: Encoded, mat, prob, ent, impl: AttributionMethod, options,
                model_ref) -> AttributionResult:
        tokens = tokenizer.convert_ids_to_tokens(s.ids)
        n = s.n_prompt
        info: dict[str, Any] = {"model": model_ref, "options": options.key_dict(), "dim_aggregation": None,
                                "attributed_fn": "probability"}
        info.update(impl.info(options))
        if s.truncated:
            info["truncated_prompt_tokens"] = s.truncated
        return AttributionResult(
            matrix=mat,
            source_tokens=tokens,
            target_tokens=tokens[n:],
            method=impl.name,
            engine=self.name,
            step_scores={"probability": prob, "entropy": ent},
            info=info,
            n_prompt=n,
            prompt=s.prompt,
            target=s.target,
            sample_id=s.sample_id,
        )
