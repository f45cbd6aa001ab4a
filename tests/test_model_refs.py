"""MLflow model references never walk out of their run: checked where references are parsed, for every entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from attrib_mlops.errors import InputError
from attrib_mlops.model_refs import check_model_ref, split_runs_uri

BAD = [
    "runs:/0a1b2c/../../..",
    "runs:/0a1b2c/model/../../other-run/artifacts",
    "runs:/../0a1b2c/model",
    "runs:/0a1b2c/%2e%2e/%2E%2E/secret",        # percent-encoded
    "runs:/0a1b2c/%252e%252e/secret",           # encoded twice
    "runs:/0a1b2c/..%2f..%2fsecret",            # encoded separator
    "runs://etc/passwd",                        # absolute
    "runs:/0a1b2c//etc/passwd",                 # absolute path inside
    "runs:/0a1b2c\\..\\..\\secret",             # backslashes
    "runs:/0a1b2c/./model",
    "runs:/0a1b2c/mo\x00del",
    "runs:/",
    "runs:/<svg onload=alert(1)>/model",        # not a run id
    "models:/name/../../1",
    "models:/%2e%2e/x",
    "mlflow-artifacts:/exp/../../secret",
    "mlflow-artifacts://host/a/../../b",
]
GOOD = ["runs:/0a1b2c/checkpoint-100", "runs:/0a1b2c/checkpoint-100/model/", "runs:/0a1b2c", "models:/m-0123abcd",
        "models:/my-model/3", "models:/my-model@champion", "mlflow-artifacts:/1/abc/artifacts/model",
        "mlflow-artifacts://server:5000/1/abc/artifacts/model", "./relative/../local/folder", "gpt2"]


@pytest.mark.parametrize("ref", BAD)
def test_references_that_leave_the_run_are_refused(ref):
    with pytest.raises(InputError, match="model reference") as e:
        check_model_ref(ref)
    assert "runs:/<run_id>/" in str(e.value)  # says what to give instead


@pytest.mark.parametrize("ref", GOOD)
def test_references_inside_a_run_and_local_paths_pass_unchanged(ref):
    assert check_model_ref(ref) == ref


def test_split_runs_uri():
    assert split_runs_uri("runs:/abc/x/y/") == ("abc", "x/y")
    assert split_runs_uri("runs:/abc") == ("abc", "")
    with pytest.raises(InputError, match="'..'"):
        split_runs_uri("runs:/abc/../x")


def test_model_loader_refuses_before_downloading(tmp_path, monkeypatch):
    """The engines' loader (api.attribute, job runner, dashboard worker) stops before MLflow is asked."""
    from mlflow.tracking import MlflowClient

    from attrib_mlops.engines.prep import load_model_and_tokenizer

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("refs", artifact_location=str(tmp_path / "art"))).info.run_id
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with pytest.raises(InputError, match="'..' segment"):
        load_model_and_tokenizer(f"runs:/{run}/../../..")
    assert list((tmp_path / "tmp").iterdir()) == []  # no download folder was even made


def test_job_spec_and_cli_refuse_with_one_line_exit_2(tmp_path):
    from pydantic import ValidationError

    from attrib_mlops.cli import app
    from attrib_mlops.job import JobSpec

    spec = {"name": "j", "models": [{"name": "m", "ref": "runs:/0a1b2c/../../.."}], "methods": ["saliency"],
            "samples": {"source": str(tmp_path / "s.json")}}
    with pytest.raises(ValidationError, match="'..' segment"):
        JobSpec.model_validate(spec)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    res = CliRunner().invoke(app, ["run", str(path)])
    assert res.exit_code == 2, res.output
    assert "'..' segment" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.output


def test_dashboard_form_request_and_worker_refuse(tmp_path):
    from mlflow.tracking import MlflowClient

    from panel_app.jobs import JobRequest, parse_models

    with pytest.raises(InputError, match="'..' segment"):
        parse_models("m=runs:/0a1b2c/../../..")
    with pytest.raises(InputError, match="'..' segment"):
        parse_models("runs:/0a1b2c/%2e%2e/%2e%2e")
    assert parse_models("m=runs:/0a1b2c/checkpoint-1") == [("m", "runs:/0a1b2c/checkpoint-1")]
    with pytest.raises(InputError, match="'..' segment"):
        JobRequest(name="j", experiment="e", models=[("m", "models:/x/../../y")], methods=["saliency"],
                   prompts=["w1"], targets=None, sample_ids=["t0"])

    # a request file written by hand reaches the worker process: it refuses before creating a run
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    req = {"name": "j", "experiment": "e", "models": [["m", "runs:/0a1b2c/../../.."]], "methods": ["saliency"],
           "prompts": ["w1 w2"], "targets": None, "sample_ids": ["t0"]}
    (tmp_path / "request.json").write_text(json.dumps(req))
    out = subprocess.run([sys.executable, "-m", "panel_app.jobs", "--request", str(tmp_path / "request.json"),
                          "--tracking-uri", uri, "--spool-dir", str(tmp_path / "spool")],
                         capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 1, out.stderr[-2000:]
    events = [json.loads(line.split(" ", 1)[1]) for line in out.stdout.splitlines() if line.startswith("@@attrib")]
    assert events[-1]["status"] == "failed" and "'..' segment" in events[-1]["error"]
    assert MlflowClient(uri).search_experiments(filter_string="name = 'e'") == []  # nothing was logged
