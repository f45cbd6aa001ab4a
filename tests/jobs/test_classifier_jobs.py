"""Classifier jobs end to end: demo:sentiment probes, a tiny BERT classifier, a real SQLite MLflow store,
the registered classifier metrics (probe accuracy, rationale alignment) and `attrib-mlops check` on two runs."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from attrib_mlops.analysis.rationale import rationale_report
from attrib_mlops.cli import app
from attrib_mlops.demo.sentiment import make_sentiment_records
from attrib_mlops.demo.tiny_classifier import build_tiny_classifier
from attrib_mlops.jobs import JobSpec, LocalFolderSink, load_local_results, run_job
from attrib_mlops.samples import ProbeSet

PROBE = {"source": "demo:sentiment", "n": 8, "seed": 7}


def _vocab() -> list[str]:
    words = {w for r in make_sentiment_records(200, seed=0) for w in re.findall(r"\w+|[^\w\s]", r["text"].lower())}
    return sorted(words)


def _train(model, tok, steps: int = 20) -> None:
    """A few Adam steps on generated reviews (another seed than the probe set): probe accuracy 1 in ~1 s."""
    recs = make_sentiment_records(64, seed=1)
    enc = tok([r["text"] for r in recs], padding=True, return_tensors="pt")
    y = torch.tensor([r["label_id"] for r in recs])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for i in range(steps):
            sl = slice((i * 16) % 64, (i * 16) % 64 + 16)
            loss = model(input_ids=enc["input_ids"][sl], attention_mask=enc["attention_mask"][sl], labels=y[sl]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory):
    """(trained folder, untrained folder): the same tiny BERT before and after training."""
    root = tmp_path_factory.mktemp("clf-models")
    model, tok = build_tiny_classifier("bert", _vocab(), hidden=16, layers=1, heads=2, seed=0)
    model.save_pretrained(root / "untrained")
    tok.save_pretrained(root / "untrained")
    _train(model, tok)
    model.save_pretrained(root / "trained")
    tok.save_pretrained(root / "trained")
    return root / "trained", root / "untrained"


@pytest.fixture(scope="module")
def runs(classifiers, tmp_path_factory):
    """Both models' jobs logged to one SQLite MLflow store: ``(uri, tmp, {name: (outcome, sink)}, spec)``."""
    from attrib_mlops.tracking.job_sink import MlflowJobSink

    tmp = tmp_path_factory.mktemp("clf-runs")
    uri = f"sqlite:///{tmp}/mlflow.db"
    out = {}
    for name, ref, methods in (("base", classifiers[0], ("saliency", "integrated_gradients")),
                               ("cand", classifiers[1], ("saliency",))):
        sink = MlflowJobSink(tracking_uri=uri, experiment="clf")
        spec = _spec(tmp, name, ref, methods)
        out[name] = (run_job(spec, sinks=[sink, LocalFolderSink(spec.output_dir)], progress=False), sink, spec)
    return uri, tmp, out


def _spec(tmp_path, name, ref, methods=("saliency", "integrated_gradients"), **kw) -> JobSpec:
    return JobSpec.model_validate({
        "name": name, "models": [{"name": "clf", "ref": str(ref)}], "methods": list(methods), "samples": PROBE,
        "options": {"batch_size": 4, "n_steps": 8}, "output_dir": str(tmp_path / name),
        "cache_dir": str(tmp_path / "cache"), **kw})


def test_demo_sentiment_source_has_labels_and_rationale_spans():
    ps = ProbeSet.from_spec(PROBE)
    assert len(ps) == 8 and {s.target for s in ps} == {"negative", "positive"}
    s = ps[0]
    assert s.ground_truth is None and s.meta["rationale_spans"]
    assert all(s.prompt[a:b] == w for w, (a, b) in zip(s.meta["rationale"], s.meta["rationale_spans"]))
    assert ProbeSet.from_spec(PROBE).fingerprint == ps.fingerprint


def test_classifier_job_logs_accuracy_and_rationale_metrics_to_sqlite(runs):
    from mlflow import MlflowClient

    uri, tmp_path, jobs = runs
    out, sink, spec = jobs["base"]
    assert out.status == "FINISHED" and out.computed == 16

    # the job summary = the registry's metrics, checked against the rationale reference (analysis.rationale)
    stored = load_local_results(spec.output_dir)
    ps = ProbeSet.from_spec(PROBE)
    records = [{"id": s.id, "label": s.target, "rationale_spans": s.meta["rationale_spans"]} for s in ps]
    for pair in out.pairs:
        results = stored[("clf", pair.method)]
        assert all(r.info["gold_label"] == s.target for r, s in zip(results, ps))
        # special tokens are never rationale rows
        assert all(r.info["special_tokens_mask"][p] == 0 for r in results for p in r.info["rationale_positions"])
        ref = rationale_report(results, records, k=1, level="token")[pair.method]
        m = pair.metrics
        assert m["probe_accuracy"] == pytest.approx(ref["accuracy"])
        assert m["rationale_hit_at_1"] == pytest.approx(ref["hit@1"])
        assert m["rationale_tau"] == pytest.approx(ref["kendall_tau_norm"])
        assert m["probe_accuracy"] >= 0.75  # the trained model
    # the CLI table shows them
    from attrib_mlops.cli.app import metrics_table, table_metrics

    assert {"probe_accuracy", "rationale_hit_at_1", "rationale_tau"} <= set(table_metrics())
    assert "acc" in str([c.header for c in metrics_table([{"model": "clf", "method": p.method, "metrics": p.metrics}
                                                           for p in out.pairs]).columns])
    # the writer logged them as MLflow metrics
    run = MlflowClient(uri).get_run(sink.run_id)
    keys = set(run.data.metrics)
    for method in ("saliency", "integrated_gradients"):
        for name in ("probe_accuracy", "rationale_hit_at_1", "rationale_hit_at_3", "rationale_tau"):
            assert any(k.endswith(f"{method}/{name}") and k.startswith("attrib/") for k in keys), (name, keys)
    acc_key = next(k for k in keys if k.endswith("saliency/probe_accuracy"))
    assert run.data.metrics[acc_key] == pytest.approx(out.pairs[0].metrics["probe_accuracy"])
    # the local folder has them too, and a second run is all cache hits with the same metrics
    again = run_job(spec, progress=False)
    assert again.computed == 0
    assert again.pairs[0].metrics["rationale_tau"] == pytest.approx(out.pairs[0].metrics["rationale_tau"])


def test_check_on_two_classifier_runs(runs, tmp_path):
    uri, _, jobs = runs
    runs = {name: sink.run_id for name, (_, sink, _) in jobs.items()}
    runner = CliRunner()
    same = runner.invoke(app, ["check", "-b", f"runs:/{runs['base']}", "-c", f"runs:/{runs['base']}",
                               "--tracking-uri", uri, "--json-out", str(tmp_path / "same.json")])
    assert same.exit_code == 0, same.output
    rep = json.loads((tmp_path / "same.json").read_text())
    names = {r["name"]: r for r in rep["methods"][0]["rules"]}
    assert names["probe_accuracy_drop"]["passed"] is True and names["rationale_tau_drop"]["passed"] is True
    worse = runner.invoke(app, ["check", "-b", f"runs:/{runs['base']}", "-c", f"runs:/{runs['cand']}", "-m", "saliency",
                                "--tracking-uri", uri, "--json-out", str(tmp_path / "worse.json")])
    rep = json.loads((tmp_path / "worse.json").read_text())
    m = rep["methods"][0]["metrics"]
    assert m["probe_accuracy_baseline"] - m["probe_accuracy"] == pytest.approx(m["probe_accuracy_drop"])
    assert m["probe_accuracy_drop"] > 0.1
    failed = {r["name"] for r in rep["methods"][0]["rules"] if r["passed"] is False}
    assert "probe_accuracy_drop" in failed
    assert worse.exit_code == 1, worse.output
    assert np.isfinite(m["rationale_tau_drop"])


def test_cli_job_with_a_label_the_model_lacks_exits_2_listing_the_labels(tmp_path, classifiers):
    samples = tmp_path / "probe.jsonl"
    samples.write_text(json.dumps({"id": "x", "prompt": "the film was dreadful", "target": "neutral"}) + "\n")
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"name": "bad-label", "models": [{"name": "clf", "ref": str(classifiers[1])}],
                                "methods": ["saliency"], "samples": {"source": str(samples)},
                                "output_dir": str(tmp_path / "out"), "cache_dir": None}))
    res = CliRunner().invoke(app, ["run", str(spec)])
    assert res.exit_code == 2, res.output
    assert "unknown label 'neutral'" in res.stderr and "0='negative', 1='positive'" in res.stderr
    assert "Traceback" not in res.output


def test_engine_auto_runs_lime_on_a_classifier_through_captum(classifiers, tmp_path):
    """``engine: auto`` (the default) picks the engine per model kind: captum for lime on a classifier, not inseq."""
    from attrib_mlops import attribute
    from attrib_mlops.api import resolve_engine
    from attrib_mlops.jobs.executor import LocalExecutor
    from attrib_mlops.jobs.spec import ModelSpec
    from attrib_mlops.options import AttributeOptions

    assert resolve_engine("lime") == "inseq" and resolve_engine("lime", model_kind="classifier") == "captum"
    ex = LocalExecutor()
    ex.open(ModelSpec(name="clf", ref=str(classifiers[1])), AttributeOptions())
    assert ex.model_kind("clf") == "classifier"
    spec = JobSpec.model_validate({
        "name": "lime", "models": [{"name": "clf", "ref": str(classifiers[1])}], "methods": ["lime"],
        "engine": "auto", "samples": PROBE, "targets": "given", "output_dir": str(tmp_path / "lime"),
        "options": {"batch_size": 4, "method_kwargs": {"n_samples": 40}}})
    out = run_job(spec, progress=False)
    assert out.status == "FINISHED" and [p.engine for p in out.pairs] == ["captum"]
    stored = load_local_results(spec.output_dir)[("clf", "lime")]
    # the same cells as attribute() with engine auto on the loaded model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(classifiers[1])
    tok = AutoTokenizer.from_pretrained(classifiers[1])
    ps = ProbeSet.from_spec(PROBE)
    ref = attribute(model, tok, [s.prompt for s in ps][:2], [s.target for s in ps][:2], methods="lime",
                    engine="auto", method_kwargs={"n_samples": 40})
    for r, s in zip(ref, stored):
        assert r.engine == s.engine == "captum"
        np.testing.assert_allclose(s.matrix, r.matrix, rtol=1e-5, atol=1e-7)
        assert np.abs(r.matrix).max() > 0
