"""LIME and KernelSHAP through Captum, for sequence classifiers and causal LMs.

Each token is one interpretable feature. A perturbed input replaces the
absent tokens' embeddings by the baseline's (``unk`` or ``zeros``, as in the
native engines: special tokens and, for causal LMs, EOS stay as they are), and
Captum fits the surrogate: ``Lime`` (ridge regression with ``alpha=1.0``,
as the ``lime`` package's text explainer, weighted by Captum's exponential
cosine kernel; Captum's own default, a Lasso with ``alpha=0.01``, zeroes every
coefficient on class probabilities) or ``KernelShap`` (Shapley kernel, linear
regression).

* **Classifiers** (:class:`~.classifier_prep.ClassifierSample`): one column per
  attributed class, the function is the class probability; the layout is the
  native classifier engine's.
* **Causal LMs** (:class:`~.prep.Encoded`): for target token ``j`` the input is
  the sequence before it (prompt and earlier target tokens), the function is
  the probability of token ``j``; cells that would look into the future are
  NaN, as in the native engine.

``method_kwargs``: ``n_samples`` (perturbations per explained column, default
200), ``perturbations_per_eval`` (perturbed copies per forward pass, default
``max(16, batch_size)``), ``seed`` (default 0; the caller's RNG streams are
restored), ``alpha`` (LIME's ridge penalty; 0 = ordinary least squares).

Example:
    >>> from attrib_mlops import attribute                                    # doctest: +SKIP
    >>> attribute(clf, tok, ["a fine film"], methods=["lime"], method_kwargs={"n_samples": 300})  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from ..errors import InputError, UnsupportedMethodError
from ..options import AttributeOptions
from ..result import AttributionResult
from .base import Engine, register_engine
from .classifier import classifier_info, classifier_result
from .classifier_prep import (
    ClassifierBatch,
    ClassifierForward,
    ClassifierSample,
    baseline_embeddings,
    classifier_guard,
    label_names,
    pooling_of,
)
from .prep import Encoded, is_encoder_decoder, model_device, model_guard
from .registry import method_names


def __getattr__(name: str) -> tuple[str, ...]:
    # derived from the method registry (engines/methods/lime.py, kernel_shap.py)
    if name == "METHODS":
        return tuple(method_names("captum"))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

logger = logging.getLogger(__name__)

__all__ = ["CaptumEngine", "METHODS"]

_KWARGS = ("n_samples", "perturbations_per_eval", "seed", "alpha")


def _explainer(method: str, fn: Any, kwargs: dict[str, Any]) -> Any:
    from captum.attr import KernelShap, Lime

    if method == "kernel_shap":
        return KernelShap(fn)
    from captum._utils.models.linear_model import SkLearnLinearRegression, SkLearnRidge

    alpha = float(kwargs.get("alpha", 1.0))
    if alpha < 0:
        raise InputError(f"method_kwargs alpha must be >= 0, got {alpha}")
    surrogate = SkLearnLinearRegression() if alpha == 0.0 else SkLearnRidge(alpha=alpha)
    return Lime(fn, interpretable_model=surrogate)


@register_engine
class CaptumEngine(Engine):
    """Perturbation surrogates (LIME, KernelSHAP) through Captum; see the module docstring."""

    name = "captum"

    def methods(self) -> list[str]:
        return method_names(self.name)

    def attribute(
        self,
        model: Any,
        tokenizer: Any,
        samples: list,
        method: str,
        options: AttributeOptions,
        model_ref: str,
    ) -> list[AttributionResult]:
        if method not in self.methods():
            raise UnsupportedMethodError(
                f"the captum engine implements {', '.join(self.methods())}, not {method!r}; use engine='auto'"
            )
        try:
            import captum  # noqa: F401 - only: is it installed?
        except ImportError as e:
            raise UnsupportedMethodError(
                f"{method} needs Captum: pip install 'attrib-mlops[captum]'"
            ) from e
        kw = dict(options.method_kwargs)
        unknown = sorted(set(kw) - set(_KWARGS))
        if unknown:
            raise InputError(f"unknown method_kwargs {unknown} for {method}; valid: {', '.join(_KWARGS)}")
        n_samples = int(kw.get("n_samples", 200))
        if n_samples < 2:
            raise InputError(f"method_kwargs n_samples must be >= 2, got {n_samples}")
        ppe = int(kw.get("perturbations_per_eval", max(16, options.batch_size)))
        seed = int(kw.get("seed", 0))
        device = model_device(model)
        if options.device and torch.device(options.device) != device:
            raise InputError(
                f"options.device={options.device!r} but the model is on {device}; move the model or drop the option"
            )
        run = dict(n_samples=n_samples, perturbations_per_eval=ppe)
        with model_guard(model):
            torch.manual_seed(seed)  # model_guard forked the RNG: the caller's stream comes back afterwards
            if samples and isinstance(samples[0], ClassifierSample):
                out = self._classifier(model, tokenizer, samples, method, options, model_ref, kw, run, device)
            else:
                if is_encoder_decoder(model):
                    raise UnsupportedMethodError("the captum engine handles decoder-only causal LMs and classifiers")
                out = [self._causal(model, tokenizer, s, method, options, model_ref, kw, run, device)
                       for s in samples]
        for r in out:
            r.info.update({"n_samples": n_samples, "seed": seed, "surrogate": method,
                           "captum": _captum_version()})
        return out

    # ------------------------------------------------------------- classifiers
    def _classifier(self, model, tokenizer, samples, method, options, model_ref, kw, run, device):
        names, from_cfg = label_names(model)
        pooling = pooling_of(model)
        left = pooling == "last"
        common = classifier_info(model, names, from_cfg, pooling)
        results = []
        with classifier_guard(model, tokenizer) as pad_id:
            fwd = ClassifierForward(model, left)
            for s in samples:
                batch = ClassifierBatch([s], pad_id, device, left)
                x0 = model.get_input_embeddings()(batch.ids).detach()
                base = baseline_embeddings(model, tokenizer, batch, x0, options)

                def fn(e: torch.Tensor) -> torch.Tensor:
                    n = e.shape[0]
                    return fwd(e, batch.mask.expand(n, -1), batch.pos.expand(n, -1)).softmax(-1)

                with torch.no_grad():
                    p0 = fn(x0)
                _, _, per = batch.columns(p0.argmax(-1))
                L, D = x0.shape[1], x0.shape[2]
                mask = torch.arange(L, device=device).view(1, L, 1).expand(1, L, D)
                mat = np.zeros((L, len(per[0])), dtype=np.float32)
                for k, c in enumerate(per[0]):
                    attr = _explainer(method, fn, kw).attribute(
                        x0, baselines=base, target=int(c), feature_mask=mask, **run)
                    mat[:, k] = attr[0, :, 0].detach().float().cpu().numpy()
                r = classifier_result(tokenizer, s, mat, p0[0].float().cpu().numpy(), per[0], names, method,
                                      options, model_ref, common, self.name)
                r.info["dim_aggregation"] = None
                results.append(r)
        return results

    # -------------------------------------------------------------- causal LMs
    def _causal(self, model, tokenizer, s: Encoded, method, options, model_ref, kw, run, device):
        ids = torch.tensor([s.ids], device=device)
        emb = model.get_input_embeddings()
        x_all = emb(ids).detach()
        if options.baseline == "zeros":
            base_all = torch.zeros_like(x_all)
        else:
            unk = tokenizer.unk_token_id
            if unk is None:
                raise InputError("baseline='unk' needs a tokenizer with an unknown token; pass baseline='zeros'")
            base_ids = torch.full_like(ids, unk)
            if tokenizer.eos_token_id is not None:
                base_ids = torch.where(ids == tokenizer.eos_token_id, ids, base_ids)
            base_all = emb(base_ids).detach()
        n, T = s.n_prompt, s.n_target
        mat = np.full((len(s.ids), T), np.nan, dtype=np.float32)
        with torch.no_grad():
            logp = model(input_ids=ids).logits[0].float().log_softmax(-1)
        prob = np.array([float(logp[n - 1 + j, s.ids[n + j]].exp()) for j in range(T)], dtype=np.float32)
        ent = np.array([float(-(logp[n - 1 + j].exp() * logp[n - 1 + j]).nansum()) for j in range(T)],
                       dtype=np.float32)
        for j in range(T):
            upto = n + j
            x0, base = x_all[:, :upto], base_all[:, :upto]

            def fn(e: torch.Tensor) -> torch.Tensor:
                return model(inputs_embeds=e).logits[:, -1].float().softmax(-1)

            D = x0.shape[-1]
            mask = torch.arange(upto, device=device).view(1, upto, 1).expand(1, upto, D)
            attr = _explainer(method, fn, kw).attribute(x0, baselines=base, target=int(s.ids[upto]),
                                                        feature_mask=mask, **run)
            mat[:upto, j] = attr[0, :, 0].detach().float().cpu().numpy()
        tokens = tokenizer.convert_ids_to_tokens(s.ids)
        info: dict[str, Any] = {"model": model_ref, "options": options.key_dict(), "dim_aggregation": None,
                                "attributed_fn": "probability"}
        if s.truncated:
            info["truncated_prompt_tokens"] = s.truncated
        return AttributionResult(
            matrix=mat, source_tokens=tokens, target_tokens=tokens[n:], method=method, engine=self.name,
            step_scores={"probability": prob, "entropy": ent}, info=info, n_prompt=n, prompt=s.prompt,
            target=s.target, sample_id=s.sample_id,
        )


def _captum_version() -> str:
    try:
        import captum

        return str(captum.__version__)
    except Exception:  # noqa: BLE001
        return "unknown"
