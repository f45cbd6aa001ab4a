"""`attrib-mlops run` logs one MLflow run per job, with status and model differences."""

from __future__ import annotations

import json

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from attrib_mlops.cli import app
from attrib_mlops.tracking import AttributionReader

runner = CliRunner()


@pytest.fixture
def two_model_job(tmp_path, tiny_dir):
    import copy

    import torch

    from attrib_mlops.demo.tiny import save_tiny
    from transformers import AutoModelForCausalLM, AutoTokenizer

    m = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    m2 = copy.deepcopy(m)
    with torch.no_grad():
        for p in m2.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    other = save_tiny(m2, tok, tmp_path / "other")
    samples = tmp_path / "samples.jsonl"
    samples.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "prompt": "w1 w2 w3 w4", "target": " w5 w6", "ground_truth": [1]},
        {"id": "b", "prompt": "w5 w6 w7", "target": " w1", "ground_truth": [0]},
    ]))
    job = {
        "name": "two-models",
        "models": [{"name": "base", "ref": str(tiny_dir)}, {"name": "tuned", "ref": str(other)}],
        "methods": ["saliency", "occlusion"],
        "samples": {"source": str(samples)},
        "targets": "given",
        "output_dir": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def test_run_logs_job_to_mlflow(two_model_job, tmp_path):
    uri = f"sqlite:///{tmp_path}/jobs.db"
    res = runner.invoke(app, ["run", str(two_model_job), "--no-progress", "--tracking-uri", uri])
    assert res.exit_code == 0, res.output
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("two-models")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["job.models"] == "base,tuned"
    reader = AttributionReader(uri)
    assert reader.steps(run.info.run_id) == [0]
    assert sorted(reader.models(run.info.run_id)) == ["base", "tuned"]
    base = reader.load(run.info.run_id, 0, model="base", method="saliency")
    local = json.loads((tmp_path / "out" / "results" / "base" / "saliency.jsonl").read_text().splitlines()[0])
    assert base[0].source_tokens == local["source_tokens"]
    diffs = json.loads(open(client.download_artifacts(run.info.run_id, "attribution/job/differences.json")).read())
    d = diffs["base_vs_tuned"]["saliency"]
    assert d["compared"] == 2 and d["skipped_different_tokens"] == 0
    assert -1.0 <= d["spearman"] <= 1.0 and d["mean_abs_diff"] > 0
    assert "attrib/diff/base_vs_tuned/occlusion/spearman" in run.data.metrics


def test_failed_job_marks_run_failed(tmp_path):
    uri = f"sqlite:///{tmp_path}/jobs.db"
    samples = tmp_path / "s.json"
    samples.write_text(json.dumps([{"id": "a", "prompt": "w1 w2", "target": " w3"}]))
    job = {
        "name": "broken",
        "models": [{"name": "m", "ref": str(tmp_path / "no-such-model")}],
        "methods": ["saliency"],
        "samples": {"source": str(samples)},
        "output_dir": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    res = runner.invoke(app, ["run", str(path), "--no-progress", "--tracking-uri", uri])
    assert res.exit_code == 2
    flat = " ".join(res.output.split())  # rich may wrap long lines
    assert "could not load model" in flat and "Traceback" not in flat
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("broken").experiment_id])
    assert run.info.status == "FAILED"
