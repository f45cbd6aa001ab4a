"""How well source scores predict ablation outcomes (numpy only; no torch, no model).

One *example* is a sample's ablation data for one target span: ``masks``
(``[K, S]`` bool keep masks), ``outcomes`` (``[K]`` target log-odds under each
mask) and, for held-out evaluation, ``holdout_masks``/``holdout_outcomes``.
Source scores ``w`` predict a mask's outcome as the sum of the kept sources'
scores, ``m . w`` (plus a constant that no correlation sees).

* :func:`pearson_within`: Pearson correlation across one example's masks (AT2's
  training objective, and the "mean within-example Pearson" of its notebook);
* :func:`score_lds`: LDS, the Spearman correlation between predicted and actual
  outcomes on held-out masks (the ablation surrogate's own quality score);
* :func:`compare_scores`: mean LDS / Pearson of several scorers over examples,
  and how often their top source agrees with a reference scorer;
* :func:`paired_lds`: two scorers' LDS on the same masks of the same examples,
  with the mean paired difference and its standard error.

Example:
    >>> import numpy as np
    >>> m = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], bool)
    >>> y = m @ np.array([3.0, 1.0])
    >>> round(pearson_within(m @ np.array([2.0, 1.0]), y), 3), score_lds(np.array([2.0, 1.0]), m, y)
    (0.99, 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from attrib_mlops._util import nanmean as _nanmean

__all__ = ["Example", "pearson_within", "score_lds", "compare_scores", "paired_lds"]


@dataclass
class Example:
    """Ablation data of one sample and target span (see the module docstring).

    Attributes:
        masks: ``[K, S]`` fitting masks.
        outcomes: ``[K]`` log-odds of the target span under each mask.
        holdout_masks: ``[H, S]`` held-out masks (may be empty).
        holdout_outcomes: ``[H]``.
        surrogate_scores: ``[S]`` the ablation surrogate's scores (fitted on ``masks``), if known.
        surrogate_lds: the surrogate's own held-out LDS, if known.
        sample_id: probe id when known.
    """

    masks: np.ndarray
    outcomes: np.ndarray
    holdout_masks: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    holdout_outcomes: np.ndarray = field(default_factory=lambda: np.zeros(0))
    surrogate_scores: np.ndarray | None = None
    surrogate_lds: float = float("nan")
    sample_id: str | None = None

    def __post_init__(self) -> None:
        self.masks = np.asarray(self.masks, dtype=bool)
        S = self.masks.shape[1]
        self.outcomes = np.asarray(self.outcomes, dtype=np.float64).reshape(-1)
        self.holdout_masks = np.asarray(self.holdout_masks, dtype=bool).reshape(-1, S)
        self.holdout_outcomes = np.asarray(self.holdout_outcomes, dtype=np.float64).reshape(-1)
        if self.surrogate_scores is not None:
            self.surrogate_scores = np.asarray(self.surrogate_scores, dtype=np.float64).reshape(S)

    @property
    def n_sources(self) -> int:
        return int(self.masks.shape[1])

    def all_masks(self) -> tuple[np.ndarray, np.ndarray]:
        """Fitting and held-out masks together, with their outcomes."""
        return np.concatenate([self.masks, self.holdout_masks]), np.concatenate([self.outcomes, self.holdout_outcomes])


def pearson_within(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Pearson correlation of predicted vs actual outcomes of one example's masks (NaN if either is constant)."""
    p, a = np.asarray(predicted, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    if p.size < 3 or np.ptp(p) == 0 or np.ptp(a) == 0:
        return float("nan")
    p, a = p - p.mean(), a - a.mean()
    return float((p @ a) / np.sqrt((p @ p) * (a @ a)))


def score_lds(scores: np.ndarray, masks: np.ndarray, outcomes: np.ndarray) -> float:
    """LDS of source scores: Spearman of ``masks @ scores`` vs the actual ``outcomes`` (NaN if undefined)."""
    from ..surrogate import lds

    return lds(np.asarray(masks, dtype=np.float64) @ np.asarray(scores, dtype=np.float64), outcomes)


def compare_scores(
    examples: Sequence[Example],
    scores: Mapping[str, Sequence[np.ndarray]],
    reference: str | None = "surrogate",
) -> dict[str, dict[str, float]]:
    """Per scorer: mean held-out LDS, mean within-example Pearson (all masks), top-1 agreement.

    Args:
        examples: the examples (held-out masks are used for the LDS).
        scores: scorer name -> one ``[S]`` score array per example. The surrogate's own
            scores (``Example.surrogate_scores``) join as ``"surrogate"`` when every example has them.
        reference: the scorer whose top source the others are compared with (None: no agreement).

    Returns:
        ``{name: {"lds", "pearson", "top1_agreement", "n_examples"}}``; for the surrogate
        the LDS is its own (fitted on the fitting masks, tested on the held-out ones), and
        its Pearson is on the held-out masks only.
    """
    table = {k: list(v) for k, v in scores.items()}
    if examples and all(e.surrogate_scores is not None for e in examples) and "surrogate" not in table:
        table["surrogate"] = [e.surrogate_scores for e in examples]
    for name, vals in table.items():
        if len(vals) != len(examples):
            raise ValueError(f"scorer {name!r} has {len(vals)} score arrays for {len(examples)} examples")
    out: dict[str, dict[str, float]] = {}
    ref = table.get(reference) if reference else None
    for name, vals in table.items():
        lds_v, pear_v, agree = [], [], []
        for k, (e, w) in enumerate(zip(examples, vals)):
            w = np.asarray(w, dtype=np.float64)
            if e.holdout_masks.shape[0]:
                lds_v.append(score_lds(w, e.holdout_masks, e.holdout_outcomes))
            if name == "surrogate":
                pm, po = e.holdout_masks, e.holdout_outcomes
            else:
                pm, po = e.all_masks()
            pear_v.append(pearson_within(pm.astype(np.float64) @ w, po) if pm.shape[0] else float("nan"))
            if ref is not None:
                agree.append(float(int(np.argmax(w)) == int(np.argmax(ref[k]))))
        out[name] = {
            "lds": _nanmean(lds_v),
            "pearson": _nanmean(pear_v),
            "top1_agreement": _nanmean(agree) if agree else float("nan"),
            "n_examples": float(len(vals)),
        }
    return out


def paired_lds(examples: Sequence[Example], a: Sequence[np.ndarray], b: Sequence[np.ndarray],
               masks: str = "all") -> dict[str, float]:
    """LDS of scorers ``a`` and ``b`` per example on the same masks, and their paired difference.

    ``masks="all"`` uses fitting and held-out masks (right for scorers fitted on *other*
    examples, such as AT2 and attention averaging: 3x the masks, less noise); ``"holdout"``
    the held-out ones only. Returns ``lds_a``, ``lds_b``, ``diff`` (mean of ``a - b``),
    ``diff_se`` (its standard error over examples), ``wins`` (share of examples where
    ``a`` is higher) and ``n_examples``.
    """
    la, lb = [], []
    for e, wa, wb in zip(examples, a, b):
        m, y = e.all_masks() if masks == "all" else (e.holdout_masks, e.holdout_outcomes)
        la.append(score_lds(wa, m, y))
        lb.append(score_lds(wb, m, y))
    A, B = np.asarray(la), np.asarray(lb)
    d = (A - B)[np.isfinite(A - B)]
    return {
        "lds_a": _nanmean(la),
        "lds_b": _nanmean(lb),
        "diff": float(d.mean()) if d.size else float("nan"),
        "diff_se": float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan"),
        "wins": float((d > 0).mean()) if d.size else float("nan"),
        "n_examples": float(d.size),
    }
