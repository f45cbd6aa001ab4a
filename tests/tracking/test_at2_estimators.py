"""AT2 estimators logged to and loaded from a real SQLite MLflow store."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from attrib_mlops.errors import InputError, ModelLoadError
from attrib_mlops.sources.at2.estimator import SourceEstimator
from attrib_mlops.tracking.estimators import (
    MODEL_TYPE,
    list_estimators,
    load_estimator,
    log_estimator,
    metric_name,
)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    d = tmp_path_factory.mktemp("at2-mlflow")
    uri = f"sqlite:///{d}/mlflow.db"
    return uri, MlflowClient(tracking_uri=uri), d


@pytest.fixture()
def store(db, request):
    """A fresh experiment (artifacts under the test's folder) and run in the module's SQLite store."""
    uri, client, d = db
    exp = client.create_experiment(request.node.name, artifact_location=str(d / request.node.name))
    run = client.create_run(exp)
    return uri, client, exp, run.info.run_id


def _estimator(seed: int = 0) -> SourceEstimator:
    w = np.random.default_rng(seed).normal(size=(2, 4)).astype(np.float32)
    w /= np.abs(w).sum()
    info = {"kind": "at2", "base_model": "tiny-gpt2", "n_examples": 12, "n_masks": 96, "seed": seed,
            "quality": {"lds": 0.71, "lds_attention": 0.62, "lds_surrogate": 0.83, "pearson": 0.95,
                        "top1_agreement": 1.0, "train_pearson": 0.96, "pearson_surrogate": float("nan"),
                        "topk_drop": {"1": 2.5, "3": 4.0}, "topk_drop_attention": {"1": 1.5}}}
    return SourceEstimator(w, {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, info)


def test_log_as_logged_model_linked_to_checkpoint_and_load_by_uri(store):
    uri, client, exp, run_id = store
    ckpt = client.create_logged_model(experiment_id=exp, name="checkpoint-400", source_run_id=run_id)
    est = _estimator()
    logged = log_estimator(est, run_id=run_id, tracking_uri=uri, step=400, checkpoint="out/checkpoint-400",
                           checkpoint_model_id=ckpt.model_id)
    assert logged.uri == f"models:/{logged.model_id}" and logged.name == "at2-estimator-400"

    lm = client.get_logged_model(logged.model_id)
    assert lm.model_type == MODEL_TYPE and str(lm.status).endswith("READY")
    assert lm.tags["attrib_mlops.checkpoint_model_id"] == ckpt.model_id
    assert lm.tags["attrib_mlops.base_model"] == "tiny-gpt2"
    assert lm.params["n_layers"] == "2" and lm.params["n_heads"] == "4" and lm.params["model_type"] == "gpt2"

    # held-out quality: run metrics linked to the estimator's model, at the step; NaN skipped
    hist = client.get_metric_history(run_id, metric_name("lds"))
    assert [(m.value, m.step) for m in hist] == [(0.71, 400)]
    linked = {m.key: (m.value, m.step) for m in client.get_logged_model(logged.model_id).metrics or []}
    assert linked[metric_name("lds")] == (0.71, 400) and linked[metric_name("lds_attention")] == (0.62, 400)
    assert client.get_metric_history(run_id, metric_name("pearson_surrogate")) == []
    assert [m.value for m in client.get_metric_history(run_id, metric_name("topk_drop_3"))] == [4.0]
    assert [m.value for m in client.get_metric_history(run_id, metric_name("topk_drop_1_attention"))] == [1.5]

    import mlflow

    mlflow.set_tracking_uri(uri)
    back = load_estimator(logged.uri)
    np.testing.assert_array_equal(back.weights, est.weights)
    assert back.fingerprint() == est.fingerprint()
    assert back.quality["lds_attention"] == 0.62
    assert back.info["uri"] == logged.uri
    # the public loader takes the URI too
    assert SourceEstimator.load(logged.uri).fingerprint() == est.fingerprint()


def test_run_artifact_fallback_and_listing(store):
    uri, client, exp, run_id = store
    import mlflow

    mlflow.set_tracking_uri(uri)
    a = log_estimator(_estimator(1), run_id=run_id, tracking_uri=uri, step=200)
    b = log_estimator(_estimator(2), run_id=run_id, tracking_uri=uri, step=100)
    plain = log_estimator(_estimator(3), run_id=run_id, tracking_uri=uri, name="plain", as_logged_model=False)
    assert plain.model_id is None and plain.uri == f"runs:/{run_id}/at2_estimators/plain"
    assert SourceEstimator.load(plain.uri).fingerprint() == _estimator(3).fingerprint()

    listed = list_estimators(exp, tracking_uri=uri)
    assert [e["step"] for e in listed] == [100, 200]  # LoggedModels only, oldest step first
    assert [e["uri"] for e in listed] == [b.uri, a.uri]
    assert list_estimators(exp, run_id="another-run", tracking_uri=uri) == []


def test_bad_input(store, tmp_path):
    uri, client, exp, run_id = store
    import mlflow

    mlflow.set_tracking_uri(uri)
    with pytest.raises(InputError, match="needs a SourceEstimator"):
        log_estimator(np.zeros((2, 2)), run_id=run_id, tracking_uri=uri)
    with pytest.raises(InputError, match="active MLflow run"):
        log_estimator(_estimator(), tracking_uri=uri)
    with pytest.raises(ModelLoadError, match="could not download"):
        load_estimator(f"runs:/{run_id}/at2_estimators/missing")


def test_attribute_sources_uses_a_logged_estimator_by_uri(store, tiny):
    """What a job does with an estimator URI from its spec."""
    from attrib_mlops import attribute_sources

    uri, client, exp, run_id = store
    import mlflow

    mlflow.set_tracking_uri(uri)
    est = _estimator(5)
    logged = log_estimator(est, run_id=run_id, tracking_uri=uri, step=10)
    model, tok = tiny
    [r] = attribute_sources(model, tok, "w1 w2 . w3 w4 .", " w5", "sentence", method="at2", estimator=logged.uri)
    [direct] = attribute_sources(model, tok, "w1 w2 . w3 w4 .", " w5", "sentence", method="at2", estimator=est)
    np.testing.assert_allclose(r.scores, direct.scores)
    assert r.info["estimator"]["uri"] == logged.uri and r.info["estimator"]["fingerprint"] == est.fingerprint()


def test_reader_lists_and_loads_estimators_on_its_own_server(store, tmp_path):
    """The dashboard's path: the reader resolves models:/ and runs:/ URIs on its own tracking URI (not the global)."""
    import mlflow

    from attrib_mlops.tracking import AttributionReader

    uri, client, exp, run_id = store
    client.set_tag(run_id, "mlflow.runName", "<b>named</b>")
    a = log_estimator(_estimator(5), run_id=run_id, tracking_uri=uri, step=20)
    b = log_estimator(_estimator(6), run_id=run_id, tracking_uri=uri, step=10)
    plain = log_estimator(_estimator(7), run_id=run_id, tracking_uri=uri, name="plain", as_logged_model=False)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/elsewhere.db")  # the process-wide URI points elsewhere
    try:
        reader = AttributionReader(uri)
        listed = reader.estimators(run_id)
        assert [(e["uri"], e["step"]) for e in listed] == [(b.uri, 10), (a.uri, 20)]  # oldest step first
        assert all(e["run_name"] == "<b>named</b>" and e["experiment_id"] == str(exp) for e in listed)
        assert {e["uri"] for e in reader.estimators()} >= {a.uri, b.uri}  # every experiment
        np.testing.assert_array_equal(reader.load_estimator(a.uri).weights, _estimator(5).weights)
        np.testing.assert_array_equal(reader.load_estimator(plain.uri).weights, _estimator(7).weights)
        with pytest.raises(ModelLoadError, match="could not download"):
            reader.load_estimator("models:/m-0000")
    finally:
        mlflow.set_tracking_uri(previous)
