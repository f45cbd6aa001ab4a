"""Metrics of the training-data kind (analysis/kinds/training_data.py) against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from attrib_mlops.analysis.kinds.training_data import TRAINING_DATA, TrainingPairContext, TrainingSampleContext
from attrib_mlops.analysis.registry import compute, get_metric, kind_of
from attrib_mlops.training_data.result import TrainingDataAttribution


def _r(scores, sid="q"):
    ids = [f"e{i}" for i in range(len(scores))]
    return TrainingDataAttribution(np.array(scores, np.float32), ids, ids, "tracin", sample_id=sid)


def test_sample_metrics_by_hand():
    r = _r([4.0, -2.0, 1.0, 0.0, 3.0])
    got = compute("sample", TrainingSampleContext(r, k=2), kind=TRAINING_DATA)
    assert got["top_score"] == 4.0
    assert got["positive_share"] == pytest.approx(3 / 5)
    assert got["top_concentration"] == pytest.approx((4 + 3) / (4 + 2 + 1 + 0 + 3))
    assert kind_of(r) == TRAINING_DATA


def test_overlap_is_by_id_and_none_without_supporting_examples():
    a, b = _r([3.0, 2.0, 1.0, -1.0]), _r([1.0, 3.0, -2.0, 2.0])
    ctx = TrainingPairContext(a, b, k=2)  # a: {e0, e1}, b: {e1, e3}
    assert compute("check", ctx, kind=TRAINING_DATA) == {"top_overlap": 0.5, "negative_overlap": 0.0}
    assert compute("drift", TrainingPairContext(a, a, k=2), kind=TRAINING_DATA) == {"top_overlap": 1.0}
    assert TrainingPairContext(_r([-1.0, -2.0]), b, k=2).overlap("positive") is None


def test_the_check_rule_is_registered_and_off_by_default():
    m = get_metric("top_overlap", "check", TRAINING_DATA)
    assert m.rules == (("value", None),) and m.higher_is_better and m.summary_name == "mean_top_overlap"
