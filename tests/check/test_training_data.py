"""The opt-in check rule on the overlap of the top training examples (check/training_data.py)."""

from __future__ import annotations

import numpy as np
import pytest

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


# ------------------------------------------------------------------ runs:/ refs through the CLI
TRAIN_TEXTS = {f"e{i}": f"key{i} = value{i} ;" for i in range(10)}


def _query(sid, ids, scores):
    """A query's result over the training examples ``ids`` (an index over that training subset)."""
    return TrainingDataAttribution(np.array(scores, np.float32), list(ids), [TRAIN_TEXTS[i] for i in ids], "tracin",
                                   prompt=f"key{sid[-1]} =", target=f" value{sid[-1]}", sample_id=sid)


def test_cli_compares_training_data_results_of_mlflow_runs(check_db, tmp_path):
    """Runs written like a job's StepSink (one step, training-data kind) on a real SQLite store, checked by the CLI."""
    import json

    from typer.testing import CliRunner

    from attrib_mlops.cli import app
    from attrib_mlops.tracking import AttributionWriter

    uri, client, exp = check_db.uri, check_db.client, check_db.exp

    def run(results):
        rid = client.create_run(exp).info.run_id
        w = AttributionWriter(client, run_id=rid, spool_dir=tmp_path / "spool")
        w.log_probe_set([{"id": r.sample_id, "prompt": r.prompt, "target": r.target} for r in results])
        assert w.log_step(0, results, model="tiny").logged
        return rid

    first = [f"e{i}" for i in range(6)]
    other = [f"e{i}" for i in range(2, 8)]  # an index over another training subset: other top examples
    scores = [[5, 4, 3, 1, 0, -2], [4, 5, 3, 0, -1, -3]]
    base = run([_query("q1", first, scores[0]), _query("q2", first, scores[1])])
    cand = run([_query("q1", other, scores[0]), _query("q2", other, scores[1])])
    policy = tmp_path / "policy.yaml"
    policy.write_text("k: 3\nmin_mean_top_overlap: 0.8\n")

    def check(a, b, *more, log="--no-log"):
        return CliRunner().invoke(app, ["check", "--tracking-uri", uri, "-b", f"runs:/{a}", "-c", f"runs:/{b}",
                                        log, *more])

    ok = check(base, base, "-p", str(policy))
    assert ok.exit_code == 0, ok.output
    assert "method tracin: PASS -- 2 of 2" in ok.stdout and "pass mean_top_overlap = 1.000" in ok.stdout

    out = tmp_path / "report.json"
    bad = check(base, cand, "-p", str(policy), "--json-out", str(out), "--junit-out", str(tmp_path / "r.xml"),
                log="--log")
    assert bad.exit_code == 1, bad.output
    assert client.get_run(cand).data.tags["attrib_mlops.check.verdict"] == "regression"  # logged back to the run
    assert "FAIL mean_top_overlap = 0.333 (required >= 0.800)" in bad.stdout
    assert "q1: top examples 'e0' 'e1' 'e2' -> 'e2' 'e3' 'e4'; top overlap 0.333" in bad.stdout
    report = json.loads(out.read_text())
    assert report["verdict"] == "regression"
    assert report["methods"][0]["metrics"]["mean_top_overlap"] == pytest.approx(1 / 3)
    assert "mean_top_overlap" in (tmp_path / "r.xml").read_text()

    off = check(base, cand)  # the rule is opt-in: the default policy passes the same candidate
    assert off.exit_code == 0 and "method tracin: PASS" in off.stdout, off.output

    missing = check(base, cand, "-p", str(policy), "-m", "grad_cos")  # a method neither run has
    assert missing.exit_code == 2 and "Traceback" not in missing.output and "grad_cos" in missing.output
