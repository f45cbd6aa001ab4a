"""The native fast path for sequence classifiers: batched attribution of class probabilities.

Encoder classifiers (BERT, RoBERTa, DistilBERT style) and decoder classifiers
(``GPT2ForSequenceClassification`` and the like) are attributed with:

* ``saliency``: ``|d p(c) / d x_i|``, reduced over the embedding dimension;
* ``input_x_gradient``: ``d p(c) / d x_i * x_i``, reduced;
* ``integrated_gradients``: ``(x_i - x'_i) * sum_s w_s d p(c) / d x_i (x' + a_s (x - x'))``
  with Captum's integration rules, the interpolation steps of many samples
  batched into one forward/backward;
* ``attention``: the attention weights of the pooled query (the first token for
  encoders, the last real token for decoders), averaged over the chosen layers
  and heads; it does not depend on the class, so every column is the same;
* ``occlusion``: ``p(c | x) - p(c | x with token i replaced by the baseline)``
  (signed, Captum's ``Occlusion`` with a one-token window), every occluded
  copy of every sample of a batch in shared forward passes.

``p(c)`` is the softmax probability of class ``c``; ``x`` the input token
embeddings. Per-cell vectors are reduced by ``dim_aggregation`` (L2 by
default), baselines are ``unk`` (the unknown token at every non-special
position) or ``zeros``: the same conventions as the native causal engine. Each
result has one column per attributed class (the predicted class by default),
``target_tokens`` = the label names, every token as a row (special tokens
flagged in ``info["special_tokens_mask"]``) and ``n_prompt`` = the number of
rows (no future mask). Results equal Captum's cell by cell
(``tests/engines/test_classifier.py``).

Example:
    >>> from attrib_mlops.engines.classifier_prep import encode_texts          # doctest: +SKIP
    >>> samples = encode_texts(model, tok, ["a fine film"], [None])             # doctest: +SKIP
    >>> ClassifierEngine().attribute(model, tok, samples, "saliency", AttributeOptions(), "m")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..errors import InputError, UnsupportedMethodError
from ..options import AttributeOptions
from ..result import AttributionResult
from .base import Engine
from .classifier_prep import (
    ClassifierBatch,
    ClassifierForward,
    ClassifierSample,
    baseline_embeddings,
    batching_is_exact,
    chunks,
    classifier_guard,
    label_names,
    pooling_of,
)
from .native import integration_points
from .prep import model_device, model_guard

logger = logging.getLogger(__name__)

__all__ = ["ClassifierEngine", "METHODS", "classifier_info", "classifier_result", "eager_attention"]

GRADIENT_METHODS = ("saliency", "input_x_gradient", "integrated_gradients")
METHODS = GRADIENT_METHODS + ("attention", "occlusion")


def _dim_agg(v: torch.Tensor, how: str) -> torch.Tensor:
    v = v.float()
    if how == "l2":
        return torch.linalg.vector_norm(v, dim=-1)
    if how == "sum":
        return v.sum(-1)
    return v.mean(-1)


@contextlib.contextmanager
def eager_attention(model: Any):
    """Switch to eager attention (the only one that returns weights) for the duration."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    switch = impl not in (None, "eager") and hasattr(model, "set_attn_implementation")
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(impl)


def classifier_info(model: Any, names: list[str], from_config: bool, pooling: str) -> dict[str, Any]:
    """Provenance shared by every classifier result of one call."""
    return {
        "task": "sequence_classification",
        "labels": list(names),
        "label_names": "id2label" if from_config else (
            "indices: the model config has no id2label (or only the default LABEL_<i> names)"),
        "pooling": pooling,
        "padding_side": "left" if pooling == "last" else "right",
        "model_class": type(model).__name__,
    }


def classifier_result(tokenizer, s: ClassifierSample, mat, p, classes, names, method, options, model_ref,
                      common, engine: str = "native") -> AttributionResult:
    """One :class:`AttributionResult` of a classifier sample: ``mat`` [tokens, classes], ``p`` class probabilities."""
    tokens = tokenizer.convert_ids_to_tokens(s.ids)
    pred = int(np.argmax(p))
    ent = float(-(p * np.log(np.clip(p, 1e-45, None))).sum())
    info: dict[str, Any] = {
        "model": model_ref,
        "options": options.key_dict(),
        "dim_aggregation": options.dim_aggregation if method in GRADIENT_METHODS else None,
        "attributed_fn": "probability",
        **common,
        "attributed_labels": [int(c) for c in classes],
        "target_source": "predicted" if s.labels is None else "given",
        "predicted_index": pred,
        "predicted_label": names[pred],
        "predicted_probability": float(p[pred]),
        "special_tokens_mask": [int(x) for x in s.special],
    }
    if method == "attention":
        info["dim_aggregation"] = "mean over layers and heads"
        info["layers"] = options.layers
        info["heads"] = options.heads
    if method == "occlusion":
        info["occlusion"] = "signed: p(class) - p(class | token replaced by the baseline)"
    if s.word_ids is not None:
        info["word_ids"] = list(s.word_ids)
    if s.offsets is not None:
        info["offsets"] = [list(o) for o in s.offsets]
    if s.truncated:
        info["truncated_tokens"] = s.truncated
    target_tokens = [names[c] for c in classes]
    return AttributionResult(
        matrix=mat,
        source_tokens=tokens,
        target_tokens=target_tokens,
        method=method,
        engine=engine,
        step_scores={"probability": p[list(classes)], "entropy": np.full(len(classes), ent)},
        info=info,
        n_prompt=len(tokens),
        prompt=s.text,
        target=", ".join(target_tokens),
        sample_id=s.sample_id,
    )


class ClassifierEngine(Engine):
    """Batched attribution for ``*ForSequenceClassification`` models (see the module docstring)."""

    name = "native"

    def methods(self) -> list[str]:
        return list(METHODS)

    def attribute(
        self,
        model: Any,
        tokenizer: Any,
        samples: list[ClassifierSample],
        method: str,
        options: AttributeOptions,
        model_ref: str,
    ) -> list[AttributionResult]:
        if method not in METHODS:
            raise UnsupportedMethodError(
                f"the native classifier engine does not implement {method!r}; it supports {', '.join(METHODS)} "
                "(lime and kernel_shap run through Captum: engine='auto' or 'captum')"
            )
        device = torch.device(options.device) if options.device else model_device(model)
        if device != model_device(model):
            raise InputError(
                f"options.device={options.device!r} but the model is on {model_device(model)}; "
                "move the model (model.to(...)) or drop the device option"
            )
        names, from_cfg = label_names(model)
        pooling = pooling_of(model)
        left = pooling == "last"
        common = classifier_info(model, names, from_cfg, pooling)
        fn: Callable[..., tuple[torch.Tensor, torch.Tensor, list[list[int]]]] = {
            "saliency": self._gradients,
            "input_x_gradient": self._gradients,
            "integrated_gradients": self._integrated_gradients,
            "attention": self._attention,
            "occlusion": self._occlusion,
        }[method]
        with model_guard(model), classifier_guard(model, tokenizer) as pad_id:
            fwd = ClassifierForward(model, left)
            exact = batching_is_exact(model, fwd, samples[0], pad_id, device)
            common["batched_forward"] = exact
            bar = _progress(len(samples), f"native {method}", options.show_progress)
            # batches of similar lengths waste less compute on padding; results go back in input order
            order = sorted(range(len(samples)), key=lambda i: len(samples[i].ids))
            slots: list[AttributionResult | None] = [None] * len(samples)
            for idx in chunks(order, options.batch_size if exact else 1):
                chunk = [samples[i] for i in idx]
                batch = ClassifierBatch(chunk, pad_id, device, left)
                x0 = model.get_input_embeddings()(batch.ids).detach()
                cells, p0, per = fn(model, tokenizer, fwd, batch, x0, method, options, pooling)
                cells = cells.detach().float().cpu().numpy()  # [N, L, K]
                p = p0.cpu().numpy()
                for b, (i, s) in enumerate(zip(idx, chunk)):
                    mat = cells[b, batch.rows(b), : len(per[b])]
                    slots[i] = classifier_result(tokenizer, s, mat, p[b], per[b], names, method, options,
                                                 model_ref, common, self.name)
                bar.update(len(chunk))
            bar.close()
        return [r for r in slots if r is not None]

    @staticmethod
    def _probs(fwd, batch: ClassifierBatch, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]:
        """Class probabilities of the unperturbed batch (no grad) and the columns they select."""
        with torch.no_grad():
            p0 = fwd(x0, batch.mask, batch.pos).softmax(-1)
        return (p0, *batch.columns(p0.argmax(-1)))

    @staticmethod
    def _column_grads(probs, x, cols, valid, weights=None):
        """Yield (k, d probs[cols[:, k]] / d x) for every column k; ``weights`` [len(x)] scale each row's output."""
        K = cols.shape[1]
        for k in range(K):
            out = probs.gather(1, cols[:, k : k + 1]).squeeze(1) * valid[:, k].to(probs.dtype)
            if weights is not None:
                out = out * weights
            (g,) = torch.autograd.grad(out.sum(), x, retain_graph=k < K - 1)
            yield k, g

    # ------------------------------------------------------------------ methods
    def _gradients(self, model, tokenizer, fwd, batch, x0, method, options, pooling):
        with torch.enable_grad():
            x = x0.clone().requires_grad_(True)
            probs = fwd(x, batch.mask, batch.pos).softmax(-1)  # one forward serves the prediction and the grads
            p0 = probs.detach()
            cols, valid, per = batch.columns(p0.argmax(-1))
            cells = torch.zeros((batch.N, batch.L, cols.shape[1]), dtype=torch.float32)
            for k, g in self._column_grads(probs, x, cols, valid):
                v = g.abs() if method == "saliency" else g * x0
                cells[:, :, k] = _dim_agg(v, options.dim_aggregation).cpu()
        return cells, p0, per

    def _integrated_gradients(self, model, tokenizer, fwd, batch, x0, method, options, pooling):
        p0, cols, valid, per = self._probs(fwd, batch, x0)
        N, L, K = batch.N, batch.L, cols.shape[1]
        base = baseline_embeddings(model, tokenizer, batch, x0, options)
        alphas, steps = integration_points(options.n_steps, options.ig_method)
        total = torch.zeros((K, N, L, x0.shape[-1]), dtype=torch.float32, device=x0.device)
        per_fwd = max(1, options.max_tokens_per_forward // max(1, N * L))
        with torch.enable_grad():
            for s0 in range(0, len(alphas), per_fwd):
                a = torch.tensor(alphas[s0 : s0 + per_fwd], dtype=x0.dtype, device=x0.device)
                w = torch.tensor(steps[s0 : s0 + per_fwd], dtype=torch.float32, device=x0.device)
                S = a.shape[0]
                xs = (base.unsqueeze(0) + a.view(S, 1, 1, 1) * (x0 - base).unsqueeze(0)).reshape(S * N, L, -1)
                xs = xs.detach().requires_grad_(True)
                rep = lambda t: t.unsqueeze(0).expand(S, *t.shape).reshape(S * N, *t.shape[1:])  # noqa: E731
                weights = w.repeat_interleave(N)
                probs = fwd(xs, rep(batch.mask), rep(batch.pos)).softmax(-1)
                for k, g in self._column_grads(probs, xs, rep(cols), rep(valid), weights):
                    total[k] += g.float().reshape(S, N, L, -1).sum(0)
        delta = (x0 - base).float()
        cells = torch.zeros((N, L, K), dtype=torch.float32)
        for k in range(K):
            cells[:, :, k] = _dim_agg(total[k] * delta, options.dim_aggregation).cpu()
        return cells, p0, per

    def _attention(self, model, tokenizer, fwd, batch, x0, method, options, pooling):
        with eager_attention(model), torch.no_grad():
            out = fwd.outputs(x0, batch.mask, batch.pos, output_attentions=True)
        p0 = out.logits.float().softmax(-1)
        cols, _, per = batch.columns(p0.argmax(-1))
        atts = out.attentions
        if not atts or atts[0] is None:
            raise UnsupportedMethodError(
                f"{type(model).__name__} returned no attention weights; load it with attn_implementation='eager'"
            )
        n_layers = len(atts)
        layers = options.layers if options.layers is not None else list(range(n_layers))
        try:
            sel = torch.stack([atts[i] for i in layers])  # [l, N, H, L, L]
        except IndexError:
            raise InputError(f"layers={options.layers} out of range: the model has {n_layers} layers") from None
        if options.heads is not None:
            H = sel.shape[2]
            if any(h >= H or h < -H for h in options.heads):
                raise InputError(f"heads={options.heads} out of range: the model has {H} heads")
            sel = sel[:, :, options.heads]
        mean = sel.float().mean(dim=(0, 2))  # [N, Lq, Lk]
        q = batch.pooled_position(pooling)
        row = mean[torch.arange(batch.N, device=mean.device), q]  # [N, Lk]
        return row.unsqueeze(-1).expand(-1, -1, cols.shape[1]).cpu(), p0, per

    def _occlusion(self, model, tokenizer, fwd, batch, x0, method, options, pooling):
        p0, cols, valid, per = self._probs(fwd, batch, x0)
        N, L, K = batch.N, batch.L, cols.shape[1]
        cells = torch.zeros((N, L, K), dtype=torch.float32)
        with torch.no_grad():
            base = baseline_embeddings(model, tokenizer, batch, x0, options)
            same = (base == x0).all(-1) | (batch.mask == 0)  # occluding these changes nothing: exactly 0
            jobs = [(b, i) for b in range(N) for i in range(batch.rows(b).start, batch.rows(b).stop)
                    if not bool(same[b, i])]
            per_fwd = max(1, options.max_tokens_per_forward // L)
            p0c = p0.gather(1, cols)  # [N, K]
            for k0 in range(0, len(jobs), per_fwd):
                part = jobs[k0 : k0 + per_fwd]
                bs = torch.tensor([b for b, _ in part], device=x0.device)
                rows = torch.tensor([i for _, i in part], device=x0.device)
                xs = x0[bs].clone()
                ar = torch.arange(len(part), device=x0.device)
                xs[ar, rows] = base[bs, rows]
                p = fwd(xs, batch.mask[bs], batch.pos[bs]).softmax(-1).gather(1, cols[bs])  # [J, K]
                diff = (p0c[bs] - p).float().cpu()
                cells[bs.cpu(), rows.cpu()] = diff
        return cells, p0, per


class _NullBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, show: bool):
    if not show:
        return _NullBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="sample")
