"""check.compare and check.token_matrix on in-memory results: verdicts, skips, reports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from attrib_mlops.check import (
    Attributions,
    CannotCompare,
    CheckResult,
    assert_no_regression,
    compare,
)
from attrib_mlops.result import AttributionResult, future_mask


# ------------------------------------------------------------------ helpers
def make(sid, importance, method="saliency", prompt=None, target=("x",), p=0.9):
    """A decoder-only result whose first target column carries ``importance`` over the prompt rows."""
    importance = np.asarray(importance, dtype=np.float32)
    prompt = list(prompt or [f"w{i}" for i in range(len(importance))])
    n_prompt, nt = len(prompt), len(target)
    ns = n_prompt + nt
    m = np.zeros((ns, nt), np.float32)
    for j in range(nt):
        m[:n_prompt, j] = importance
    m[future_mask(ns, nt, n_prompt)] = np.nan
    return AttributionResult(m, prompt + list(target), list(target), method, "native",
                             step_scores={"probability": np.full(nt, p, np.float32)}, n_prompt=n_prompt,
                             prompt=" ".join(prompt), target=" " + " ".join(target), sample_id=sid)


IMPS = [np.random.default_rng(i).random(10) + np.eye(10)[i % 10] * 3 for i in range(8)]  # one clear top token
TRUTH = {f"s{i}": [i % 10] for i in range(8)}


def side(transform=lambda v: v, methods=("saliency",), **kw):
    return {m: [make(f"s{i}", transform(v), method=m, **kw) for i, v in enumerate(IMPS)] for m in methods}


# ------------------------------------------------------------------ policy
def test_identical_results_pass():
    r = compare(side(), side(), ground_truth=TRUTH)
    assert r.verdict == "pass" and r.exit_code == 0 and r.passed
    m = r.method("saliency")
    assert (m.n_shared, m.n_compared, m.skipped) == (8, 8, [])
    assert m.metrics["mean_importance_corr"] == pytest.approx(1.0)
    assert m.metrics["topk_changed_share"] == 0.0 and m.metrics["hit_at_k_drop"] == 0.0
    names = {x.name for x in m.rules}
    assert names == {"mean_importance_corr", "topk_changed_share", "hit_at_3_drop", "probability_drop"}
    assert all(x.passed for x in m.rules)
    assert "PASS" in r.summary_text() and "passed" in r.message()


def test_permuted_importance_is_a_regression_naming_the_rule():
    r = compare(side(), side(lambda v: v[::-1]), ground_truth=TRUTH)
    assert r.verdict == "regression" and r.exit_code == 1
    failed = {x.name for _, x in r.failed_rules}
    assert {"mean_importance_corr", "topk_changed_share", "hit_at_3_drop"} <= failed
    assert "probability_drop" not in failed
    m = r.method("saliency")
    assert m.metrics["topk_changed_share"] >= 0.75
    worst = m.worst[0]
    assert worst["top_baseline"][0]["token"] != worst["top_candidate"][0]["token"]
    text = r.summary_text()
    assert "FAIL mean_importance_corr" in text and "samples that changed most" in text
    assert "prompt: w0 w1" in text  # the samples' tokens are shown


def test_only_one_rule_fails():
    base = side()
    cand = side(p=0.5)  # same attribution, much less confident
    r = compare(base, cand)
    assert r.verdict == "regression"
    assert [(m, x.name) for m, x in r.failed_rules] == [("saliency", "probability_drop")]
    rule = r.failed_rules[0][1]
    assert rule.value == pytest.approx(0.4) and rule.threshold == 0.1


def test_rules_without_inputs_are_not_evaluated():
    r = compare(side(), side())  # no ground truth anywhere
    rule = next(x for x in r.method("saliency").rules if x.name == "hit_at_3_drop")
    assert rule.passed is None and "no ground truth" in rule.note
    strict = compare(side(), side(), {"min_mean_spearman": 0.9, "max_topk_changed_share": None})
    names = [x.name for x in strict.method("saliency").rules]
    assert "mean_spearman" in names and "topk_changed_share" not in names


def test_per_method_policy_applies():
    base, cand = side(methods=("saliency", "attention")), side(lambda v: v[::-1], methods=("saliency", "attention"))
    off = {"min_mean_importance_corr": None, "max_topk_changed_share": None, "max_hit_at_k_drop": None}
    r = compare(base, cand, {"methods": {"attention": off}}, ground_truth=TRUTH)
    assert r.method("saliency").verdict == "regression"
    assert r.method("attention").verdict == "pass"


def test_accuracy_rule():
    r = compare(side(), side(), baseline_accuracy=0.95, candidate_accuracy=0.80)
    assert r.verdict == "regression"
    assert [(m, x.name) for m, x in r.failed_rules] == [("global", "accuracy_drop")]
    assert compare(side(), side(), baseline_accuracy=0.95, candidate_accuracy=0.93).verdict == "pass"


# ------------------------------------------------------------------ what is comparable
def test_different_tokens_are_skipped_with_count_and_reason():
    base = side()
    cand = side()
    cand["saliency"][0] = make("s0", IMPS[0][::-1], prompt=[f"u{i}" for i in range(10)])  # other tokenisation
    cand["saliency"][1] = make("s1", IMPS[1][::-1], target=("y",))  # another continuation
    cand["saliency"][2] = make("s2", IMPS[2], target=("x", "z"))  # longer: compared on the common prefix
    base["saliency"][2] = make("s2", IMPS[2], target=("x", "q"))
    r = compare(base, cand)
    m = r.method("saliency")
    assert r.verdict == "pass"  # the two changed samples were not compared cell by cell
    assert (m.n_shared, m.n_compared, m.n_truncated) == (8, 6, 1)
    assert m.skipped_counts == {"different_prompt_tokens": 1, "different_continuation": 1}
    reasons = {s["id"]: s for s in m.skipped}
    assert "'w0' vs 'u0'" in reasons["s0"]["detail"] and "'x' vs 'y'" in reasons["s1"]["detail"]
    assert "skipped 2: 1 different prompt tokens, 1 different continuation" in r.summary_text()


def test_all_samples_with_different_tokenisation_cannot_be_compared():
    cand = {"saliency": [make(f"s{i}", v, prompt=[f"u{j}" for j in range(10)]) for i, v in enumerate(IMPS)]}
    r = compare(side(), cand)
    assert r.verdict == "cannot_compare" and r.exit_code == 2
    assert "none of the 8 shared samples is comparable (8 different prompt tokens)" in r.reasons[0]


def test_no_shared_samples_cannot_be_compared():
    cand = {"saliency": [make(f"t{i}", v) for i, v in enumerate(IMPS)]}
    r = compare(side(), cand)
    assert r.verdict == "cannot_compare" and r.exit_code == 2
    assert "no shared samples" in r.message() and "s0" in r.message() and "t0" in r.message()


@pytest.mark.parametrize("missing_on", ["baseline", "candidate"])
def test_method_missing_on_one_side(missing_on):
    both, one = side(methods=("saliency", "attention")), side(methods=("saliency",))
    base, cand = (one, both) if missing_on == "baseline" else (both, one)
    r = compare(base, cand)
    assert r.verdict == "cannot_compare" and r.exit_code == 2
    assert f"method 'attention' is missing on the {missing_on} side" in r.message()
    assert compare(base, cand, methods=["saliency"]).verdict == "pass"  # choosing shared methods works
    r = compare(base, cand, methods=["occlusion"])
    assert "method 'occlusion' is missing on the baseline side" in r.message()
    assert "method 'occlusion' is missing on the candidate side" in r.message()


def test_min_samples():
    r = compare(side(), side(), {"min_samples": 9})
    assert r.verdict == "cannot_compare" and "min_samples=9" in r.message()


def test_input_forms():
    flat = [x for v in side(methods=("saliency", "attention")).values() for x in v]
    assert compare(flat, side(methods=("saliency", "attention"))).verdict == "pass"
    pairs = {("tiny", m): v for m, v in side(methods=("saliency",)).items()}  # load_local_results() shape
    assert compare(pairs, side()).verdict == "pass"
    att = Attributions(side(), ground_truth=TRUTH, label="mine", accuracy=0.9)
    r = compare(att, side(lambda v: v[::-1]), candidate_accuracy=0.9)
    assert r.baseline["ref"] == "mine" and r.method("saliency").metrics["n_ground_truth"] == 8
    with pytest.raises(TypeError):
        compare(42, side())


def test_local_results_folder(tmp_path):
    def folder(name, results, models=("tiny",)):
        d = tmp_path / name
        pairs = []
        for model in models:
            for method, rs in results.items():
                rel = f"results/{model}/{method}.jsonl"
                (d / rel).parent.mkdir(parents=True, exist_ok=True)
                (d / rel).write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rs))
                pairs.append({"model": model, "method": method, "path": rel})
        samples = [{"id": f"s{i}", "ground_truth": TRUTH[f"s{i}"]} for i in range(8)]
        (d / "manifest.json").write_text(json.dumps({"pairs": pairs, "probe_set": {"samples": samples}}))
        return d

    a, b = folder("a", side()), folder("b", side(lambda v: v[::-1]), models=("tiny", "big"))
    r = compare(str(a), f"{b}@tiny")
    assert r.verdict == "regression" and r.candidate["model"] == "tiny"
    assert "hit_at_3_drop" in {x.name for _, x in r.failed_rules}  # ground truth read from the manifest
    r = compare(str(a), str(b))
    assert r.verdict == "cannot_compare" and "several models ['tiny', 'big']" in r.message()
    r = compare(str(a), f"{b}@small")
    assert "has no model 'small'" in r.message()
    (tmp_path / "empty").mkdir()
    assert "no manifest.json" in compare(str(a), str(tmp_path / "empty")).message()


# ------------------------------------------------------------------ reports
def test_junit_xml_has_a_failure_on_regression():
    r = compare(side(), side(lambda v: v[::-1]), ground_truth=TRUTH)
    root = ET.fromstring(r.to_junit_xml())
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    failures = [c for c in cases if c.find("failure") is not None]
    assert len(failures) == int(suite.get("failures")) >= 3
    assert {c.get("name") for c in failures} >= {"mean_importance_corr", "topk_changed_share"}
    assert failures[0].get("classname") == "attrib_mlops.check.saliency"
    assert "required >=" in failures[0].find("failure").get("message")
    assert "REGRESSION" in suite.find("system-out").text

    ok = ET.fromstring(compare(side(), side()).to_junit_xml()).find("testsuite")
    assert ok.get("failures") == "0" and ok.get("skipped") == "1"  # hit@k without ground truth
    bad = ET.fromstring(compare(side(), {"saliency": [make("t0", IMPS[0])]}).to_junit_xml()).find("testsuite")
    assert bad.get("errors") == "1" and "no shared samples" in bad.find("testcase/error").get("message")


def test_json_round_trip():
    r = compare(side(), side(lambda v: v[::-1]), ground_truth=TRUTH, baseline_accuracy=1.0, candidate_accuracy=1.0)
    text = r.to_json()
    d = json.loads(text)
    assert d["verdict"] == "regression" and d["exit_code"] == 1 and d["format"] == "attrib-mlops/check"
    back = CheckResult.from_json(text)
    assert back.to_dict() == d
    assert back.verdict == r.verdict and back.failed_rules[0][1].name == r.failed_rules[0][1].name
    assert back.summary_text() == r.summary_text()
    cc = compare(side(), {})
    assert CheckResult.from_json(cc.to_json()).reasons == cc.reasons


def test_assert_no_regression():
    assert assert_no_regression(side(), side()).verdict == "pass"
    with pytest.raises(AssertionError) as e:
        assert_no_regression(side(), side(lambda v: v[::-1]))
    msg = str(e.value)
    assert msg.startswith("attribution regression") and "FAIL mean_importance_corr" in msg
    with pytest.raises(CannotCompare, match="no shared samples"):
        assert_no_regression(side(), {"saliency": [make("t0", IMPS[0])]})
