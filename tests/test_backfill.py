"""Backfill over checkpoint-* folders: idempotent and interruption-safe, against a real SQLite store."""

from __future__ import annotations

import copy

import pytest
import torch
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

import attrib_mlops.api as api
from attrib_mlops.backfill import backfill, find_checkpoints
from attrib_mlops.cli import app
from attrib_mlops.demo.tiny import save_tiny
from attrib_mlops.errors import InputError
from attrib_mlops.tracking import AttributionReader

PROBE = [
    {"id": "p0", "prompt": "w1 w2 w3", "target": " w4"},
    {"id": "p1", "prompt": "w5 w6 w7 w8", "target": " w9 w1"},
]


@pytest.fixture
def ckpt_root(tiny, tmp_path):
    model, tok = tiny
    root = tmp_path / "out"
    for k, step in enumerate((10, 20, 30)):
        m = copy.deepcopy(model)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.02 * k)
        save_tiny(m, tok, root / f"checkpoint-{step}")
    (root / "checkpoint-notes").mkdir()  # not a checkpoint: ignored
    return root


def test_find_checkpoints(ckpt_root):
    assert [s for s, _ in find_checkpoints(ckpt_root)] == [10, 20, 30]
    with pytest.raises(InputError, match="does not exist"):
        find_checkpoints(ckpt_root / "nope")


def test_backfill_interrupted_then_resumed(ckpt_root, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/bf.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("bf", artifact_location=str(tmp_path / "art"))
    run_id = client.create_run(exp).info.run_id

    real = api.attribute
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated interruption")
        return real(*a, **k)

    monkeypatch.setattr("attrib_mlops.api.attribute", flaky)
    with pytest.raises(KeyboardInterrupt):
        backfill(ckpt_root, run_id=run_id, tracking_uri=uri, probe=PROBE, progress=False,
                 spool_dir=tmp_path / "spool")
    assert AttributionReader(uri).steps(run_id) == [10]
    monkeypatch.setattr("attrib_mlops.api.attribute", real)

    out = backfill(ckpt_root, run_id=run_id, tracking_uri=uri, progress=False, spool_dir=tmp_path / "spool")
    assert out["logged"] == [20, 30] and out["skipped"] == [10]
    again = backfill(ckpt_root, run_id=run_id, tracking_uri=uri, progress=False, spool_dir=tmp_path / "spool")
    assert again["logged"] == [] and again["skipped"] == [10, 20, 30]
    assert AttributionReader(uri).steps(run_id) == [10, 20, 30]
    hist = client.get_metric_history(run_id, "attrib/saliency/mean_probability")
    assert sorted(m.step for m in hist) == [10, 20, 30]  # exactly one value per step: nothing duplicated
    # the checkpoints differ, so the logged results differ between steps
    r10 = AttributionReader(uri).load(run_id, 10, method="saliency")
    r30 = AttributionReader(uri).load(run_id, 30, method="saliency")
    assert r10[0].source_tokens == r30[0].source_tokens
    assert abs(float(r10[0].step_scores["probability"][0]) - float(r30[0].step_scores["probability"][0])) > 1e-6


def test_backfill_cli_new_run_and_errors(ckpt_root, tmp_path):
    uri = f"sqlite:///{tmp_path}/cli.db"
    probe = tmp_path / "probe.json"
    import json

    probe.write_text(json.dumps(PROBE))
    runner = CliRunner()
    res = runner.invoke(app, ["backfill", "--checkpoints", str(ckpt_root), "--probe", str(probe),
                              "--tracking-uri", uri, "--no-progress", "-m", "saliency", "-m", "attention"])
    assert res.exit_code == 0, res.output
    assert "logged steps [10, 20, 30]" in res.output
    bad = runner.invoke(app, ["backfill", "--checkpoints", str(tmp_path / "none"), "--tracking-uri", uri])
    assert bad.exit_code == 2 and "does not exist" in bad.output and "Traceback" not in bad.output
    no_probe = runner.invoke(app, ["backfill", "--checkpoints", str(ckpt_root), "--tracking-uri", uri])
    assert no_probe.exit_code == 2 and "probe" in no_probe.output


def test_backfill_cli_ends_every_run_and_validates_first(ckpt_root, tmp_path):
    """Issue 9 item 6: each run backfill creates ends FINISHED or FAILED; a missing probe creates no run."""
    import json

    uri = f"sqlite:///{tmp_path}/end.db"
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps(PROBE))
    client = MlflowClient(tracking_uri=uri)
    runner = CliRunner()

    def runs():
        exps = [e.experiment_id for e in client.search_experiments()]
        return client.search_runs(exps) if exps else []

    no_probe = runner.invoke(app, ["backfill", "--checkpoints", str(ckpt_root), "--tracking-uri", uri])
    assert no_probe.exit_code == 2 and "probe" in no_probe.output and "Traceback" not in no_probe.output
    assert runs() == []  # validated before any run was created

    for _ in range(2):
        ok = runner.invoke(app, ["backfill", "--checkpoints", str(ckpt_root), "--probe", str(probe),
                                 "--tracking-uri", uri, "--no-progress"])
        assert ok.exit_code == 0, ok.output
    assert sorted(r.info.status for r in runs()) == ["FINISHED", "FINISHED"]

    broken = tmp_path / "broken"
    (broken / "checkpoint-5").mkdir(parents=True)
    (broken / "checkpoint-5" / "config.json").write_text("{}")  # no model in it: loading fails
    bad = runner.invoke(app, ["backfill", "--checkpoints", str(broken), "--probe", str(probe),
                              "--tracking-uri", uri, "--no-progress"])
    assert bad.exit_code != 0
    statuses = sorted(r.info.status for r in runs())
    assert statuses == ["FAILED", "FINISHED", "FINISHED"], statuses
