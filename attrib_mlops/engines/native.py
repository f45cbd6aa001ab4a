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

Results match Inseq cell by cell (tests/engines/test_native_vs_inseq.py): the
attributed function is the target token's probability, gradients are taken
with respect to the input token embeddings, baselines are the UNK embedding
(EOS stays EOS), per-cell vectors are reduced by the L2 norm by default.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from ..errors import InputError, UnsupportedMethodError
from ..options import AttributeOptions
from ..result import AttributionResult
from .base import Engine
from .prep import Encoded, is_encoder_decoder, model_device, model_guard

logger = logging.getLogger(__name__)

__all__ = ["NativeEngine", "integration_points", "step_scores"]

GRADIENT_METHODS = ("saliency", "input_x_gradient", "integrated_gradients")
METHODS = GRADIENT_METHODS + ("attention", "occlusion")


def integration_points(n_steps: int, rule: str) -> tuple[list[float], list[float]]:
    """Alphas and step weights of an integration rule on [0, 1] (Captum's definitions)."""
    n = n_steps
    if rule == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(n)
        return list(0.5 * (x + 1.0)), list(0.5 * w)
    if rule == "riemann_trapezoid":
        if n < 2:
            raise InputError("riemann_trapezoid needs n_steps >= 2")
        alphas = list(np.linspace(0.0, 1.0, n))
        w = [1.0 / n] * n  # Captum's weights (they sum to (n-1)/n)
        w[0] = w[-1] = 1.0 / (2 * n)
        return alphas, w
    if rule == "riemann_left":
        return list(np.linspace(0.0, 1.0 - 1.0 / n, n)), [1.0 / n] * n
    if rule == "riemann_right":
        return list(np.linspace(1.0 / n, 1.0, n)), [1.0 / n] * n
    if rule == "riemann_middle":
        return list(np.linspace(1.0 / (2 * n), 1.0 - 1.0 / (2 * n), n)), [1.0 / n] * n
    raise InputError(f"unknown integration rule {rule!r}")


class _Batch:
    """Right-padded samples. Right padding is exact for causal models: real
    tokens never attend to the padding that follows them, and positions are
    unchanged."""

    def __init__(self, samples: list[Encoded], pad_id: int, device: torch.device):
        self.samples = samples
        self.lengths = [len(s.ids) for s in samples]
        self.n_prompt = [s.n_prompt for s in samples]
        self.n_target = [s.n_target for s in samples]
        L = max(self.lengths)
        T = max(self.n_target)
        ids = torch.full((len(samples), L), pad_id, dtype=torch.long)
        mask = torch.zeros((len(samples), L), dtype=torch.long)
        pos = torch.zeros((len(samples), T), dtype=torch.long)
        tgt = torch.zeros((len(samples), T), dtype=torch.long)
        valid = torch.zeros((len(samples), T), dtype=torch.bool)
        for b, s in enumerate(samples):
            ids[b, : len(s.ids)] = torch.tensor(s.ids)
            mask[b, : len(s.ids)] = 1
            t = s.n_target
            pos[b, :t] = torch.arange(s.n_prompt - 1, s.n_prompt - 1 + t)
            tgt[b, :t] = torch.tensor(s.ids[s.n_prompt :])
            valid[b, :t] = True
        self.ids, self.mask = ids.to(device), mask.to(device)
        self.pos, self.tgt, self.valid = pos.to(device), tgt.to(device), valid.to(device)
        self.L, self.T = L, T


class _Scorer:
    """Target probabilities from input embeddings, via the cheapest exact route."""

    def __init__(self, model: Any, split: bool):
        self.model = model
        self.split = split
        if split:
            self.body = model.base_model
            self.head = model.get_output_embeddings()

    def hidden(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-position states from which target logits are read (hidden or logits)."""
        if self.split:
            return self.body(inputs_embeds=x, attention_mask=mask).last_hidden_state
        return self.model(inputs_embeds=x, attention_mask=mask).logits

    def logits_at(self, h: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Float32 logits at ``pos`` ([N, K] positions) -> [N, K, V]."""
        g = h.gather(1, pos.unsqueeze(-1).expand(*pos.shape, h.shape[-1]))
        if self.split:
            g = self.head(g)
        return g.float()


def _prob_entropy(logits: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logp = logits.log_softmax(-1)
    p = logp.exp()
    prob = p.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    ent = -(p * logp).nansum(-1)
    return prob, ent


def _dim_agg(v: torch.Tensor, how: str) -> torch.Tensor:
    v = v.float()
    if how == "l2":
        return torch.linalg.vector_norm(v, dim=-1)
    if how == "sum":
        return v.sum(-1)
    return v.mean(-1)


class NativeEngine(Engine):
    """Batched attribution for decoder-only causal LMs (see module docstring)."""

    name = "native"

    def __init__(self) -> None:
        self._split_ok: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def methods(self) -> list[str]:
        return list(METHODS)

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
        if method not in METHODS:
            raise UnsupportedMethodError(
                f"the native engine does not implement {method!r}; it supports {', '.join(METHODS)}. "
                "Use engine='inseq' or engine='auto'."
            )
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
        fn: Callable[..., tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]] = {
            "saliency": self._gradients,
            "input_x_gradient": self._gradients,
            "integrated_gradients": self._integrated_gradients,
            "attention": self._attention,
            "occlusion": self._occlusion,
        }[method]
        results: list[AttributionResult] = []
        with model_guard(model):
            scorer = self._scorer(model, samples, pad_id, device)
            bar = _progress(len(samples), f"native {method}", options.show_progress)
            for chunk in _chunks(samples, options.batch_size):
                batch = _Batch(chunk, pad_id, device)
                mats, probs, ents = fn(model, tokenizer, scorer, batch, method, options)
                for b, s in enumerate(chunk):
                    results.append(self._result(tokenizer, s, mats[b], probs[b], ents[b], method, options, model_ref))
                bar.update(len(chunk))
            bar.close()
        return results

    # ----------------------------------------------------------------- helpers
    def _scorer(self, model: Any, samples: list[Encoded], pad_id: int, device: torch.device) -> _Scorer:
        ok = self._split_ok.get(model)
        if ok is None:
            ok = False
            head = getattr(model, "get_output_embeddings", lambda: None)()
            body = getattr(model, "base_model", None)
            if isinstance(head, torch.nn.Linear) and body is not None and body is not model:
                batch = _Batch(samples[:1], pad_id, device)
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
        return _Scorer(model, ok)

    def _result(self, tokenizer, s: Encoded, mat, prob, ent, method, options, model_ref) -> AttributionResult:
        tokens = tokenizer.convert_ids_to_tokens(s.ids)
        n = s.n_prompt
        info: dict[str, Any] = {
            "model": model_ref,
            "options": options.key_dict(),
            "dim_aggregation": options.dim_aggregation if method in GRADIENT_METHODS else None,
            "attributed_fn": "probability",
        }
        if method == "attention":
            info["dim_aggregation"] = "mean over layers and heads"
            info["layers"] = options.layers
            info["heads"] = options.heads
        if s.truncated:
            info["truncated_prompt_tokens"] = s.truncated
        return AttributionResult(
            matrix=mat,
            source_tokens=tokens,
            target_tokens=tokens[n:],
            method=method,
            engine=self.name,
            step_scores={"probability": prob, "entropy": ent},
            info=info,
            n_prompt=n,
            prompt=s.prompt,
            target=s.target,
            sample_id=s.sample_id,
        )

    @staticmethod
    def _empty(batch: _Batch) -> list[np.ndarray]:
        out = []
        for b in range(len(batch.samples)):
            m = np.full((batch.lengths[b], batch.n_target[b]), np.nan, dtype=np.float32)
            out.append(m)
        return out

    @staticmethod
    def _fill_column(mats: list[np.ndarray], batch: _Batch, j: int, cells: np.ndarray) -> None:
        """cells: [N, L] scores for target j; keep rows 0..n_prompt+j-1."""
        for b in range(len(batch.samples)):
            if j < batch.n_target[b]:
                upto = batch.n_prompt[b] + j
                mats[b][:upto, j] = cells[b, :upto]

    @staticmethod
    def _scores(batch: _Batch, prob: torch.Tensor, ent: torch.Tensor) -> tuple[list[np.ndarray], list[np.ndarray]]:
        p, e = prob.detach().cpu().numpy(), ent.detach().cpu().numpy()
        return [p[b, : batch.n_target[b]] for b in range(len(batch.samples))], [
            e[b, : batch.n_target[b]] for b in range(len(batch.samples))
        ]

    @staticmethod
    def _baseline(model, tokenizer, batch: _Batch, x0: torch.Tensor, options: AttributeOptions) -> torch.Tensor:
        if options.baseline == "zeros":
            return torch.zeros_like(x0)
        unk = tokenizer.unk_token_id
        if unk is None:
            raise InputError(
                "baseline='unk' needs a tokenizer with an unknown token (tokenizer.unk_token_id is None); "
                "pass baseline='zeros'"
            )
        eos = tokenizer.eos_token_id
        base_ids = torch.full_like(batch.ids, unk)
        if eos is not None:
            base_ids = torch.where(batch.ids == eos, batch.ids, base_ids)
        return model.get_input_embeddings()(base_ids).detach()

    def _use_vmap(self, options: AttributeOptions, device: torch.device) -> bool:
        return options.vjp == "vmap" or (options.vjp == "auto" and device.type == "cuda")

    def _per_target_grads(
        self, scorer: _Scorer, x: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, tgt: torch.Tensor,
        valid: torch.Tensor, weights: torch.Tensor | None, use_vmap: bool,
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield (j, d prob_j / d x, prob_j, entropy_j) for every target column j.

        ``weights`` ([N]) scales each sequence's output (integration weights).
        """
        h = scorer.hidden(x, mask)
        T = pos.shape[1]
        go_scale = valid.to(x.dtype)
        if weights is not None:
            go_scale = go_scale * weights.to(x.dtype).unsqueeze(1)
        if use_vmap:
            logits = scorer.logits_at(h, pos)
            prob, ent = _prob_entropy(logits, tgt)
            eye = torch.eye(T, dtype=prob.dtype, device=prob.device)
            go = eye.unsqueeze(1) * go_scale.to(prob.dtype).unsqueeze(0)  # [T, N, T]
            (g,) = torch.autograd.grad(prob, x, grad_outputs=go, is_grads_batched=True)
            for j in range(T):
                yield j, g[j], prob[:, j].detach(), ent[:, j].detach()
            return
        for j in range(T):
            logits = scorer.logits_at(h, pos[:, j : j + 1])
            prob, ent = _prob_entropy(logits, tgt[:, j : j + 1])
            (g,) = torch.autograd.grad(
                prob.squeeze(1), x, grad_outputs=go_scale[:, j].to(prob.dtype), retain_graph=j < T - 1
            )
            yield j, g, prob[:, 0].detach(), ent[:, 0].detach()

    # ------------------------------------------------------------------ methods
    def _gradients(self, model, tokenizer, scorer, batch: _Batch, method, options):
        mats = self._empty(batch)
        x0 = model.get_input_embeddings()(batch.ids).detach()
        prob = torch.zeros(batch.pos.shape, dtype=torch.float32)
        ent = torch.zeros_like(prob)
        with torch.enable_grad():
            x = x0.clone().requires_grad_(True)
            use_vmap = self._use_vmap(options, x.device)
            for j, g, p, e in self._per_target_grads(
                scorer, x, batch.mask, batch.pos, batch.tgt, batch.valid, None, use_vmap
            ):
                v = g.abs() if method == "saliency" else g * x0
                cells = _dim_agg(v, options.dim_aggregation).cpu().numpy()
                self._fill_column(mats, batch, j, cells)
                prob[:, j], ent[:, j] = p.cpu(), e.cpu()
        probs, ents = self._scores(batch, prob, ent)
        return mats, probs, ents

    def _integrated_gradients(self, model, tokenizer, scorer, batch: _Batch, method, options):
        mats = self._empty(batch)
        x0 = model.get_input_embeddings()(batch.ids).detach()
        base = self._baseline(model, tokenizer, batch, x0, options)
        alphas, steps = integration_points(options.n_steps, options.ig_method)
        N, L, T = x0.shape[0], batch.L, batch.T
        total = torch.zeros((T, N, L, x0.shape[-1]), dtype=torch.float32, device=x0.device)
        per_fwd = max(1, options.max_tokens_per_forward // max(1, N * L))
        use_vmap = self._use_vmap(options, x0.device)
        with torch.enable_grad():
            for s0 in range(0, len(alphas), per_fwd):
                a = torch.tensor(alphas[s0 : s0 + per_fwd], dtype=x0.dtype, device=x0.device)
                w = torch.tensor(steps[s0 : s0 + per_fwd], dtype=torch.float32, device=x0.device)
                S = a.shape[0]
                xs = (base.unsqueeze(0) + a.view(S, 1, 1, 1) * (x0 - base).unsqueeze(0)).reshape(S * N, L, -1)
                xs = xs.detach().requires_grad_(True)
                rep = lambda t: t.unsqueeze(0).expand(S, *t.shape).reshape(S * N, *t.shape[1:])  # noqa: E731
                weights = w.repeat_interleave(N)
                for j, g, _p, _e in self._per_target_grads(
                    scorer, xs, rep(batch.mask), rep(batch.pos), rep(batch.tgt), rep(batch.valid), weights, use_vmap
                ):
                    total[j] += g.float().reshape(S, N, L, -1).sum(0)
        delta = (x0 - base).float()
        for j in range(T):
            cells = _dim_agg(total[j] * delta, options.dim_aggregation).cpu().numpy()
            self._fill_column(mats, batch, j, cells)
        with torch.no_grad():
            prob, ent = _prob_entropy(scorer.logits_at(scorer.hidden(x0, batch.mask), batch.pos), batch.tgt)
        probs, ents = self._scores(batch, prob, ent)
        return mats, probs, ents

    def _attention(self, model, tokenizer, scorer, batch: _Batch, method, options):
        mats = self._empty(batch)
        restore = None
        cfg = getattr(model, "config", None)
        impl = getattr(cfg, "_attn_implementation", None)
        if impl not in (None, "eager") and hasattr(model, "set_attn_implementation"):
            restore = impl
            model.set_attn_implementation("eager")
        try:
            with torch.no_grad():
                x0 = model.get_input_embeddings()(batch.ids)
                out = model(inputs_embeds=x0, attention_mask=batch.mask, output_attentions=True)
        finally:
            if restore is not None:
                model.set_attn_implementation(restore)
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
        mean = sel.float().mean(dim=(0, 2))  # [N, L(query), L(key)]
        for j in range(batch.T):
            q = batch.pos[:, j]  # [N]
            cells = mean[torch.arange(mean.shape[0]), q].cpu().numpy()  # [N, L]
            self._fill_column(mats, batch, j, cells)
        prob, ent = _prob_entropy(out.logits.float().gather(
            1, batch.pos.unsqueeze(-1).expand(*batch.pos.shape, out.logits.shape[-1])), batch.tgt)
        probs, ents = self._scores(batch, prob, ent)
        return mats, probs, ents

    def _occlusion(self, model, tokenizer, scorer, batch: _Batch, method, options):
        mats = self._empty(batch)
        with torch.no_grad():
            x0 = model.get_input_embeddings()(batch.ids)
            base = self._baseline(model, tokenizer, batch, x0, options)
            prob0, ent0 = _prob_entropy(scorer.logits_at(scorer.hidden(x0, batch.mask), batch.pos), batch.tgt)
            # every (sample, occluded position) pair that can affect some target
            jobs = [(b, i) for b in range(len(batch.samples)) for i in range(batch.lengths[b] - 1)]
            per_fwd = max(1, options.max_tokens_per_forward // batch.L)
            for k0 in range(0, len(jobs), per_fwd):
                part = jobs[k0 : k0 + per_fwd]
                bs = torch.tensor([b for b, _ in part], device=x0.device)
                rows = torch.tensor([i for _, i in part], device=x0.device)
                xs = x0[bs].clone()
                ar = torch.arange(len(part), device=x0.device)
                xs[ar, rows] = base[bs, rows]
                p, _ = _prob_entropy(scorer.logits_at(scorer.hidden(xs, batch.mask[bs]), batch.pos[bs]), batch.tgt[bs])
                diff = (prob0[bs] - p).abs().cpu().numpy()  # [K, T]
                for k, (b, i) in enumerate(part):
                    n, t = batch.n_prompt[b], batch.n_target[b]
                    js = np.arange(t)
                    ok = i <= n + js - 1
                    mats[b][i, js[ok]] = diff[k, js[ok]]
        probs, ents = self._scores(batch, prob0, ent0)
        return mats, probs, ents


def step_scores(model: Any, tokenizer: Any, samples: list[Encoded], batch_size: int = 8) -> list[dict[str, np.ndarray]]:
    """Probability and entropy of each target token under teacher forcing (no grad)."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    out: list[dict[str, np.ndarray]] = []
    with model_guard(model), torch.no_grad():
        for chunk in _chunks(samples, batch_size):
            batch = _Batch(chunk, pad_id, model_device(model))
            logits = model(input_ids=batch.ids, attention_mask=batch.mask).logits
            g = logits.gather(1, batch.pos.unsqueeze(-1).expand(*batch.pos.shape, logits.shape[-1])).float()
            prob, ent = _prob_entropy(g, batch.tgt)
            p, e = NativeEngine._scores(batch, prob, ent)
            out.extend({"probability": pp, "entropy": ee} for pp, ee in zip(p, e))
    return out


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class _NullBar:
    def update(self, n: int) -> None:  # noqa: D401
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, show: bool):
    if not show:
        return _NullBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="sample")

