"""The attrib-mlops command line (typer.testing.CliRunner, in-process)."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from attrib_mlops.cli import app

runner = CliRunner()


@pytest.fixture
def job_yaml(tmp_path, tiny_dir):
    samples = tmp_path / "samples.json"
    samples.write_text(json.dumps([
        {"id": "a", "prompt": "w1 w2 w3 w4", "target": " w5 w6", "ground_truth": [1]},
        {"id": "b", "prompt": "w5 w6 w7", "target": " w1", "ground_truth": [0]},
        {"id": "c", "prompt": "w8 w9", "target": " w0"},
    ]))
    job = {
        "name": "cli-job",
        "models": [{"name": "tiny", "ref": str(tiny_dir)}],
        "methods": ["saliency", "attention"],
        "samples": {"source": str(samples)},
        "options": {"batch_size": 2},
        "output_dir": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def test_run_end_to_end(job_yaml, tmp_path):
    res = runner.invoke(app, ["run", str(job_yaml), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "6 results computed, 0 from cache" in res.stdout
    assert str(tmp_path / "out") in res.stdout.replace("\n", "")
    assert "saliency" in res.stdout and "hit@1" in res.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [(p["model"], p["method"], p["n"]) for p in summary["pairs"]] == [("tiny", "saliency", 3),
                                                                            ("tiny", "attention", 3)]
    again = runner.invoke(app, ["run", str(job_yaml), "--no-progress", "-o", str(tmp_path / "out2")])
    assert again.exit_code == 0, again.output
    assert "0 results computed, 6 from cache" in again.stdout
    assert (tmp_path / "out2" / "manifest.json").exists()


def test_bad_spec_is_one_line_exit_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: j\nmodels: [{name: m, ref: x, pth: 1}]\nmethods: [saliency]\nsamples: {source: s.csv}\n")
    res = runner.invoke(app, ["run", str(bad)])
    assert res.exit_code == 2
    assert "unknown key 'models.0.pth'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.output
    verbose = runner.invoke(app, ["run", str(bad), "--verbose"])
    assert verbose.exit_code == 2 and "Traceback" in verbose.stderr
    missing = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "not found" in missing.stderr and "Traceback" not in missing.output


def test_methods_version_and_help():
    res = runner.invoke(app, ["methods"])
    assert res.exit_code == 0 and "saliency" in res.stdout and "native" in res.stdout
    res = runner.invoke(app, ["version"])
    assert res.exit_code == 0 and "attrib-mlops" in res.stdout and "torch" in res.stdout
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "make-tiny-model" in res.stdout


def test_make_tiny_model(tmp_path):
    target = tmp_path / "kv-model"
    res = runner.invoke(app, ["make-tiny-model", str(target), "--n-layer", "1", "--n-embd", "16", "--n-head", "2"])
    assert res.exit_code == 0, res.output
    assert (target / "config.json").exists() and (target / "tokenizer.json").exists()
    res = runner.invoke(app, ["make-tiny-model", str(target)])
    assert res.exit_code == 2 and "not empty" in res.stderr
