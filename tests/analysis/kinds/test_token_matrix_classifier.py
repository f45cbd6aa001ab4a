"""Classifier metrics of the token-matrix kind: against scipy's Kendall tau and brute-force rankings."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from attrib_mlops.analysis.kinds.token_matrix import SampleContext, SideContext
from attrib_mlops.analysis.rationale import gold_label, rationale_positions, rationale_rank
from attrib_mlops.analysis.registry import compute, get_metric
from attrib_mlops.check.rules import get_rule
from attrib_mlops.result import AttributionResult

TOKENS = ["[CLS]", "the", "plot", "was", "lack", "##lus", "##ter", "[SEP]"]
OFFSETS = [[0, 0], [0, 3], [4, 8], [9, 12], [13, 17], [17, 20], [20, 23], [0, 0]]
SPECIAL = [1, 0, 0, 0, 0, 0, 0, 1]


def _result(col, **info) -> AttributionResult:
    return AttributionResult(np.array(col, dtype=np.float32)[:, None], TOKENS, ["negative"], "saliency", "native",
                             n_prompt=len(TOKENS), prompt="the plot was lackluster",
                             info={"task": "sequence_classification", "offsets": OFFSETS,
                                   "special_tokens_mask": SPECIAL, "predicted_label": "negative", **info})


def test_rationale_positions_skip_special_tokens():
    r = _result([0.0] * 8)
    assert rationale_positions(r, [[13, 23]]) == [4, 5, 6]
    assert rationale_positions(r, [[0, 3]]) == [1]  # [CLS] has an empty span and is special


def test_rationale_rank_excludes_special_tokens_and_matches_scipy():
    col = [9.0, 0.1, -0.5, 0.2, 0.8, -0.3, 0.05, 7.0]  # [CLS]/[SEP] largest: they must not count
    r = _result(col)
    got = rationale_rank(r, [4, 5, 6], k=1)
    assert got["hit@1"] == 1.0  # |0.8| is the top non-special row
    keep = [1, 2, 3, 4, 5, 6]
    rel = [i in (4, 5, 6) for i in keep]
    tau = stats.kendalltau(np.abs(np.array(col))[keep], rel).statistic  # tau-b
    assert got["kendall_tau"] == pytest.approx(tau)
    # brute force: a perfect ranking reaches the ceiling
    perfect = rationale_rank(_result([0, 0.1, 0.2, 0.3, 1, 2, 3, 0]), [4, 5, 6])
    assert perfect["kendall_tau_norm"] == pytest.approx(1.0)
    assert rationale_rank(r, [0, 7]) is None  # a rationale of special tokens only: undefined


def test_registered_classifier_metrics_and_rules():
    r = _result([9.0, 0.1, 0.9, 0.2, 0.8, 0.3, 0.05, 7.0], gold_label="positive", rationale_positions=[4, 5, 6])
    m = compute("sample", SampleContext(r, k=3))
    assert m["probe_accuracy"] == 0.0  # predicted negative, gold positive
    assert m["rationale_hit_at_1"] == 0.0 and m["rationale_hit_at_3"] == 1.0  # "plot" (0.9) ranks first
    assert m["rationale_tau"] == pytest.approx(rationale_rank(r, [4, 5, 6])["kendall_tau_norm"])
    # ground-truth positions of the probe take precedence over the stored rationale
    assert compute("sample", SampleContext(r, k=3, true_positions=[2]))["rationale_hit_at_1"] == 1.0
    # not a classifier: none of them applies
    plain = AttributionResult(np.ones((2, 1)), ["a", "b"], ["c"], "saliency", "native", n_prompt=2)
    assert not {"probe_accuracy", "rationale_tau"} & set(compute("sample", SampleContext(plain)))
    assert get_metric("probe_accuracy", "check_side").fn(SideContext(r, None)) == 0.0
    assert get_rule("max_probe_accuracy_drop").default == 0.1
    assert get_rule("max_rationale_tau_drop").op == "<="


def test_gold_label_from_info_or_the_given_label():
    assert gold_label(_result([0.0] * 8, gold_label="positive")) == "positive"
    assert gold_label(_result([0.0] * 8, target_source="given")) == "negative"
    assert gold_label(_result([0.0] * 8, target_source="predicted")) is None
