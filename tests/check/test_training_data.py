"""The opt-in check rule on the overlap of the top training examples (check/training_data.py)."""

from __future__ import annotations

import numpy as np

from attrib_mlops.check import compare
from attrib_mlops.check.loaders import Attributions
from attrib_mlops.check.policy import Policy
from attrib_mlops.training_data.result import TrainingDataAttribution


def _r(scores, sid):
    ids = [f"e{i}" for i in range(len(scores))]
    return TrainingDataAttribution(np.array(scores, np.float32), ids, ids, "tracin", sample_id=sid)


def _sides():
    base = [_r([5, 4, 3, 0, -1], "q1"), _r([5, 4, 3, 0, -1], "q2")]
    cand = [_r([5, 4, 3, 0, -1], "q1"), _r([0, -1, 3, 5, 4], "q2")]  # q2: top-3 {e0,e1,e2} -> {e3,e4,e2}
    return Attributions({"tracin": base}), Attributions({"tracin": cand})


def test_rule_is_off_by_default_and_the_metric_is_reported():
    b, c = _sides()
    res = compare(b, c, Policy(k=3))
    rep = res.methods[0]
    assert res.verdict == "pass" and rep.rules == []
    assert rep.metrics["mean_top_overlap"] == (1.0 + 1 / 3) / 2
    assert rep.worst[0]["id"] == "q2" and rep.worst[0]["top_candidate"] == ["e3", "e4", "e2"]


def test_opt_in_rule_flags_a_regression():
    b, c = _sides()
    res = compare(b, c, {"k": 3, "min_mean_top_overlap": 0.8})
    assert res.verdict == "regression"
    assert [r.name for r in res.methods[0].failed_rules] == ["mean_top_overlap"]
    assert compare(b, b, {"k": 3, "min_mean_top_overlap": 0.8}).verdict == "pass"


def test_job_folders_with_training_data_results_are_compared(tmp_path):
    import json

    def folder(name, results):
        out = tmp_path / name
        (out / "results" / "m").mkdir(parents=True)
        (out / "results" / "m" / "tracin.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in results))
        (out / "manifest.json").write_text(json.dumps({"format": 1, "pairs": [
            {"model": "m", "method": "tracin", "path": "results/m/tracin.jsonl", "n": len(results)}]}))
        return str(out)

    b, c = _sides()
    res = compare(folder("base", b.results["tracin"]), folder("cand", c.results["tracin"]),
                  {"k": 3, "min_mean_top_overlap": 0.8})
    assert res.verdict == "regression" and res.methods[0].metrics["mean_top_overlap"] == (1.0 + 1 / 3) / 2
