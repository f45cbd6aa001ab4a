"""The ``attribution`` MLflow evaluator: entry point, real SQLite store, models logged with mlflow.transformers."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = "attrib_mlops.mlflow_plugin.evaluator:AttributionEvaluator"


@pytest.fixture
def store(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture
def registered(tmp_path, monkeypatch):
    """MLflow's evaluator registry filled from the ``mlflow.model_evaluator`` entry points.

    The entry point is declared in pyproject.toml. When the installed metadata is older than
    that declaration (the package was not reinstalled), the declaration is installed into a
    throwaway dist-info on sys.path, exactly as ``pip install`` would write it.
    """
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert declared["mlflow.model_evaluator"] == {"attribution": TARGET}
    installed = [e for e in importlib.metadata.entry_points(group="mlflow.model_evaluator") if e.name == "attribution"]
    if not installed:
        dist = tmp_path / "site" / "attrib_mlops_entry_points-0.0.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: attrib-mlops-entry-points\nVersion: 0.0\n")
        lines = ["[mlflow.model_evaluator]"] + [f"{k} = {v}" for k, v in declared["mlflow.model_evaluator"].items()]
        (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
        monkeypatch.syspath_prepend(str(tmp_path / "site"))
        importlib.invalidate_caches()
    eps = [e for e in importlib.metadata.entry_points(group="mlflow.model_evaluator") if e.name == "attribution"]
    assert [e.value for e in eps][:1] == [TARGET]
    from mlflow.models.evaluation.evaluator_registry import _model_evaluation_registry as rg

    rg.register_entrypoints()
    from attrib_mlops.mlflow_plugin.evaluator import AttributionEvaluator

    assert rg._registry["attribution"] is AttributionEvaluator
    yield rg
    rg._registry.pop("attribution", None)


def _log(model, tok, task):
    import mlflow

    with mlflow.start_run():
        return mlflow.transformers.log_model(transformers_model={"model": model, "tokenizer": tok}, task=task,
                                             name="model", pip_requirements=["transformers", "torch"])


def test_classifier_evaluation_logs_layout_and_metrics(store, registered):
    import mlflow
    import torch

    from attrib_mlops.analysis.rationale import rationale_report
    from attrib_mlops.demo.sentiment import make_sentiment_records
    from attrib_mlops.demo.tiny_classifier import build_tiny_classifier
    from attrib_mlops.tracking import AttributionReader

    recs = make_sentiment_records(8, seed=5)
    vocab = sorted({w.strip(".,'").lower() for r in recs for w in r["text"].split()})
    model, tok = build_tiny_classifier("bert", vocab, seed=1)
    info = _log(model, tok, "text-classification")
    df = pd.DataFrame({"text": [r["text"] for r in recs], "label": [r["label"] for r in recs],
                       "id": [r["id"] for r in recs], "rationale_spans": [r["rationale_spans"] for r in recs]})
    with mlflow.start_run() as run:
        out = mlflow.models.evaluate(
            info.model_uri, df, targets="label", model_type="classifier", evaluators=["attribution"],
            evaluator_config={"attribution": {"methods": ["saliency", "occlusion"], "id_column": "id",
                                              "text_column": "text", "rationale_column": "rationale_spans",
                                              "step": 7}},
        )
    reader = AttributionReader(store)
    assert reader.steps(run.info.run_id) == [7]
    assert set(reader.methods(run.info.run_id)) == {"saliency", "occlusion"}
    stored = reader.load(run.info.run_id, 7, "model", "occlusion")
    assert [r.sample_id for r in stored] == [r["id"] for r in recs]
    assert stored[0].target_tokens == [recs[0]["label"]]  # the evaluation labels were attributed
    # accuracy against the model's own predictions
    with torch.no_grad():
        preds = [model.config.id2label[int(model(**tok(r["text"], return_tensors="pt")).logits.argmax())]
                 for r in recs]
    want_acc = float(np.mean([p == r["label"] for p, r in zip(preds, recs)]))
    assert out.metrics["attrib/probe/accuracy"] == pytest.approx(want_acc)
    want = rationale_report(stored, recs, k=1)["occlusion"]["kendall_tau_norm"]
    assert out.metrics["attrib/occlusion/rationale_kendall_tau_norm"] == pytest.approx(want, abs=1e-3)  # float16 store
    logged = mlflow.get_run(run.info.run_id).data.metrics
    assert logged["attrib/probe/accuracy"] == pytest.approx(want_acc)
    assert "attrib/saliency/hit_at_1" in logged and "attrib/occlusion/rationale_hit_at_1" in logged
    probe = reader.probe(run.info.run_id)
    assert probe[0]["ground_truth"]  # rationale token positions went to the probe set


def test_causal_lm_evaluation(store, registered, tiny, samples):
    import mlflow

    from attrib_mlops import attribute
    from attrib_mlops.tracking import AttributionReader

    model, tok = tiny
    prompts, targets = samples
    info = _log(model, tok, "text-generation")
    df = pd.DataFrame({"prompt": prompts, "target": targets})
    with mlflow.start_run() as run:
        out = mlflow.models.evaluate(info.model_uri, df, model_type="text", evaluators=["attribution"],
                                     evaluator_config={"attribution": {"target_column": "target",
                                                                       "methods": ["saliency"]}})
    stored = AttributionReader(store).load(run.info.run_id, 0, "model", "saliency")
    direct = attribute(model, tok, prompts, targets, methods="saliency")
    for a, b in zip(stored, direct):
        assert a.source_tokens == b.source_tokens and a.is_decoder_only
        np.testing.assert_allclose(a.matrix, b.matrix, rtol=2e-3, atol=3e-4 * np.nanmax(np.abs(b.matrix)))
    assert "attrib/saliency/concentration_entropy" in out.metrics
    assert not any("probe/accuracy" in k for k in out.metrics)


def test_bad_config_and_non_transformers_models(registered):
    from attrib_mlops.errors import InputError
    from attrib_mlops.mlflow_plugin.evaluator import AttributionEvaluator

    ev = AttributionEvaluator()
    with pytest.raises(InputError, match=r"unknown attribution evaluator_config keys \['metods'\]"):
        ev.evaluate(model=None, model_type="text", dataset=None, run_id="r", evaluator_config={"metods": ["x"]})
    with pytest.raises(InputError, match="needs a model"):
        ev.evaluate(model=None, model_type="text", dataset=None, run_id="r", evaluator_config={"methods": ["x"]})
    # run as one of all registered evaluators (no config): a non-transformers model is skipped, not failed
    assert ev.evaluate(model=None, model_type="classifier", dataset=None, run_id="r", evaluator_config={}) is None
    assert AttributionEvaluator.can_evaluate(model_type="classifier", evaluator_config={})
    assert not AttributionEvaluator.can_evaluate(model_type="regressor", evaluator_config={})
