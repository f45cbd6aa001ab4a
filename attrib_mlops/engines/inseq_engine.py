"""Adapter over Inseq 0.7: every Inseq method as :class:`AttributionResult` objects.

Inseq attributes decoder-only models one generated token at a time and runs
with batch size 1 when targets are given; we call it per sample with the
teacher-forced continuation and convert its output to our matrix layout (which
is Inseq's own: rows = prompt tokens then continuation tokens, NaN in the
future). Per-cell vectors are reduced with the requested dimension aggregation
(L2 norm by default, as Inseq's ``vnorm``); attention weights are averaged over
the selected layers and heads.

Inseq mutates what it wraps (pad/unk tokens of the tokenizer, the model's
``pad_token_id``, gradients, device, eval mode), so the adapter hands it a copy
of the tokenizer and restores the model's state afterwards.

For encoder-decoder models the matrix rows are the source (encoder) tokens only
(``n_prompt == len(source_tokens)``, nothing masked); target-side attributions
are not kept.
"""

from __future__ import annotations

import copy
import importlib.metadata
import logging
from typing import Any

import numpy as np
import torch

from ..errors import AttribError, InputError, UnsupportedMethodError
from ..options import AttributeOptions
from ..result import AttributionResult
from .base import Engine, register_engine
from .prep import Encoded, is_encoder_decoder, model_device, model_guard

logger = logging.getLogger(__name__)

__all__ = ["InseqEngine", "InseqFailure", "inseq_available"]

# methods Inseq runs once on the full sequence (no per-step scores)
_FINAL_STEP_METHODS = {"attention"}


class InseqFailure(AttribError):
    """Inseq raised while attributing (the model was restored)."""


def _module_snapshot(model: Any) -> list[tuple[Any, dict, dict, dict, Any]]:
    """Hooks and instance-level ``forward`` overrides of every submodule, to undo Inseq's."""
    return [
        (m, dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks), m.__dict__.get("forward"))
        for m in model.modules()
    ]


def _restore_modules(snapshot: list[tuple[Any, dict, dict, dict, Any]]) -> None:
    for m, fwd, pre, bwd, forward in snapshot:
        for store, saved in ((m._forward_hooks, fwd), (m._forward_pre_hooks, pre), (m._backward_hooks, bwd)):
            for k in [k for k in store if k not in saved]:
                del store[k]
        if forward is None:
            m.__dict__.pop("forward", None)
        else:
            m.__dict__["forward"] = forward


def inseq_available() -> bool:
    try:
        import inseq  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False
    return True


def _inseq_version() -> str:
    try:
        return importlib.metadata.version("inseq")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


@register_engine
class InseqEngine(Engine):
    """Every Inseq feature-attribution method, one sample at a time."""

    name = "inseq"

    def methods(self) -> list[str]:
        if not inseq_available():
            return []
        import inseq

        return sorted(m for m in inseq.list_feature_attribution_methods() if m != "dummy")

    def attribute(
        self,
        model: Any,
        tokenizer: Any,
        samples: list[Encoded],
        method: str,
        options: AttributeOptions,
        model_ref: str,
    ) -> list[AttributionResult]:
        if not is_encoder_decoder(model):
            _refuse_written_bos(tokenizer, samples)
        if not inseq_available():
            raise UnsupportedMethodError(
                "the inseq engine needs the 'inseq' package: pip install --no-deps inseq==0.7.1 "
                "and the extra 'attrib-mlops[inseq]'"
            )
        if method not in self.methods():
            raise UnsupportedMethodError(
                f"Inseq does not implement {method!r}; it supports {', '.join(self.methods())}"
            )
        import inseq

        enc_dec = is_encoder_decoder(model)
        own_scores = None
        device = model_device(model)
        tok = copy.deepcopy(tokenizer)  # inseq sets pad/unk tokens on what it gets
        cfg = model.config
        saved_pad = cfg.pad_token_id
        saved_grads = [(p, p.grad) for p in model.parameters()]
        restore_attn = None
        impl = getattr(cfg, "_attn_implementation", None)
        if method == "attention" and impl not in (None, "eager") and hasattr(model, "set_attn_implementation"):
            restore_attn = impl
            model.set_attn_implementation("eager")
        kwargs = self._method_kwargs(method, options)
        results: list[AttributionResult] = []
        snapshot = _module_snapshot(model)
        try:
            with model_guard(model):
                # model_guard turned requires_grad off; captum only needs input grads
                am = inseq.load_model(model, method, tokenizer=tok, device=str(device))
                final = bool(getattr(am.attribution_method, "is_final_step_method", method in _FINAL_STEP_METHODS))
                if final and not enc_dec:
                    # Inseq computes no step scores for these; use a teacher-forced forward of our own
                    from .native import step_scores

                    own_scores = step_scores(model, tokenizer, samples, options.batch_size)
                for k, s in enumerate(samples):
                    r = self._one(am, tok, s, method, options, kwargs, model_ref, enc_dec, final)
                    if own_scores is not None:
                        r.step_scores = own_scores[k]
                    results.append(r)
        except AttribError:
            raise
        except Exception as e:  # noqa: BLE001 - report Inseq failures as ours, with the cause
            raise InseqFailure(
                f"Inseq failed on method {method!r} with {type(model).__name__}: {type(e).__name__}: {e}"
            ) from e
        finally:
            _restore_modules(snapshot)
            cfg.pad_token_id = saved_pad
            for p, g in saved_grads:
                p.grad = g
            if restore_attn is not None:
                model.set_attn_implementation(restore_attn)
            if model_device(model) != device:  # pragma: no cover - inseq moved it
                model.to(device)
        return results

    @staticmethod
    def _method_kwargs(method: str, options: AttributeOptions) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if method in ("integrated_gradients", "layer_integrated_gradients"):
            if options.ig_method != "gausslegendre":
                raise UnsupportedMethodError(
                    f"the inseq engine integrates with Captum's default rule 'gausslegendre' only "
                    f"(Inseq reserves the 'method' argument); got ig_method={options.ig_method!r}. "
                    "Use engine='native' for other rules."
                )
            kw["n_steps"] = options.n_steps
            kw["internal_batch_size"] = max(1, options.n_steps)
        kw.update(options.method_kwargs)
        return kw

    def _one(self, am, tok, s: Encoded, method, options, kwargs, model_ref, enc_dec, final) -> AttributionResult:
        if enc_dec:
            out = am.attribute(
                input_texts=s.prompt,
                generated_texts=s.target,
                step_scores=[] if final else ["probability", "entropy"],
                show_progress=False,
                **kwargs,
            )
        else:
            text = tok.decode(s.ids, skip_special_tokens=False) if s.truncated else s.prompt + s.target
            prompt = tok.decode(s.ids[: s.n_prompt], skip_special_tokens=False) if s.truncated else s.prompt
            out = am.attribute(
                input_texts=prompt,
                generated_texts=text,
                step_scores=[] if final else ["probability", "entropy"],
                show_progress=False,
                **kwargs,
            )
        seq = out.sequence_attributions[0]
        if enc_dec:
            raw = seq.source_attributions
            tokens = [t.token for t in seq.source]
            targets = [t.token for t in seq.target][seq.attr_pos_start : seq.attr_pos_end]
            n_prompt = len(tokens)
        else:
            raw = seq.target_attributions
            ids = [t.id for t in seq.target]
            if ids != list(s.ids):
                raise InputError(
                    f"Inseq tokenised sample {s.sample_id or s.prompt[:30]!r} differently from the native path "
                    f"({len(ids)} vs {len(s.ids)} tokens); cannot lay out its matrix on the same tokens"
                )
            tokens = tok.convert_ids_to_tokens(s.ids)
            targets = tokens[s.n_prompt :]
            n_prompt = s.n_prompt
        mat = self._reduce(raw, method, options)
        if mat.shape[1] != len(targets):  # pragma: no cover - defensive
            raise InputError(f"Inseq returned {mat.shape[1]} target columns, expected {len(targets)}")
        scores = {
            k: np.asarray(v.float().cpu().numpy() if torch.is_tensor(v) else v, dtype=np.float32)
            for k, v in (seq.step_scores or {}).items()
        }
        info = {
            "model": model_ref,
            "options": options.key_dict(),
            "method_kwargs": {k: v for k, v in kwargs.items()},
            "dim_aggregation": self._agg_name(method, options),
            "attributed_fn": "probability",
            "inseq": _inseq_version(),
        }
        return AttributionResult(
            matrix=mat,
            source_tokens=tokens,
            target_tokens=targets,
            method=method,
            engine=self.name,
            step_scores=scores,
            info=info,
            n_prompt=n_prompt,
            prompt=s.prompt,
            target=s.target,
            sample_id=s.sample_id,
        )

    @staticmethod
    def _agg_name(method: str, options: AttributeOptions) -> str | None:
        if method == "attention":
            return "mean over layers and heads"
        if method == "occlusion":
            return None
        return options.dim_aggregation

    @staticmethod
    def _reduce(raw: torch.Tensor, method: str, options: AttributeOptions) -> np.ndarray:
        t = raw.detach().float().cpu()
        if method == "attention":
            # [rows, targets, layers, heads]
            if t.ndim == 4:
                if options.layers is not None:
                    t = t[:, :, options.layers]
                if options.heads is not None:
                    t = t[:, :, :, options.heads]
                return t.mean(dim=(2, 3)).numpy()
            while t.ndim > 2:
                t = t.mean(-1)
            return t.numpy()
        if t.ndim == 2:
            return t.numpy()
        t = t.reshape(t.shape[0], t.shape[1], -1)
        if options.dim_aggregation == "l2":
            return torch.linalg.vector_norm(t, dim=-1).numpy()
        if options.dim_aggregation == "sum":
            return t.sum(-1).numpy()
        return t.mean(-1).numpy()


def _refuse_written_bos(tokenizer: Any, samples: list[Encoded]) -> None:
    """Inseq re-encodes prompts adding the BOS token; a chat-templated prompt that wrote its own gets two.

    Raises:
        UnsupportedMethodError: one line naming the sample, Inseq issue 278 and what to do.
    """
    from .prep import written_bos

    for k, s in enumerate(samples):
        if written_bos(tokenizer, s.prompt):
            raise UnsupportedMethodError(
                f"sample {k}: Inseq cannot run this chat-templated prompt (Inseq issue 278): the template wrote the "
                "BOS token and Inseq adds another; use engine='native', or pass the text of "
                "attrib_mlops.sources.conversation.chat_prompt_for_engines(tokenizer, messages)")
