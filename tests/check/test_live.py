"""Regression checks against a real MLflow SQLite store: CLI exit codes, messages, logging back, live check."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from attrib_mlops.check import CannotCompare, LiveCheck, compare, log_verdict
from attrib_mlops.cli import app
from attrib_mlops.result import AttributionResult, future_mask
from attrib_mlops.tracking import AttributionWriter

runner = CliRunner()

N = 8
IMPS = [np.random.default_rng(i).random(10) + np.eye(10)[i % 10] * 3 for i in range(N)]
PROBE = [{"id": f"s{i}", "prompt": " ".join(f"w{j}" for j in range(10)), "target": " x", "ground_truth": [i % 10]}
         for i in range(N)]


def make(sid, importance, method="saliency", p=0.9):
    m = np.zeros((11, 1), np.float32)
    m[:10, 0] = importance
    m[future_mask(11, 1, 10)] = np.nan
    toks = [f"w{j}" for j in range(10)]
    return AttributionResult(m, toks + ["x"], ["x"], method, "native", step_scores={"probability": [p]},
                             n_prompt=10, prompt=" ".join(toks), target=" x", sample_id=sid)


def results(transform=lambda v: v, methods=("saliency",)):
    return [make(f"s{i}", transform(v), method=m) for m in methods for i, v in enumerate(IMPS)]


@pytest.fixture(scope="module")
def store(check_db):
    """The session's SQLite store (tests/check/conftest.py); every test makes its own runs."""
    client, exp, tmp_path, uri = check_db.client, check_db.exp, check_db.tmp, check_db.uri

    def run(steps: dict[int, list[AttributionResult]]) -> str:
        run_id = client.create_run(exp).info.run_id
        writer = AttributionWriter(client, run_id=run_id, spool_dir=tmp_path / "spool")
        writer.log_probe_set(PROBE)
        for step, res in steps.items():
            assert writer.log_step(step, res).logged
        return run_id

    return SimpleNamespace(uri=uri, client=client, exp=exp, tmp=tmp_path, run=run)


def check(store, *args):
    return runner.invoke(app, ["check", "--tracking-uri", store.uri, *args])


def tags(store, run_id):
    return {k: v for k, v in store.client.get_run(run_id).data.tags.items() if k.startswith("attrib_mlops.check.")}


def artifacts(store, run_id, path):
    return sorted(a.path for a in store.client.list_artifacts(run_id, path))


# ------------------------------------------------------------------ CLI verdicts
def test_cli_pass_writes_reports_and_logs_back(store):
    base = store.run({10: results(lambda v: v[::-1]), 20: results()})
    cand = store.run({20: results()})
    j, x = store.tmp / "out" / "check.json", store.tmp / "out" / "check.xml"
    res = check(store, "--baseline", f"runs:/{base}", "--candidate", f"runs:/{cand}", "--json-out", str(j),
                "--junit-out", str(x))
    assert res.exit_code == 0, res.output
    assert "attribution check: PASS" in res.stdout and f"runs:/{base} (step 20" in res.stdout
    report = json.loads(j.read_text())
    assert report["verdict"] == "pass" and report["baseline"]["step"] == 20 and report["candidate"]["run_id"] == cand
    assert ET.parse(x).getroot().find("testsuite").get("failures") == "0"
    t = tags(store, cand)
    assert t["attrib_mlops.check.verdict"] == "pass" and t["attrib_mlops.check.baseline"] == f"runs:/{base}"
    assert t["attrib_mlops.check.step"] == "20" and t["attrib_mlops.check.baseline_step"] == "20"
    assert t["attrib_mlops.check.failed"] == "-"
    folder = "attribution/checks/step-0000000020"
    assert t["attrib_mlops.check.report"] == folder
    assert artifacts(store, cand, folder) == [f"{folder}/junit.xml", f"{folder}/report.json", f"{folder}/summary.txt"]
    logged = json.loads(open(store.client.download_artifacts(cand, f"{folder}/report.json")).read())
    assert logged["verdict"] == "pass"
    # an explicit earlier step of the baseline is a regression
    res = check(store, "--baseline", f"runs:/{base}@10", "--candidate", f"runs:/{cand}@latest", "--no-log")
    assert res.exit_code == 1, res.output
    assert tags(store, cand)["attrib_mlops.check.verdict"] == "pass"  # --no-log left the tags alone


def test_cli_regression_exit_1_with_summary_and_tags(store):
    base = store.run({5: results()})
    cand = store.run({5: results(lambda v: v[::-1])})
    x = store.tmp / "junit.xml"
    res = check(store, "--baseline", f"runs:/{base}", "--candidate", f"runs:/{cand}@5", "--junit-out", str(x))
    assert res.exit_code == 1, res.output
    assert "attribution check: REGRESSION" in res.stdout
    assert "FAIL mean_importance_corr" in res.stdout and "samples that changed most" in res.stdout
    assert "attribution regression" in res.stderr and "Traceback" not in res.output
    suite = ET.parse(x).getroot().find("testsuite")
    assert int(suite.get("failures")) >= 2 and suite.find("testcase/failure") is not None
    t = tags(store, cand)
    assert t["attrib_mlops.check.verdict"] == "regression" and t["attrib_mlops.check.exit_code"] == "1"
    assert "saliency:mean_importance_corr" in t["attrib_mlops.check.failed"]
    assert "saliency:hit_at_3_drop" in t["attrib_mlops.check.failed"]  # ground truth from the run's probe set


# ------------------------------------------------------------------ cannot compare / bad input: exit 2
def _assert_exit_2(res, *needles):
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    for n in needles:
        assert n in res.stderr, (n, res.stderr)


def test_cli_unknown_run_id(store):
    base = store.run({1: results()})
    res = check(store, "--baseline", f"runs:/{base}", "--candidate", "runs:/0123456789abcdef0123456789abcdef")
    _assert_exit_2(res, "candidate: unknown run id '0123456789abcdef0123456789abcdef'")


def test_cli_step_not_logged(store):
    base = store.run({10: results(), 20: results()})
    res = check(store, "--baseline", f"runs:/{base}@15", "--candidate", f"runs:/{base}")
    _assert_exit_2(res, f"baseline: step 15 is not logged in run {base}; logged steps: [10, 20]")


def test_cli_run_without_attribution_and_bad_refs(store):
    plain = store.client.create_run(store.exp).info.run_id
    base = store.run({1: results()})
    _assert_exit_2(check(store, "--baseline", f"runs:/{plain}", "--candidate", f"runs:/{base}"),
                   "has no attribution manifest")
    _assert_exit_2(check(store, "--baseline", f"runs:/{base}@last", "--candidate", f"runs:/{base}"),
                   "neither a non-negative integer nor 'latest'")
    _assert_exit_2(check(store, "--baseline", str(store.tmp / "nope"), "--candidate", f"runs:/{base}"),
                   "no such results folder")
    _assert_exit_2(check(store, "--baseline", f"runs:/{base}#other", "--candidate", f"runs:/{base}"),
                   "has no model 'other'")


@pytest.mark.parametrize("text, needle", [
    ("min_mean_spearman: 0.5\nthreshold: 3\n", "unknown key 'threshold'"),
    ("max_probability_drop: lots\n", "'max_probability_drop': Input should be a valid number"),
    ("methods:\n  saliency:\n    k: 3\n", "unknown key 'methods.saliency.k'"),
    ("k: [\n", "not valid YAML"),
])
def test_cli_bad_policy(store, text, needle):
    base = store.run({1: results()})
    policy = store.tmp / "policy.yaml"
    policy.write_text(text)
    res = check(store, "--baseline", f"runs:/{base}", "--candidate", f"runs:/{base}", "--policy", str(policy))
    _assert_exit_2(res, needle, str(policy))
    missing = check(store, "--baseline", f"runs:/{base}", "--candidate", f"runs:/{base}", "--policy",
                    str(store.tmp / "none.yaml"))
    _assert_exit_2(missing, "policy file", "not found")


def test_cli_unwritable_report_is_an_error(store):
    base = store.run({1: results()})
    blocker = store.tmp / "a-file"
    blocker.write_text("x")
    res = check(store, "-b", f"runs:/{base}", "-c", f"runs:/{base}", "--no-log", "--json-out",
                str(blocker / "check.json"))
    _assert_exit_2(res, "cannot write the report")


def test_cli_method_missing_on_one_side(store):
    base = store.run({3: results(methods=("saliency", "attention"))})
    cand = store.run({3: results()})
    res = check(store, "--baseline", f"runs:/{base}", "--candidate", f"runs:/{cand}")
    _assert_exit_2(res, "method 'attention' is missing on the candidate side (candidate has ['saliency'])")
    assert tags(store, cand)["attrib_mlops.check.verdict"] == "cannot_compare"
    ok = check(store, "--baseline", f"runs:/{base}", "--candidate", f"runs:/{cand}", "--method", "saliency")
    assert ok.exit_code == 0, ok.output
    res = check(store, "--baseline", f"runs:/{base}", "--candidate", f"runs:/{cand}", "-m", "saliency", "-m",
                "occlusion")
    _assert_exit_2(res, "method 'occlusion' is missing on the baseline side")


def test_cli_policy_file_changes_the_verdict(store):
    base = store.run({1: results()})
    cand = store.run({1: [make(r.sample_id, IMPS[int(r.sample_id[1:])], p=0.85) for r in results()]})
    assert check(store, "-b", f"runs:/{base}", "-c", f"runs:/{cand}", "--no-log").exit_code == 0
    policy = store.tmp / "strict.yaml"
    policy.write_text("max_probability_drop: 0.01\n")
    res = check(store, "-b", f"runs:/{base}", "-c", f"runs:/{cand}", "-p", str(policy), "--no-log")
    assert res.exit_code == 1 and "FAIL probability_drop = 0.050" in res.stdout


def test_help_documents_the_command():
    res = runner.invoke(app, ["check", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    for s in ("--baseline", "--candidate", "--method", "--policy", "--json-out", "--junit-out", "--tracking-uri",
              "--no-log", "runs:/<run_id>[@<step>|@latest][#<model>]", "Exit code 0 = pass, 1 = regression"):
        assert s in res.stdout, s


# ------------------------------------------------------------------ Python API on MLflow runs
def test_compare_and_log_verdict_api(store):
    base = store.run({1: results(), 2: results()})
    cand = store.run({2: results(lambda v: v[::-1])})
    r = compare(f"runs:/{base}@2", f"runs:/{cand}", tracking_uri=store.uri)
    assert r.verdict == "regression" and r.baseline["step"] == 2 and r.candidate["step"] == 2
    folder = log_verdict(r, cand, store.uri)
    assert folder == "attribution/checks/step-0000000002"
    assert tags(store, cand)["attrib_mlops.check.verdict"] == "regression"
    bad = compare(f"runs:/{base}@7", f"runs:/{cand}", tracking_uri=store.uri)
    assert bad.verdict == "cannot_compare" and "step 7 is not logged" in bad.message()


def test_live_check_matches_steps(store):
    base = store.run({10: results(), 20: results(lambda v: v[::-1])})
    live = LiveCheck(f"runs:/{base}", tracking_uri=store.uri)
    assert live.check(10, results()).verdict == "pass"  # the baseline's step 10
    assert live.check(20, results()).verdict == "regression"  # its step 20
    assert live.check(30, results(lambda v: v[::-1])).verdict == "pass"  # no step 30: its latest (20)
    fixed = LiveCheck(f"runs:/{base}@10", tracking_uri=store.uri)
    assert fixed.check(20, results()).verdict == "pass"
    assert LiveCheck(f"runs:/{base}@latest", tracking_uri=store.uri).check(10, results()).verdict == "regression"


# ------------------------------------------------------------------ live check in the callbacks
@pytest.fixture
def probe(samples):
    prompts, targets = samples
    return [{"id": f"p{i}", "prompt": p, "target": t} for i, (p, t) in enumerate(zip(prompts, targets))]


def test_monitor_logs_the_live_verdict(store, tiny, probe):
    from attrib_mlops.callbacks import AttributionMonitor
    from attrib_mlops.demo.tiny import build_tiny_model

    model, tok = tiny
    base_run = store.client.create_run(store.exp).info.run_id
    base = AttributionMonitor(probe, tok, methods=["saliency"], run_id=base_run, tracking_uri=store.uri,
                              spool_dir=store.tmp / "spool")
    assert base.log(model, 1) and base.log(model, 2)
    base.close()

    run = store.client.create_run(store.exp).info.run_id
    mon = AttributionMonitor(probe, tok, methods=["saliency"], run_id=run, tracking_uri=store.uri,
                             spool_dir=store.tmp / "spool", baseline_run=f"runs:/{base_run}",
                             check_policy={"min_mean_importance_corr": 0.99})
    assert mon.log(model, 1)  # the same model: correlation ~1.0 (the baseline is stored as float16)
    other, _ = build_tiny_model([f"w{i}" for i in range(40)], n_layer=2, n_embd=32, n_head=4, n_positions=64, seed=5)
    assert mon.log(other, 2)
    hist = {int(m.step): m.value for m in store.client.get_metric_history(run, "attrib/check/pass")}
    assert hist[2] == 0.0 and mon.regressed and mon.last_check.verdict == "regression"
    assert mon.last_check.candidate["step"] == 2 and mon.last_check.baseline["step"] == 2
    assert hist[1] == 1.0

    # a check that cannot run is logged and skipped; strict raises
    skip = AttributionMonitor(probe, tok, methods=["attention"], run_id=run, tracking_uri=store.uri,
                              spool_dir=store.tmp / "spool", baseline_run=f"runs:/{base_run}")
    assert skip.log(model, 3)  # the step itself is logged
    assert skip.failures and "missing on the baseline side" in skip.failures[-1][1]
    strict = AttributionMonitor(probe, tok, methods=["attention"], run_id=run, tracking_uri=store.uri,
                                spool_dir=store.tmp / "spool", baseline_run=f"runs:/{base_run}", strict=True)
    with pytest.raises(CannotCompare, match="method 'attention' is missing on the baseline side"):
        strict.log(model, 4)


def test_hf_callback_stops_training_on_regression_only_when_asked(store, tiny, probe):
    from attrib_mlops.callbacks import AttributionCallback, AttributionMonitor
    from attrib_mlops.demo.tiny import build_tiny_model

    model, tok = tiny
    base_run = store.client.create_run(store.exp).info.run_id
    base = AttributionMonitor(probe, tok, methods=["saliency"], run_id=base_run, tracking_uri=store.uri,
                              spool_dir=store.tmp / "spool")
    base.log(model, 4)
    base.close()
    other, _ = build_tiny_model([f"w{i}" for i in range(40)], n_layer=2, n_embd=32, n_head=4, n_positions=64, seed=5)

    def event(stop: bool, step: int, m):
        run = store.client.create_run(store.exp).info.run_id
        cb = AttributionCallback(probe, methods=["saliency"], every_n_steps=2, on_save=False, run_id=run,
                                 tracking_uri=store.uri, spool_dir=store.tmp / "spool", tokenizer=tok,
                                 baseline_run=f"runs:/{base_run}", stop_on_regression=stop,
                                 check_policy={"min_mean_importance_corr": 0.99})
        state = SimpleNamespace(global_step=step, is_world_process_zero=True, stateful_callbacks={})
        control = SimpleNamespace(should_training_stop=False)
        cb.on_step_end(None, state, control, model=m)
        return cb, control

    cb, control = event(True, 4, other)
    assert cb.monitor.last_check.verdict == "regression" and control.should_training_stop
    cb, control = event(False, 4, other)  # off by default
    assert cb.monitor.last_check.verdict == "regression" and not control.should_training_stop
    cb, control = event(True, 4, model)
    assert cb.monitor.last_check.verdict == "pass" and not control.should_training_stop
    with pytest.raises(CannotCompare, match="no such results folder"):
        AttributionCallback(probe, methods=["saliency"], every_n_steps=2, tokenizer=tok,
                            baseline_run=str(store.tmp / "nope"))
