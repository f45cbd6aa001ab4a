"""Pure-Python tests of the dashboard: state, store, payloads, exports, jobs, app composition (no browser)."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from attrib_mlops.analysis import input_centered_window_sums, output_centered_window_sums, source_importance
from attrib_mlops.tracking import AttributionReader


METHODS = ("saliency", "attention")  # what tests/dashboard/conftest.py writes
STEPS = (10, 20, 30)
REL_TOL = 1e-3  # float16 storage: |stored - float32| <= 2.5e-4 * max|A|


def close(shown, stored, scale) -> bool:
    shown = np.array([np.nan if v is None else v for v in shown], dtype=float)
    stored = np.asarray(stored, dtype=float)
    same_nan = np.array_equal(np.isnan(shown), np.isnan(stored))
    ok = np.isnan(stored) | (np.abs(np.nan_to_num(shown) - np.nan_to_num(stored)) <= REL_TOL * scale)
    return bool(same_nan and ok.all())


# ------------------------------------------------------------------ state
def test_state_defaults_are_per_instance():
    from panel_app.state import AppState

    a, b = AppState(), AppState()
    a.explorer.window = 3
    a.explorer.methods.append("saliency")
    a.compare.left.run_id = "x"
    assert b.explorer.window == 0 and b.explorer.methods == [] and b.compare.left.run_id is None
    assert a.explorer is not b.explorer and a.compare.left is not b.compare.left


def test_no_module_level_mutable_state():
    """Nothing mutable at module level in panel_app: it would be shared by all browser sessions.

    Checked on the source (AST), so this test process never imports Panel (see conftest.py).
    """
    import ast
    from pathlib import Path

    import panel_app

    mutable_calls = {"dict", "list", "set", "defaultdict", "OrderedDict", "deque", "bytearray"}
    for path in sorted(Path(panel_app.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign):
                targets, value = [t.id for t in node.targets if isinstance(t, ast.Name)], node.value
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                targets, value = [node.target.id], node.value
            else:
                continue
            if targets == ["__all__"] or value is None:
                continue
            bad = isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)) or (
                isinstance(value, ast.Call) and getattr(value.func, "id", getattr(value.func, "attr", None))
                in mutable_calls)
            assert not bad, f"{path.name}:{node.lineno} {targets} is a module-level mutable object"


# ------------------------------------------------------------------ store
def test_store_lists_runs_and_contents(dash_store):
    from panel_app.store import DashboardStore

    store = DashboardStore(dash_store.uri)
    got = store.runs()
    assert got.ok and got.note is None
    rows = {r.name: r for r in got.value}
    assert set(rows) == {"run-a", "run-b", "corrupt-run"}
    assert [r.name for r in got.value][:2] == ["run-b", "run-a"]  # newest first
    assert rows["run-a"].status == "RUNNING" and rows["run-b"].status == "FINISHED"
    assert rows["run-a"].n_steps == 3 and rows["run-a"].models == ("model", "other")
    assert set(rows["run-b"].methods) == set(METHODS) and rows["run-b"].n_probe == 4
    assert rows["run-a"].record()["experiment"] == "dashboard-tests"

    c = store.contents(dash_store.runs["a"])
    assert c.ok
    assert c.value.steps == STEPS
    assert c.value.models(30) == ["model", "other"] and c.value.models(10) == ["model"]
    assert set(c.value.methods(30, "other")) == set(METHODS)
    assert c.value.sample_ids() == ["s0", "s1", "s2", "s3"]


def test_store_sample_equals_reader_and_is_cached(dash_store, monkeypatch):
    from panel_app.store import DashboardStore

    store = DashboardStore(dash_store.uri)
    run = dash_store.runs["a"]
    got = store.sample(run, 20, "model", "saliency", "s1")
    assert got.ok
    ref = AttributionReader(dash_store.uri).load(run, 20, "model", "saliency", ["s1"])[0]
    np.testing.assert_array_equal(got.value.matrix, ref.matrix)
    calls = []
    monkeypatch.setattr(store.reader, "load_sample", lambda *a: calls.append(a))
    assert store.sample(run, 20, "model", "saliency", "s1").value is got.value
    assert calls == []


def test_fixture_constants(dash_store):
    assert dash_store.methods == METHODS and dash_store.steps == STEPS and dash_store.rel_tol == REL_TOL


def test_unreachable_tracking_server_is_a_message(fast_fail_http, port):
    from panel_app.store import DashboardStore

    uri = f"http://127.0.0.1:{port}"
    store = DashboardStore(uri)
    t0 = time.monotonic()
    got = store.runs()
    assert time.monotonic() - t0 < 30
    assert not got.ok and got.value is None
    assert "Cannot reach the tracking server" in got.error and uri in got.error
    c = store.contents("0123456789abcdef")
    assert not c.ok and "Cannot reach" in c.error


def test_empty_store_says_so(tmp_path):
    from panel_app.store import DashboardStore

    got = DashboardStore(f"sqlite:///{tmp_path}/empty.db").runs()
    assert got.ok and got.value == []
    assert "No runs with attribution" in got.note


def test_bad_sqlite_path_is_a_message(tmp_path):
    from panel_app.store import DashboardStore

    (tmp_path / "a-file").write_text("not a folder")
    got = DashboardStore(f"sqlite:///{tmp_path}/a-file/x.db").runs()
    assert not got.ok and "Cannot open the tracking store" in got.error


def test_corrupt_parquet_is_a_message_and_the_rest_works(dash_store):
    from panel_app.store import DashboardStore

    store = DashboardStore(dash_store.uri)
    run = dash_store.runs["corrupt"]
    bad = store.sample(run, 20, "model", "saliency", "s0")
    assert not bad.ok
    assert "saliency.parquet" in bad.error and "corrupt" in bad.error
    assert store.sample(run, 20, "model", "attention", "s0").ok
    assert store.sample(run, 10, "model", "saliency", "s0").ok
    problems = store.problems(run)
    assert problems.ok and any("saliency.parquet" in p for p in problems.value)


def test_unknown_run_step_and_sample_are_messages(dash_store):
    from panel_app.store import DashboardStore

    store = DashboardStore(dash_store.uri)
    assert "cannot be read" in store.contents("f" * 32).error
    not_yet = store.sample(dash_store.runs["b"], 999, "model", "saliency", "s0")
    assert not not_yet.ok and "not (yet) committed" in not_yet.error
    assert not store.sample(dash_store.runs["b"], 10, "model", "saliency", "nope").ok
    assert not store.sample(None, 10, "model", "saliency", "s0").ok


def test_a_step_being_written_is_invisible_until_committed(dash_store):
    """Files of a step uploaded but not yet listed in the manifest (a writer mid-commit) are not shown."""
    import shutil
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    from panel_app.store import DashboardStore

    run = dash_store.runs["b"]
    art = Path(MlflowClient(tracking_uri=dash_store.uri).get_run(run).info.artifact_uri) / "attribution/steps"
    shutil.copytree(art / "0000000030", art / "0000000050")  # uploaded, manifest not rewritten yet
    store = DashboardStore(dash_store.uri)
    assert store.contents(run, refresh=True).value.steps == STEPS
    got = store.sample(run, 50, "model", "saliency", "s0")
    assert not got.ok and "not (yet) committed" in got.error
    assert store.runs().value[0].n_steps == 3


def test_corrupt_manifest_is_a_message(dash_store, tmp_path):
    from mlflow.tracking import MlflowClient

    from panel_app.store import DashboardStore

    client = MlflowClient(tracking_uri=dash_store.uri)
    exp = client.get_experiment_by_name("dashboard-tests").experiment_id
    run = client.create_run(exp, run_name="torn-manifest", tags={"attrib_mlops.schema_version": "1"})
    (tmp_path / "manifest.json").write_text("{not json", encoding="utf-8")
    client.log_artifact(run.info.run_id, str(tmp_path / "manifest.json"), "attribution")
    got = DashboardStore(dash_store.uri).contents(run.info.run_id)
    assert not got.ok and "not valid JSON" in got.error
    client.delete_run(run.info.run_id)


def test_changed_most_ranks_samples(dash_store):
    from panel_app.store import DashboardStore

    store = DashboardStore(dash_store.uri)
    got = store.changed_most(dash_store.runs["a"], "model", "saliency", 10, 30)
    assert got.ok and {r["sample"] for r in got.value} == {"s0", "s1", "s2", "s3"}
    js = [r["change (JS)"] for r in got.value]
    assert js == sorted(js, reverse=True) and all(0 <= x <= 1 for x in js)
    assert not store.changed_most(dash_store.runs["a"], "model", "nomethod", 10, 30).ok


def test_metric_keys_and_history(dash_store):
    from panel_app.store import DashboardStore

    store = DashboardStore(dash_store.uri)
    keys = store.metric_keys(dash_store.runs["a"])
    assert keys.ok and "loss" in keys.value["loss"]
    assert "attrib/saliency/topk_mass" in keys.value["attribution"]
    hist = store.metric_history(dash_store.runs["a"], "loss")
    assert [s for s, _ in hist.value] == list(STEPS)


# ------------------------------------------------------------------ payloads
def test_explorer_payload_matches_matrix_and_window(dash_store):
    from panel_app.payload import explorer_payload

    reader = AttributionReader(dash_store.uri)
    run = dash_store.runs["a"]
    res = {m: reader.load_sample(run, 20, "model", m, "s1") for m in METHODS}
    p = explorer_payload({"saliency": res["saliency"]})
    side = p["sides"][0]
    a = res["saliency"].matrix
    scale = float(np.nanmax(np.abs(a)))
    assert close(side["methods"][0]["source"], source_importance(a), scale * a.shape[1])
    assert close([row[1] for row in side["methods"][0]["matrix"]], a[:, 1], scale)
    assert list(side["scores"]) == ["probability", "entropy"]

    w = explorer_payload({"saliency": res["saliency"]}, window=1)
    assert close([row[0] for row in w["sides"][0]["methods"][0]["matrix"]],
                 input_centered_window_sums(a, 1)[:, 0], 3 * scale)
    w = explorer_payload({"saliency": res["saliency"]}, window=1, axis="target")
    assert close(w["sides"][0]["methods"][0]["matrix"][0], output_centered_window_sums(a, 1)[0], 3 * scale)

    two = explorer_payload(res)
    assert [m["name"] for m in two["sides"][0]["methods"]] == list(METHODS)
    assert two["sides"][0]["methods"][0]["color"] != two["sides"][0]["methods"][1]["color"]
    mean = explorer_payload(res, combine="mean")
    assert len(mean["sides"][0]["methods"]) == 1 and mean["sides"][0]["methods"][0]["name"].startswith("mean(")
    json.dumps(p, allow_nan=False)  # what is sent to the browser is strict JSON


def test_compare_never_compares_different_tokens(dash_store):
    from panel_app.payload import compare_payload, compare_results

    reader = AttributionReader(dash_store.uri)
    a = reader.load_sample(dash_store.runs["a"], 30, "model", "saliency", "s2")
    b = reader.load_sample(dash_store.runs["b"], 30, "model", "saliency", "s2")
    cmp = compare_results(a, b)
    assert not cmp.same_tokens and "different tokens" in cmp.message and "common prefix" in cmp.message
    assert cmp.n_target == 1 and cmp.n_source == a.n_prompt + 1
    np.testing.assert_allclose(cmp.diff, a.matrix[: cmp.n_source, :1] - b.matrix[: cmp.n_source, :1])
    p = compare_payload(cmp, left_title="l", right_title="r", method="saliency")
    assert len(p["diff"]["target"]) == 1 and p["message"] == cmp.message

    c = reader.load_sample(dash_store.runs["a"], 10, "model", "saliency", "s2")
    same = compare_results(a, c)
    assert same.same_tokens and same.message is None and same.diff.shape == a.matrix.shape


# ------------------------------------------------------------------ exports
def test_exports(dash_store):
    from panel_app.export import matrix_csv, matrix_json, standalone_html
    from panel_app.payload import explorer_payload
    from panel_app.plots import heatmap

    r = AttributionReader(dash_store.uri).load_sample(dash_store.runs["b"], 10, "model", "saliency", "s0")
    html = standalone_html(explorer_payload({"saliency": r}), [heatmap(r.matrix, r.source_tokens, r.target_tokens)],
                           title="t <x>", meta={"run": "r"})
    assert "attribDraw(document.getElementById" in html and "t &lt;x&gt;" in html
    assert "cdn.bokeh.org" not in html  # standalone: Bokeh is inlined
    csv = matrix_csv(r.matrix, r.source_tokens, r.target_tokens).splitlines()
    assert len(csv) == 1 + r.matrix.size and csv[0].startswith("source_index")
    doc = json.loads(matrix_json(r.matrix, r.source_tokens, r.target_tokens, {"run": "r"}))
    assert doc["matrix"][-1][0] is None and doc["run"] == "r"
    assert math.isclose(doc["matrix"][0][0], float(r.matrix[0, 0]), rel_tol=1e-6)


def test_export_metadata_is_readable_and_csv_cells_are_not_formulas():
    from panel_app.export import csv_text, matrix_csv, standalone_html

    page = standalone_html({}, [], title="t", meta={"methods": ["saliency", "attention"], "window": None,
                                                  "A1": {"run": "r", "step": 20}})
    assert "<td>saliency, attention</td>" in page and "<td>—</td>" in page and "<td>run r; step 20</td>" in page
    assert "[" not in page.split('<table class="attrib-meta">')[1].split("</table>")[0]  # no Python reprs
    assert csv_text("=1+1") == "'=1+1" and csv_text("@x") == "'@x" and csv_text("-0.5") == "-0.5"
    rows = matrix_csv(np.ones((1, 1)), ["=HYPERLINK(x)"], ["+y"]).splitlines()
    assert rows[1] == "0,'=HYPERLINK(x),0,'+y,1.0"


def test_difference_heatmap_colours_relative_to_the_values():
    from bokeh.models import LinearColorMapper

    from panel_app.plots import STORAGE_REL_ERROR, difference_heatmap, identical_within_storage

    left = np.array([[1.0, 0.5], [0.25, np.nan]])
    right = left * (1 + 1e-7)
    diff = left - right
    fig = difference_heatmap(diff, left, right, ["a", "b"], ["c", "d"])
    mapper = next(m for m in fig.select(type=LinearColorMapper))
    assert mapper.high == pytest.approx(float(np.nanmax(np.abs(right)))) and mapper.low == -mapper.high
    assert identical_within_storage(diff, left, right)
    assert not identical_within_storage(diff + 4 * STORAGE_REL_ERROR, left, right)


# ------------------------------------------------------------------ jobs
def test_job_form_validation(tiny_dir, tmp_path):
    from attrib_mlops.errors import InputError
    from panel_app.jobs import JobRequest, parse_models, parse_samples

    assert parse_models(f"tiny={tiny_dir}") == [("tiny", str(tiny_dir.resolve()))]
    assert parse_models("runs:/abc/model")[0][1] == "runs:/abc/model"
    with pytest.raises(InputError, match="not a local folder"):
        parse_models("gpt2")  # hub ids are never downloaded
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="config.json"):
        parse_models(str(tmp_path / "empty"))
    with pytest.raises(InputError, match="unique"):
        parse_models(f"a={tiny_dir}\na={tiny_dir}")
    assert parse_samples("w1 w2 ||| w3\nw4 ||| w5 w6") == (["w1 w2", "w4"], [" w3", " w5 w6"], ["t0", "t1"])
    assert parse_samples("w1 w2")[1] is None
    with pytest.raises(InputError, match="on every line"):
        parse_samples("w1 ||| w2\nw3")
    with pytest.raises(InputError, match="method"):
        JobRequest.from_form(name="j", experiment="e", models=str(tiny_dir), methods=[], text="w1 ||| w2")


def test_job_runner_logs_a_finished_run(tiny_dir, tmp_path):
    from panel_app.jobs import JobRequest, JobRunner

    uri = f"sqlite:///{tmp_path}/jobs.db"
    runner = JobRunner(uri)
    req = JobRequest.from_form(name="unit-job", experiment="jobs", models=f"tiny={tiny_dir}",
                               methods=["saliency", "attention"], text="w1 w2 w3 ||| w4 w5\nw6 w7 ||| w8",
                               batch_size=1)
    handle = runner.submit(req)
    assert handle.wait(300), handle.snapshot()
    snap = handle.snapshot()
    assert snap["status"] == "finished", snap
    assert snap["progress"] == 1.0
    reader = AttributionReader(uri)
    info = reader.run_info(snap["run_id"])
    assert info.status == "FINISHED" and info.run_name == "unit-job" and set(info.methods) == {"saliency",
                                                                                                 "attention"}
    r = reader.load_sample(snap["run_id"], 0, "tiny", "saliency", "t1")
    assert r.target_tokens == ["w8"] and r.engine == "native"
    runner.shutdown(wait=True)

    # the jobs table reads jobs from the store, whoever ran them (issue 9 item 20): this dashboard job, a job of
    # `attrib-mlops run` (tag attrib_mlops.kind=job), not a plain training run
    from mlflow.tracking import MlflowClient

    from panel_app.store import DashboardStore

    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("other-exp", artifact_location=str(tmp_path / "other-art"))
    cli_job = client.create_run(exp, run_name="cli-job", tags={"attrib_mlops.kind": "job",
                                                                "attrib_mlops.error": "<b>boom</b>"}).info.run_id
    client.set_terminated(cli_job, "FAILED")
    client.create_run(exp, run_name="training-run")
    got = DashboardStore(uri).jobs()
    assert got.ok, got.error
    assert [(j["name"], j["status"], j["experiment"]) for j in got.value] == [
        ("cli-job", "FAILED", "other-exp"), ("unit-job", "FINISHED", "jobs")]
    assert got.value[1]["run_id"] == snap["run_id"] and got.value[0]["error"] == "<b>boom</b>"


def test_job_worker_reports_failures(tmp_path, capsys):
    from panel_app.jobs import main

    assert main(["--request", str(tmp_path / "missing.json"), "--spool-dir", str(tmp_path)]) == 1
    line = capsys.readouterr().out.strip().splitlines()[-1]
    event = json.loads(line.split(" ", 1)[1])
    assert event["status"] == "failed" and "missing.json" in event["error"]


# ------------------------------------------------------------------ app (separate process)
def test_app_checks_in_a_separate_process(dash_store):
    """Runs tests/dashboard/inprocess_app_checks.py (create_app, views, two sessions) in its own pytest process.

    The app imports Panel, and once Panel is imported Bokeh lists Panel's module shim among the
    inline resources, which the tracking writer's view.html rendering refuses; keeping Panel out of
    this process keeps every other test's writer working.
    """
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    env = dict(os.environ, ATTRIB_DASH_TEST_STORE=dash_store.to_json())
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(here / "inprocess_app_checks.py")], env=env, capture_output=True, text=True,
                          timeout=600, cwd=here.parent.parent)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout
