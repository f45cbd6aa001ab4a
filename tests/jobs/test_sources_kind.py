"""Jobs run context-source methods: per-sample sources, cache, an AT2 estimator by folder, MLflow sink + reader."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attrib_mlops.errors import InputError, SpecError
from attrib_mlops.check import compare
from attrib_mlops.jobs import load_local_results, parse_job, run_job
from attrib_mlops.jobs.kinds import method_kind
from attrib_mlops.sources import attribute_sources
from attrib_mlops.sources.at2.estimator import SourceEstimator
from attrib_mlops.tracking import AttributionReader

ROWS = [
    {"id": "s0", "prompt": "w1 w2 w3 w4 w5 w6", "target": " w7", "sources": ["w1 w2", "w3 w4", "w5 w6"],
     "true_sources": [2]},
    {"id": "s1", "prompt": "w8 w9 w10 w11", "target": " w12", "sources": ["w8 w9", "w10 w11"], "true_sources": 0},
    {"id": "s2", "prompt": "w3 w5 w7", "target": " w9", "sources": "token"},
]
OPTS = {"n_ablations": 8, "n_holdout": 4, "topk": [1], "n_random": 1}


@pytest.fixture
def probes(tmp_path):
    path = tmp_path / "probes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def _spec(tmp_path, tiny_dir, probes, estimator, **over):
    d = {"name": "src", "models": [{"name": "tiny", "ref": str(tiny_dir)}], "methods": ["ablation", "at2"],
         "samples": {"source": str(probes)}, "options": {"batch_size": 2},
         "sources": {"estimator": str(estimator), "options": OPTS},
         "output_dir": str(tmp_path / "out"), "cache_dir": str(tmp_path / "cache")}
    d.update(over)
    return d


def test_sources_job_into_mlflow_cached_and_read_back(tmp_path, tiny, tiny_dir, probes, monkeypatch):
    from attrib_mlops.tracking.estimators import log_estimator
    from attrib_mlops.tracking.job_sink import MlflowJobSink

    model, tok = tiny
    est_dir = SourceEstimator.uniform_for(model).save(tmp_path / "est")
    assert method_kind("ablation", "sources") == "sources"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    sink = MlflowJobSink(tracking_uri=uri, experiment="src", spool_dir=tmp_path / "spool")
    out = run_job(_spec(tmp_path, tiny_dir, probes, est_dir), sinks=[sink], progress=False)
    assert out.computed == 6 and out.cached == 0
    abl = next(p for p in out.pairs if p.method == "ablation")
    assert abl.engine == "sources" and set(abl.metrics) >= {"lds", "hit_at_1", "top1_drop"}

    reader = AttributionReader(uri)
    got = reader.load(sink.run_id, 0, "tiny", "ablation", kind="sources")
    assert [r.sample_id for r in got] == ["s0", "s1", "s2"]
    assert got[0].sources == ROWS[0]["sources"] and got[2].sources == ["w3", "w5", "w7"]  # explicit / splitter
    assert got[0].info["true_sources"] == [2] and got[1].info["true_sources"] == [0]
    assert "true_sources" not in got[2].info
    # the reference: the same call outside a job gives the same scores
    [ref] = attribute_sources(model, tok, ROWS[0]["prompt"], ROWS[0]["target"], ROWS[0]["sources"], **OPTS)
    np.testing.assert_allclose(got[0].scores, ref.scores, rtol=1e-6, atol=1e-9)
    at2 = reader.load(sink.run_id, 0, "tiny", "at2", kind="sources")
    assert at2[0].info["estimator"]["fingerprint"] == SourceEstimator.load(est_dir).fingerprint()
    hits = [1.0 if r.ranking()[0] in r.info["true_sources"] else 0.0 for r in got[:2]]
    metrics = reader.client.get_run(sink.run_id).data.metrics
    assert metrics["attrib/sources/tiny/ablation/hit_at_1"] == pytest.approx(np.mean(hits))

    again = run_job(_spec(tmp_path, tiny_dir, probes, est_dir), progress=False)
    assert again.computed == 0 and again.cached == 6
    folder = load_local_results(tmp_path / "out")  # the default sink: the local results folder
    np.testing.assert_array_equal(folder[("tiny", "ablation")][0].scores, got[0].scores)
    assert compare(str(tmp_path / "out"), str(tmp_path / "out")).verdict == "pass"
    # another estimator (other weights), logged to MLflow and named by its models:/ URI, recomputes only at2
    base = SourceEstimator.uniform_for(model)
    w = np.arange(base.weights.size, dtype=np.float32).reshape(base.weights.shape)
    other = SourceEstimator(w / w.sum(), base.architecture, {"kind": "at2"})
    logged = log_estimator(other, run_id=sink.run_id, tracking_uri=uri, step=0)
    assert logged.uri.startswith("models:/")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    third = run_job(_spec(tmp_path, tiny_dir, probes, logged.uri), progress=False)
    assert third.counts[("tiny", "ablation")] == {"computed": 0, "cached": 3}
    assert third.counts[("tiny", "at2")] == {"computed": 3, "cached": 0}
    assert run_job(_spec(tmp_path, tiny_dir, probes, logged.uri), progress=False).computed == 0


def test_sources_spec_errors(tmp_path, tiny_dir, probes):
    spec = parse_job(_spec(tmp_path, tiny_dir, probes, "x", methods=["ablation", "attention"], engine="sources"))
    assert spec.sources.options == OPTS
    with pytest.raises(SpecError, match="unknown key 'sources.splitter'"):
        parse_job(_spec(tmp_path, tiny_dir, probes, "x", sources={"splitter": "line"}))
    with pytest.raises(SpecError, match="unknown source option.*n_ablation;"):
        parse_job(_spec(tmp_path, tiny_dir, probes, "x", sources={"options": {"n_ablation": 8}}))
    with pytest.raises(InputError, match="needs an estimator"):
        run_job(_spec(tmp_path, tiny_dir, probes, "x", methods=["at2"], sources={}), progress=False)
