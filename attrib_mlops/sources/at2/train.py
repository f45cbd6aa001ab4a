"""Training an AT2 estimator: attention features -> ablation outcomes (AT2's recipe).

Data: for every example (prompt, target, sources), the ablation engine's
``K + H`` random keep/drop masks and the target's log-odds under each
(:func:`attrib_mlops.attribute_sources` with ``ablation="mask"`` by default),
and the example's attention features ``X`` (``[S, layers x heads]``, from one
forward of the full prompt; :mod:`~attrib_mlops.sources.at2.features`).

Model: a linear estimator without bias, ``w`` (one weight per layer and head,
initialised to ``1 / F``). The predicted outcome of mask ``m`` is the sum of
the kept sources' scores, ``m . (X w)``. (AT2's code uses ``+-1`` masks,
kept minus dropped; that differs from ours by a per-example constant and a
factor 2, which the loss below does not see.)

Loss: the negative Pearson correlation between predicted and actual outcomes
across each example's masks, averaged over a batch of examples; Adam with a
cosine-annealed learning rate and gradient clipping; the weights are
L1-normalised at the end. Batches are drawn from a seeded generator and the
fit runs on the CPU in float32, so a seed gives the same estimator every time.

Example (a few seconds on a CPU)::

    from attrib_mlops import train_source_estimator
    from attrib_mlops.demo.tiny import build_tiny_model
    model, tok = build_tiny_model([f"w{i}" for i in range(20)], n_layer=2, n_embd=32, n_head=2)
    prompts = [" ".join(f"w{(3 * k + j) % 20} ." for j in range(4)) for k in range(12)]
    est = train_source_estimator(model, tok, prompts, targets=[" w1"] * 12, sources="sentence",
                                 n_ablations=16, n_holdout=8, n_steps=50)
    est.weights.shape      # (2, 2)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..._util import now_iso
from ...errors import InputError
from .estimator import SourceEstimator
from .options import MIN_EXAMPLES, MIN_MASKS, AT2TrainOptions, parse_train_options
from .quality import Example, compare_scores

logger = logging.getLogger(__name__)

__all__ = ["pearson_loss", "fit_weights", "examples_from_ablations", "train_source_estimator"]


def pearson_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-Pearson(pred[i, valid[i]], target[i, valid[i]])`` (``[N, K]`` tensors)."""
    v = valid.to(pred.dtype)
    n = v.sum(dim=1).clamp_min(1.0)
    pm = (pred * v).sum(dim=1, keepdim=True) / n[:, None]
    tm = (target * v).sum(dim=1, keepdim=True) / n[:, None]
    pd, td = (pred - pm) * v, (target - tm) * v
    cov = (pd * td).sum(dim=1) / n
    ps = torch.sqrt((pd**2).sum(dim=1) / n)
    ts = torch.sqrt((td**2).sum(dim=1) / n)
    return -(cov / (ps * ts + 1e-8)).mean()


def _pad(mask_features: Sequence[np.ndarray], outcomes: Sequence[np.ndarray]) -> tuple[torch.Tensor, ...]:
    N = len(mask_features)
    K = max(z.shape[0] for z in mask_features)
    F = mask_features[0].shape[1]
    Z = torch.zeros((N, K, F), dtype=torch.float32)
    Y = torch.zeros((N, K), dtype=torch.float32)
    V = torch.zeros((N, K), dtype=torch.bool)
    for i, (z, y) in enumerate(zip(mask_features, outcomes)):
        k = z.shape[0]
        Z[i, :k] = torch.as_tensor(z, dtype=torch.float32)
        Y[i, :k] = torch.as_tensor(y, dtype=torch.float32)
        V[i, :k] = True
    return Z, Y, V


def fit_weights(
    mask_features: Sequence[np.ndarray],
    outcomes: Sequence[np.ndarray],
    opts: AT2TrainOptions | None = None,
    **options: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit AT2's linear weights on per-example ``[K_i, F]`` mask features and ``[K_i]`` outcomes.

    The mask features of example ``i`` are ``masks_i @ X_i`` (kept sources' features summed).
    Returns ``(weights [F], history)`` with the L1-normalised weights and the loss curve
    (``loss_first``, ``loss_last``: mean negative Pearson of the first/last 10% of steps).
    """
    from tqdm.auto import tqdm

    opts = opts if opts is not None else parse_train_options(options)
    if not mask_features:
        raise InputError(f"AT2 needs at least {MIN_EXAMPLES} training examples, got 0")
    F = mask_features[0].shape[1]
    Z, Y, V = _pad(mask_features, outcomes)
    N = Z.shape[0]
    gen = torch.Generator().manual_seed(int(opts.seed))
    w = torch.full((F,), 1.0 / F, dtype=torch.float32, requires_grad=True)
    optim = torch.optim.Adam([w], lr=opts.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=opts.n_steps)
    bs = min(opts.batch_size, N)
    bar = tqdm(range(opts.n_steps), desc="training AT2 estimator", unit="step", disable=not opts.show_progress)
    threads = torch.get_num_threads()
    if Z.numel() < 2**22:  # small problems: thread hand-offs cost more than the arithmetic
        torch.set_num_threads(1)
    try:
        losses = _steps(bar, Z, Y, V, w, optim, sched, gen, bs, opts)
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        out = w.detach().clone()
        norm = out.abs().sum()
        if float(norm) > 0:
            out /= norm
    tail = max(1, len(losses) // 10)
    history = {"loss_first": float(np.mean(losses[:tail])), "loss_last": float(np.mean(losses[-tail:])),
               "n_steps": len(losses)}
    return out.numpy().astype(np.float32), history


def _steps(bar: Any, Z: torch.Tensor, Y: torch.Tensor, V: torch.Tensor, w: torch.Tensor, optim: Any, sched: Any,
           gen: torch.Generator, bs: int, opts: AT2TrainOptions) -> list[float]:
    N = Z.shape[0]
    losses: list[float] = []
    for _ in bar:
        idx = torch.randperm(N, generator=gen)[:bs] if bs < N else torch.arange(N)
        optim.zero_grad()
        loss = pearson_loss(Z[idx] @ w, Y[idx], V[idx])
        loss.backward()
        torch.nn.utils.clip_grad_norm_([w], max_norm=opts.max_grad_norm)
        optim.step()
        sched.step()
        if opts.non_negative:
            with torch.no_grad():
                w.clamp_(min=0.0)
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    return losses


def examples_from_ablations(results: Sequence[Any]) -> list[Example]:
    """:class:`~attrib_mlops.sources.at2.quality.Example` s from ablation results (``SourceAttribution`` s)."""
    from ..surrogate import logit_outcome, span_logprob

    out = []
    for k, r in enumerate(results):
        ab = getattr(r, "ablation", None)
        if ab is None:
            raise InputError(
                f"ablation result {k} kept no ablation data (masks and outcomes); AT2 trains on them: "
                "recompute it with attribute_sources(..., method='ablation')"
            )
        span = r.target_span or (0, ab.token_logprobs.shape[1])
        y = logit_outcome(span_logprob(ab.token_logprobs, span))
        yh = logit_outcome(span_logprob(ab.holdout_logprobs, span)) if ab.holdout_masks.shape[0] else np.zeros(0)
        out.append(Example(ab.masks, y, ab.holdout_masks, yh, r.scores,
                           float(r.quality.get("lds", float("nan"))), r.sample_id))
    return out


def _heldout_topk(model: Any, tokenizer: Any, opts: AT2TrainOptions, samples: list, results: list,
                  scores: dict[str, list[np.ndarray]]) -> dict[str, Any]:
    """Top-k drop of each scorer's ranking on the held-out examples (``topk_drop``, ``topk_drop_<name>``)."""
    from ...engines.prep import model_device, model_guard
    from ..forward import Forwarder
    from .topk import topk_drops

    mode = (results[0].info or {}).get("ablation", opts.ablation)
    fwd = Forwarder(model, tokenizer, model_device(model), opts.max_tokens_per_forward)
    full = [r.ablation.full_logprobs for r in results]
    spans = [r.target_span or (0, len(f)) for r, f in zip(results, full)]
    with model_guard(model), torch.no_grad():
        drops = topk_drops(fwd, samples, scores, full, spans, opts.topk, mode if mode in ("mask", "remove") else "mask")
    return {("topk_drop" if name == "at2" else f"topk_drop_{name}"): d for name, d in drops.items()}


def _needed(fraction: float) -> int:
    n = MIN_EXAMPLES
    while n - math.floor(n * fraction) < MIN_EXAMPLES:
        n += 1
    return n


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n_val = int(math.floor(n * fraction))
    perm = np.random.default_rng([0xA72, seed]).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def train_source_estimator(
    model: Any,
    tokenizer: Any = None,
    prompts: Any = (),
    targets: str | Sequence[str] | None = None,
    sources: Any = "sentence",
    *,
    sample_ids: Sequence[str] | None = None,
    ablations: Sequence[Any] | None = None,
    **options: Any,
) -> SourceEstimator:
    """Train an AT2 estimator for ``model`` on ablations of ``prompts`` (see the module docstring).

    Args:
        model: a loaded causal LM or a reference (local folder, hub id, MLflow URI).
        tokenizer: its tokenizer or a reference (default: the model's folder).
        prompts: the training examples: strings or conversations (the probe set, plus any
            training split).
        targets: teacher-forced continuations, or None to generate them.
        sources: a splitter name or per-prompt lists of substrings, as in
            :func:`attrib_mlops.attribute_sources`.
        sample_ids: optional ids (kept in the quality report).
        ablations: ablation results already computed for these prompts
            (``attribute_sources(..., method="ablation")``, e.g. a callback's probe ablations);
            skips the ablation forwards.
        **options: :class:`~attrib_mlops.sources.at2.options.AT2TrainOptions` fields.

    Returns:
        A :class:`SourceEstimator` whose ``info["quality"]`` holds the held-out quality:
        mean LDS and within-example Pearson of AT2, of uniform attention and of the ablation
        surrogate, and AT2's top-1 agreement with the surrogate.

    Raises:
        InputError: fewer than 4 usable training examples, or examples with fewer than 8 masks.
        EstimatorMismatchError / UnsupportedMethodError: a model without attention weights.
        SpecError: an unknown or invalid option.
    """
    from ..._util import library_versions
    from ...engines.prep import context_limit, load_model_and_tokenizer, model_guard
    from ..api import attribute_sources
    from .features import architecture_of, source_features, span_features
    from .prepare import render_prompts, sample_from_text

    opts = parse_train_options(options)
    model, tokenizer, model_ref = load_model_and_tokenizer(model, tokenizer, opts.load_options())
    plist, rendered = render_prompts(tokenizer, prompts, opts)
    if ablations is None:
        ablations = attribute_sources(model, tokenizer, plist, targets, sources, method="ablation",
                                      sample_ids=sample_ids, **opts.ablation_options())
    elif len(ablations) != len(plist):
        raise InputError(f"got {len(plist)} prompts but {len(ablations)} ablation results; give one per prompt")
    examples = examples_from_ablations(ablations)
    few = [k for k, e in enumerate(examples) if e.all_masks()[0].shape[0] < MIN_MASKS]
    if few:
        raise InputError(
            f"example {few[0]} has {examples[few[0]].all_masks()[0].shape[0]} ablation masks; AT2 needs at least "
            f"{MIN_MASKS} per example (n_ablations + n_holdout)"
        )
    limit = context_limit(model)
    samples = []
    for k, (r, (text, _regions, add)) in enumerate(zip(ablations, rendered)):
        if r.prompt and r.prompt != text:
            raise InputError(f"ablation result {k} is for another prompt than prompts[{k}]; give them in the same order")
        samples.append(sample_from_text(tokenizer, text, r.spans, r.target, add_special_tokens=add, limit=limit,
                                        index=k, sample_id=r.sample_id))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    counter: dict[str, int] = {}
    with model_guard(model), torch.no_grad():
        feats = source_features(model, [s.sample for s in samples], [s.membership for s in samples], pad_id=pad,
                                max_attention_elements=opts.max_attention_elements, counter=counter)
    X = [span_features(f, r.target_span) for f, r in zip(feats, ablations)]

    train_idx, val_idx = _split(len(examples), opts.holdout_fraction, opts.seed)
    usable = [i for i in train_idx if np.ptp(examples[i].all_masks()[1]) > 0]
    if len(usable) < MIN_EXAMPLES:
        raise InputError(
            f"AT2 needs at least {MIN_EXAMPLES} training examples whose ablations change the target, got "
            f"{len(usable)} ({len(examples)} prompts, {len(val_idx)} held out, {len(train_idx) - len(usable)} with "
            f"constant outcomes); pass at least {_needed(opts.holdout_fraction)} prompts whose sources matter "
            "to the target, or lower holdout_fraction"
        )
    Z, Yv = [], []
    for i in usable:
        m, y = examples[i].all_masks()
        Z.append(m.astype(np.float32) @ X[i].astype(np.float32))
        Yv.append(y)
    weights, history = fit_weights(Z, Yv, opts)

    arch = architecture_of(model)
    n_layers, n_heads = counter["n_layers"], counter["n_heads"]  # what the model returned
    arch.update(n_layers=n_layers, n_heads=n_heads)
    est = SourceEstimator(weights.reshape(n_layers, n_heads), arch)
    uniform = SourceEstimator.uniform(n_layers, n_heads, arch)
    train_q = compare_scores([examples[i] for i in usable], {"at2": [est.scores(X[i]) for i in usable]},
                             reference=None)["at2"]
    quality: dict[str, Any] = {"train_pearson": train_q["pearson"], "n_train": len(usable), "n_heldout": len(val_idx)}
    if len(val_idx):
        held = [examples[i] for i in val_idx]
        table = compare_scores(held, {"at2": [est.scores(X[i]) for i in val_idx],
                                      "attention": [uniform.scores(X[i]) for i in val_idx]})
        for name, row in table.items():
            for key in ("lds", "pearson", "top1_agreement"):
                if name == "surrogate" and key == "top1_agreement":
                    continue
                quality[f"{key}_{name}" if name != "at2" else key] = row[key]
        if opts.topk:
            quality.update(_heldout_topk(model, tokenizer, opts, [samples[i] for i in val_idx],
                                         [ablations[i] for i in val_idx], {
                                             "at2": [est.scores(X[i]) for i in val_idx],
                                             "attention": [uniform.scores(X[i]) for i in val_idx],
                                             "surrogate": [examples[i].surrogate_scores for i in val_idx]}))
    est.info = {
        "kind": "at2",
        "base_model": model_ref,
        "n_examples": len(usable),
        "n_masks": int(np.median([z.shape[0] for z in Z])),
        "seed": opts.seed,
        "ablation": (ablations[0].info or {}).get("ablation", opts.ablation),
        "options": opts.key_dict(),
        "training": history,
        "quality": quality,
        "heldout_ids": [examples[i].sample_id for i in val_idx],
        "created": now_iso(),
        "versions": library_versions(),
    }
    return est
