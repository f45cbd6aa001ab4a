"""Training-data queries in jobs (jobs/kinds/training_data.py, the spec's ``training_data`` section).

One tiny index over a checkpoint (the session's tiny GPT-2), a job with a token method and two
training-data methods: the results equal direct ``attribute_training_data`` calls, go to the
local folder and to an MLflow run (training-data storage kind, read back through the reader),
and a re-run comes from the cache.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from attrib_mlops.errors import AttribError
from attrib_mlops.jobs import run_job
from attrib_mlops.jobs.spec import parse_job

TRAIN = [{"id": f"t{i}", "text": f"w{i % 9 + 1} w{(3 * i) % 11 + 1} w{i % 5 + 20}"} for i in range(20)]


@pytest.fixture(scope="module")
def index_dir(tiny_dir, tmp_path_factory):
    import attrib_mlops

    out = tmp_path_factory.mktemp("tda-job-index")
    attrib_mlops.build_training_index([str(tiny_dir)], None, TRAIN, 0.1, projection_dim=64, out_dir=str(out),
                                      show_progress=False)
    return out


def _spec(tiny_dir, index_dir, tmp_path, samples, methods=("saliency",)):
    prompts, targets = samples
    src = tmp_path / "probe.jsonl"
    src.write_text("".join(json.dumps({"id": f"s{i}", "prompt": p, "target": t}) + "\n"
                           for i, (p, t) in enumerate(zip(prompts[:2], targets[:2]))))
    return {"name": "tda-job", "models": [{"name": "tiny", "ref": str(tiny_dir)}], "methods": list(methods),
            "samples": {"source": str(src)}, "output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "c"),
            "training_data": {"index": str(index_dir), "methods": ["tracin", "grad_cos"], "top_k": 3}}


def test_spec_validation():
    base = {"name": "j", "models": [{"name": "m", "ref": "x"}], "samples": {"source": "s.jsonl"}}
    with pytest.raises(AttribError, match="at least one attribution method"):
        parse_job(base)
    spec = parse_job({**base, "training_data": {"index": "idx"}})
    assert spec.methods == [] and spec.all_methods == ["tracin"]
    with pytest.raises(AttribError, match="training_data.methods.0"):
        parse_job({**base, "training_data": {"index": "idx", "methods": ["tracinn"]}})
    with pytest.raises(AttribError, match="dampingg"):
        parse_job({**base, "training_data": {"index": "idx", "options": {"dampingg": 1}}})


@pytest.mark.slow
def test_job_runs_training_data_queries_into_folder_and_mlflow(tiny_dir, index_dir, tmp_path, samples):
    import attrib_mlops
    from mlflow.tracking import MlflowClient

    from attrib_mlops.tracking import AttributionReader
    from attrib_mlops.tracking.folder import LocalFolderSink, load_local_results
    from attrib_mlops.tracking.job_sink import MlflowJobSink

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(uri).create_experiment("tda-job", artifact_location=str(tmp_path / "art"))
    spec = _spec(tiny_dir, index_dir, tmp_path, samples)
    mlflow_sink = MlflowJobSink(tracking_uri=uri)
    out = run_job(spec, sinks=[LocalFolderSink(spec["output_dir"]), mlflow_sink], progress=False)
    assert [(p.method, p.engine, p.computed) for p in out.pairs] == [
        ("saliency", "native", 2), ("tracin", "training_data", 2), ("grad_cos", "training_data", 2)]
    assert set(out.pairs[1].metrics) == {"top_score", "positive_share", "top_concentration"}

    local = load_local_results(spec["output_dir"])
    prompts, targets = samples
    for method in ("tracin", "grad_cos"):
        got = local[("tiny", method)]
        assert [r.sample_id for r in got] == ["s0", "s1"]
        for r, p, t in zip(got, prompts, targets):
            want = attrib_mlops.attribute_training_data(str(index_dir), str(tiny_dir), None, p, t, method=method)
            np.testing.assert_allclose(r.scores, want.scores, rtol=1e-5, atol=1e-8)
            assert r.ids == [x["id"] for x in TRAIN] and len(r.top(3)["positive"]) <= 3

    reader = AttributionReader(uri)
    assert "training_data" in reader.kinds(mlflow_sink.run_id)
    stored = reader.load(mlflow_sink.run_id, 0, "tiny", "tracin", kind="training_data")
    np.testing.assert_array_equal(stored[1].scores, local[("tiny", "tracin")][1].scores)

    # the regression check reads the job's run (runs:/ ref) and compares its top examples with the folder's
    from typer.testing import CliRunner

    from attrib_mlops.cli import app

    policy = tmp_path / "policy.yaml"
    policy.write_text("k: 3\nmin_mean_top_overlap: 1.0\n")
    res = CliRunner().invoke(app, ["check", "--tracking-uri", uri, "-b", f"runs:/{mlflow_sink.run_id}#tiny", "-c",
                                   f"{spec['output_dir']}@tiny", "-m", "tracin", "-m", "grad_cos", "-p", str(policy)])
    assert res.exit_code == 0, res.output
    assert "pass mean_top_overlap = 1.000" in res.stdout and "method grad_cos: PASS -- 2 of 2" in res.stdout

    # a re-run through the CLI comes from the cache; its table has the training-data columns
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(spec))
    again = CliRunner().invoke(app, ["run", str(job_file), "--no-progress", "--no-mlflow"], terminal_width=200)
    assert again.exit_code == 0, again.output
    assert "0 results computed, 6 from cache" in again.stdout
    lines = again.stdout.splitlines()
    assert "score" in next(line for line in lines if "new/cached" in line)
    cells = {tuple(line.split()[:2]): line.split()[2:] for line in lines if line.split()[:1] == ["tiny"]}
    # columns: new/cached, the token matrix's top-k, entropy, p(tgt), then top score, supporting, top-k mass
    assert cells[("tiny", "saliency")][0] == "0/2" and cells[("tiny", "saliency")][4] == "-"
    assert cells[("tiny", "tracin")][:5] == ["0/2", "-", "-", "-", f"{out.pairs[1].metrics['top_score']:.2f}"]
    assert cells[("tiny", "grad_cos")][5] == f"{out.pairs[2].metrics['positive_share']:.2f}"


def test_a_run_without_an_index_says_how_to_build_one(tiny_dir, tmp_path, samples):
    from mlflow.tracking import MlflowClient

    from attrib_mlops.training_data.errors import NoTrainingIndexError

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("x", artifact_location=str(tmp_path / "a")))
    spec = _spec(tiny_dir, tmp_path, tmp_path, samples, methods=())
    spec["training_data"].update(index=run.info.run_id, tracking_uri=uri)
    with pytest.raises(NoTrainingIndexError, match="attrib-mlops tda index --run"):
        run_job(spec, progress=False)
