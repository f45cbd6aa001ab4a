"""Occlusion: how much each target's probability changes when one source embedding is replaced.

One forward per occluded source position serves every target at once (the baseline
embedding as in integrated gradients); occluded copies of every sample of a batch
share forward passes, up to ``options.max_tokens_per_forward`` tokens per forward
(:func:`~attrib_mlops.engines.native_kernels.occluded_copies`). Causal LMs:
``|p(y_j) - p(y_j | x_i occluded)|`` (Inseq's). Classifiers: signed
``p(c) - p(c | x_i occluded)`` (Captum's ``Occlusion`` with a one-token window).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..registry import CAUSAL_LM, CLASSIFIER, AttributionMethod

__all__ = ["Occlusion"]


class Occlusion(AttributionMethod):
    """Probability change for every occluded source position i."""

    name = "occlusion"
    engine = "native"
    order = 50
    model_kinds = (CAUSAL_LM, CLASSIFIER)
    description = "probability drop when one source embedding is replaced by the baseline"

    def classifier_info(self, options: Any) -> dict[str, Any]:
        return {**self.info(options), "occlusion": "signed: p(class) - p(class | token replaced by the baseline)"}

    def compute(self, run: Any) -> Any:
        import torch

        from .. import native_kernels as K

        model, tokenizer, scorer, batch, options = run
        mats = K.empty_matrices(batch)
        with torch.no_grad():
            x0 = model.get_input_embeddings()(batch.ids)
            base = K.baseline_embeddings(model, tokenizer, batch, x0, options)
            prob0, ent0 = K.prob_entropy(scorer.logits_at(scorer.hidden(x0, batch.mask), batch.pos), batch.tgt)
            # every (sample, occluded position) pair that can affect some target
            jobs = [(b, i) for b in range(len(batch.samples)) for i in range(batch.lengths[b] - 1)]
            per_fwd = max(1, options.max_tokens_per_forward // batch.L)
            for part, bs, _rows, xs in K.occluded_copies(x0, base, jobs, per_fwd):
                p, _ = K.prob_entropy(scorer.logits_at(scorer.hidden(xs, batch.mask[bs]), batch.pos[bs]), batch.tgt[bs])
                diff = (prob0[bs] - p).abs().cpu().numpy()  # [K, T]
                for k, (b, i) in enumerate(part):
                    n, t = batch.n_prompt[b], batch.n_target[b]
                    js = np.arange(t)
                    ok = i <= n + js - 1
                    mats[b][i, js[ok]] = diff[k, js[ok]]
        probs, ents = K.split_scores(batch, prob0, ent0)
        return mats, probs, ents

    def compute_classifier(self, run: Any) -> Any:
        import torch

        from ..classifier_kernels import class_probs
        from ..classifier_prep import baseline_embeddings
        from ..native_kernels import occluded_copies

        batch, x0, fwd = run.batch, run.x0, run.fwd
        p0, cols, valid, per = class_probs(run)
        cells = torch.zeros((batch.N, batch.L, cols.shape[1]), dtype=torch.float32)
        with torch.no_grad():
            base = baseline_embeddings(run.model, run.tokenizer, batch, x0, run.options)
            same = (base == x0).all(-1) | (batch.mask == 0)  # occluding these changes nothing: exactly 0
            jobs = [(b, i) for b in range(batch.N) for i in range(batch.rows(b).start, batch.rows(b).stop)
                    if not bool(same[b, i])]
            per_fwd = max(1, run.options.max_tokens_per_forward // batch.L)
            p0c = p0.gather(1, cols)  # [N, K]
            for _part, bs, rows, xs in occluded_copies(x0, base, jobs, per_fwd):
                p = fwd(xs, batch.mask[bs], batch.pos[bs]).softmax(-1).gather(1, cols[bs])  # [J, K]
                cells[bs.cpu(), rows.cpu()] = (p0c[bs] - p).float().cpu()
        return cells, p0, per
