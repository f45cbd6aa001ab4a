"""Writer and reader round trip through a real MLflow store (columnar files, manifest, spool, metrics)."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket

import numpy as np
import pyarrow.parquet as pq
import pytest

from attrib_mlops.analysis import drift, summarize
from attrib_mlops.result import AttributionResult, future_mask
from attrib_mlops.tracking import (
    AttributionReader,
    AttributionWriter,
    read_results,
    read_sample,
    results_to_table,
    table_to_results,
    write_results,
)
from attrib_mlops.tracking import layout as L

# float16 storage tolerance. Each matrix is divided by its largest finite |value|
# before the float16 cast, so every stored value lies in [-1, 1], where float16
# rounds to within half an ulp: 2**-11 / 2 = 2**-12 ~ 2.4e-4 (ulp of [0.5, 1) is
# 2**-11; smaller values have smaller ulps, subnormals an absolute ulp of 6e-8).
# Rescaling multiplies the error by max|A|, so |a - b| <= 2.5e-4 * max|a|; we
# assert 1e-3 * max|a| to leave room for float32 rounding of the scale itself.
REL_TOL = 1e-3


# ------------------------------------------------------------------ helpers
def make_result(sid, method="saliency", seed=0, ns=9, nt=3, scale=1.0, tokens=None) -> AttributionResult:
    rng = np.random.default_rng(seed)
    m = (rng.random((ns, nt)) * scale).astype(np.float32)
    m[future_mask(ns, nt, ns - nt)] = np.nan
    toks = tokens or [f"w{k}" for k in range(ns)]
    return AttributionResult(
        m, toks, toks[ns - nt:], method, "native",
        step_scores={"probability": rng.random(nt), "entropy": rng.random(nt)},
        info={"model": "tiny", "seed": seed}, n_prompt=ns - nt,
        prompt=" ".join(toks[: ns - nt]), target=" ".join(toks[ns - nt:]), sample_id=sid,
    )


def make_step(step, n=5, methods=("saliency", "attention")) -> list[AttributionResult]:
    return [make_result(f"s{i}", m, seed=1000 * step + 10 * i + j) for j, m in enumerate(methods) for i in range(n)]


def assert_close(a: AttributionResult, b: AttributionResult) -> None:
    assert a.sample_id == b.sample_id and a.method == b.method and a.engine == b.engine
    assert a.source_tokens == b.source_tokens and a.target_tokens == b.target_tokens
    assert a.n_prompt == b.n_prompt and a.prompt == b.prompt and a.target == b.target
    assert np.array_equal(np.isnan(a.matrix), np.isnan(b.matrix))
    tol = REL_TOL * np.nanmax(np.abs(a.matrix))
    assert np.nanmax(np.abs(a.matrix - b.matrix)) <= tol
    assert set(a.step_scores) == set(b.step_scores)
    for k in a.step_scores:
        np.testing.assert_array_equal(a.step_scores[k], b.step_scores[k])  # float32, exact


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mlflow.tracking import MlflowClient

    d = tmp_path_factory.mktemp("mlflow")
    client = MlflowClient(tracking_uri=f"sqlite:///{d}/mlflow.db")
    exp = client.create_experiment("attribution-tests", artifact_location=str(d / "artifacts"))
    return client, exp, d


@pytest.fixture
def run(store, tmp_path):
    client, exp, _ = store
    r = client.create_run(exp)
    return client, r.info.run_id, tmp_path / "spool"


def artifact_dir(client, run_id):
    return client.get_run(run_id).info.artifact_uri


def list_all(client, run_id, path=""):
    out = []
    for a in client.list_artifacts(run_id, path or None):
        out += list_all(client, run_id, a.path) if a.is_dir else [a.path]
    return out


# ------------------------------------------------------------------ columnar
def test_columnar_roundtrip_float16_within_tolerance(tmp_path):
    results = [make_result(f"s{i}", seed=i, scale=10.0 ** (i - 5)) for i in range(11)]  # 1e-5 .. 1e5
    p = write_results(results, tmp_path / "x.parquet")
    back = read_results(p)
    assert [r.sample_id for r in back] == [f"s{i}" for i in range(11)]
    for a, b in zip(results, back):
        assert_close(a, b)
        assert b.info == a.info


def test_columnar_float32_column_is_exact(tmp_path):
    results = [make_result(f"s{i}", seed=i) for i in range(3)]
    table = results_to_table(results, include_f32=True)
    assert "matrix_f32" in table.column_names
    for a, b in zip(results, table_to_results(table)):
        np.testing.assert_array_equal(a.matrix, b.matrix)  # NaN == NaN in assert_array_equal


def test_read_sample_decodes_one_row_group(tmp_path, monkeypatch):
    results = [make_result(f"s{i}", seed=i) for i in range(100)]
    p = write_results(results, tmp_path / "x.parquet", row_group_size=32)
    assert pq.ParquetFile(p).num_row_groups == 4
    calls = []
    orig = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group",
                        lambda self, i, *a, **k: calls.append(i) or orig(self, i, *a, **k))
    monkeypatch.setattr(pq.ParquetFile, "read", lambda *a, **k: pytest.fail("read whole file"))
    r = read_sample(p, "s77")
    assert calls == [2]
    assert_close(results[77], r)


def test_parquet_readable_with_pyarrow_and_numpy_only(tmp_path):
    """The recipe of docs/storage.md, without attrib-mlops' reader."""
    a = make_result("s1", seed=3)
    p = write_results([make_result("s0"), a], tmp_path / "x.parquet")
    pf = pq.ParquetFile(p)
    group, row = json.loads(pf.schema_arrow.metadata[b"attrib_mlops.index"])["s1"]
    rec = pf.read_row_group(group).slice(row, 1).to_pylist()[0]
    m = np.array(rec["matrix"], dtype=np.float32).reshape(rec["n_source"], rec["n_target"]) * rec["matrix_scale"]
    assert np.array_equal(np.isnan(m), np.isnan(a.matrix))
    assert np.nanmax(np.abs(m - a.matrix)) <= REL_TOL * np.nanmax(np.abs(a.matrix))
    assert rec["source_tokens"] == a.source_tokens and rec["score_probability"] == pytest.approx(
        a.step_scores["probability"].tolist())


# ------------------------------------------------------------------ writer + reader
def test_roundtrip_through_mlflow(run):
    client, run_id, spool = run
    w = AttributionWriter(client, run_id, spool_dir=spool)
    probe = [{"id": f"s{i}", "prompt": f"p{i}", "target": "t", "ground_truth": [1, 2]} for i in range(5)]
    w.log_probe_set(probe)
    written, summaries = {}, {}
    for step in (0, 10, 20):
        written[step] = make_step(step)
        summaries[step] = w.log_step(step, written[step])
        assert summaries[step].logged and summaries[step].spool_path is None
    assert w.pending() == []

    reader = AttributionReader(client=client)
    assert reader.steps(run_id) == [0, 10, 20]
    man = reader.manifest(run_id)
    assert man["schema_version"] == L.SCHEMA_VERSION
    assert [s["models"] for s in man["steps"]] == [{"model": ["saliency", "attention"]}] * 3
    assert [s["id"] for s in man["probe"]["samples"]] == [p["id"] for p in probe]
    assert man["probe"]["tokens"]["model"]["s0"]["source_tokens"] == written[0][0].source_tokens
    assert set(man["methods"]) == {"saliency", "attention"}

    for step in (0, 10, 20):
        for method in ("saliency", "attention"):
            orig = [r for r in written[step] if r.method == method]
            back = reader.load(run_id, step, "model", method)
            assert len(back) == len(orig)
            for a, b in zip(orig, back):
                assert_close(a, b)
            row = reader.load_sample(run_id, step, "model", method, "s3")
            assert_close(orig[3], row)
            assert_close(row, back[3])
        assert [r.sample_id for r in reader.load(run_id, step, method="saliency", sample_ids=["s4", "s1"])] == [
            "s4", "s1"]

    # the summary equals metrics recomputed from the float32 inputs
    doc = reader.summary(run_id, 20)
    sal = doc["models"]["model"]["methods"]["saliency"]
    orig20 = [r for r in written[20] if r.method == "saliency"]
    orig10 = [r for r in written[10] if r.method == "saliency"]
    orig0 = [r for r in written[0] if r.method == "saliency"]
    expect = {k: np.mean([summarize(r, k=3, true_positions=[1, 2])[k] for r in orig20])
              for k in ("concentration_entropy", "topk_mass", "mean_probability", "hit_at_1", "mean_rank")}
    for k, v in expect.items():
        assert sal["metrics"][k] == pytest.approx(v, rel=1e-9)
        assert summaries[20].metrics["saliency"][k] == pytest.approx(v, rel=1e-9)
    prev = np.mean([drift(a, b)["spearman"] for a, b in zip(orig10, orig20)])
    first = np.mean([drift(a, b)["js"] for a, b in zip(orig0, orig20)])
    assert sal["metrics"]["drift_prev_spearman"] == pytest.approx(prev, rel=1e-9)
    assert sal["metrics"]["drift_first_js"] == pytest.approx(first, rel=1e-9)
    assert sal["drift"] == {"prev_step": 10, "prev_n_samples": 5, "first_step": 0, "first_n_samples": 5}
    assert len(sal["importance"]["s0"]["source"]) == 9
    assert "saliency_vs_attention" in doc["models"]["model"]["agreement"]

    # metrics: right steps, valid names, finite
    hist = reader.metric_history(run_id, "attrib/saliency/topk_mass")
    assert [p.step for p in hist] == [0, 10, 20]
    assert [p.step for p in reader.metric_history(run_id, "attrib/attention/drift_prev_js")] == [10, 20]
    assert [p.step for p in reader.metric_history(run_id, "attrib/saliency/drift_first_spearman")] == [10, 20]
    assert reader.metric_history(run_id, "attrib/saliency/drift_prev_spearman")[-1].value == pytest.approx(prev)
    keys = reader.metric_keys(run_id)
    assert "attrib/saliency/hit_at_3" in keys and "attrib/agreement/mean" in keys
    assert not any("kendall" in k for k in keys)
    assert all(re.fullmatch(r"[A-Za-z0-9_\-./: ]+", k) for k in keys)

    # listing from tags only
    info = next(r for r in reader.list_runs() if r.run_id == run_id)
    assert (info.n_steps, info.last_step, info.n_probe, info.schema_version) == (3, 20, 5, 1)
    assert info.methods == ("attention", "saliency") and info.models == ("model",)
    assert info.status == "RUNNING"

    # the probe is an MLflow dataset input of the run
    inputs = client.get_run(run_id).inputs.dataset_inputs
    assert [d.dataset.name for d in inputs] == ["attrib-probe"]

    html_path = reader.html_path(run_id, 10)
    assert html_path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert reader.problems(run_id, deep=True) == []


def test_manifest_is_written_after_the_step_files(run):
    client, run_id, spool = run
    calls = []

    class Spy:
        def __getattr__(self, name):
            attr = getattr(client, name)
            if name in ("log_artifacts", "log_artifact", "log_batch"):
                def wrapped(*a, **k):
                    calls.append((name, a[1:3] if name != "log_batch" else bool(k.get("metrics"))))
                    return attr(*a, **k)
                return wrapped
            return attr

    w = AttributionWriter(Spy(), run_id, spool_dir=spool)
    for step in (5, 6):
        calls.clear()
        w.log_step(step, make_step(step, n=3, methods=("saliency",)))
        names = [c[0] for c in calls]
        upload = names.index("log_artifacts")
        manifest = max(i for i, c in enumerate(calls) if c[0] == "log_artifact" and c[1][1] == "attribution")
        metrics = max(i for i, c in enumerate(calls) if c == ("log_batch", True))
        assert upload < manifest < metrics, calls
        # after log_step: every file the manifest lists exists in the artifact store
        present = set(list_all(client, run_id))
        man = AttributionReader(client=client).manifest(run_id)
        for s in man["steps"]:
            for rel in [*(p for d in s["files"].values() for p in d.values()), s["summary"], s["view"]]:
                assert f"attribution/{rel}" in present


def test_model_names_are_sanitized_and_found_by_original_name(run):
    client, run_id, spool = run
    w = AttributionWriter(client, run_id, spool_dir=spool)
    w.log_step(1, make_step(1, n=2, methods=("saliency",)))
    s = w.log_step(1, make_step(1, n=2, methods=("saliency",)), model="org/Model v2")
    assert s.logged
    assert "attrib/org_Model v2/saliency/topk_mass" in s.mlflow_metrics
    reader = AttributionReader(client=client)
    entry = reader.manifest(run_id)["steps"][0]
    assert entry["revision"] == 2 and set(entry["models"]) == {"model", "org/Model v2"}
    path = entry["files"]["org/Model v2"]["saliency"]
    assert path == f"steps/0000000001/{L.safe_name('org/Model v2')}/saliency.parquet"
    assert re.fullmatch(r"steps/0000000001/org_model_v2-[0-9a-f]{8}/saliency\.parquet", path)
    assert len(reader.load(run_id, 1, "org/Model v2", "saliency")) == 2
    assert set(reader.summary(run_id, 1)["models"]) == {"model", "org/Model v2"}  # merged summary
    html = reader.html_path(run_id, 1).read_text(encoding="utf-8")
    assert "org/Model v2" in html and ">model<" in html
    assert reader.metric_history(run_id, "attrib/org_Model v2/saliency/topk_mass")[0].step == 1


def test_same_step_twice_is_not_duplicated(run, caplog):
    client, run_id, spool = run
    w = AttributionWriter(client, run_id, spool_dir=spool)
    w.log_step(3, make_step(3, n=2, methods=("saliency",)))
    with caplog.at_level(logging.WARNING):
        s = w.log_step(3, make_step(3, n=2, methods=("saliency",)))
    assert s.skipped_methods == ["saliency"] and "already has saliency logged" in caplog.text
    assert len(client.get_metric_history(run_id, "attrib/saliency/topk_mass")) == 1


def test_model_id_links_metrics_to_a_logged_model(run, caplog):
    client, run_id, spool = run
    exp = client.get_run(run_id).info.experiment_id
    lm = client.create_logged_model(exp, name="checkpoint-1")
    w = AttributionWriter(client, run_id, spool_dir=spool)
    w.log_step(1, make_step(1, n=2, methods=("saliency",)), model_id=lm.model_id)
    keys = {m.key for m in client.get_logged_model(lm.model_id).metrics}
    assert "attrib/saliency/topk_mass" in keys
    with caplog.at_level(logging.WARNING):  # an unknown id is dropped with a warning, metrics still logged
        s = w.log_step(2, make_step(2, n=2, methods=("saliency",)), model_id="m-does-not-exist")
    assert s.logged and "not a LoggedModel" in caplog.text
    assert [m.step for m in client.get_metric_history(run_id, "attrib/saliency/topk_mass")] == [1, 2]


def test_drift_after_restart_reads_the_previous_step_from_mlflow(run):
    client, run_id, spool = run
    first = make_step(1, n=3, methods=("saliency",))
    AttributionWriter(client, run_id, spool_dir=spool).log_step(1, first)
    second = make_step(2, n=3, methods=("saliency",))
    s = AttributionWriter(client, run_id, spool_dir=spool).log_step(2, second)  # new writer: empty cache
    expect = np.mean([drift(a, b)["spearman"] for a, b in zip(first, second)])
    # the reference is read back from float16: rank correlations are robust to that
    assert s.metrics["saliency"]["drift_prev_spearman"] == pytest.approx(expect, abs=1e-6)


# ------------------------------------------------------------------ spool
def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_outage_keeps_steps_in_spool_then_flush_commits_them(run, monkeypatch, caplog):
    from mlflow.tracking import MlflowClient

    client, run_id, spool = run
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    down = MlflowClient(tracking_uri=f"http://127.0.0.1:{_unused_port()}")
    w = AttributionWriter(down, run_id, spool_dir=spool)
    steps = {s: make_step(s, n=3) for s in (1, 2)}
    with caplog.at_level(logging.WARNING):
        for s, rs in steps.items():
            summary = w.log_step(s, rs)  # does not raise
            assert not summary.logged and summary.spool_path.is_dir()
            assert f"tracking server unreachable; step {s} kept in {summary.spool_path}, will retry" in caplog.text
    assert summary.metrics["saliency"]["drift_prev_js"] >= 0  # drift works offline (cache)
    pending = w.pending()
    assert [p.name for p in pending] == ["probe.json", "001-model", "001-model"]
    assert [p.parent.name for p in pending[1:]] == ["0000000001", "0000000002"]
    assert client.list_artifacts(run_id) == []

    # later, any writer with the same spool and run id commits them in order
    w2 = AttributionWriter(client, run_id, spool_dir=spool)
    assert w2.flush() is True
    assert w2.pending() == [] and not (spool / run_id).exists()
    reader = AttributionReader(client=client)
    assert reader.steps(run_id) == [1, 2]
    for s, rs in steps.items():
        for a, b in zip([r for r in rs if r.method == "saliency"], reader.load(run_id, s)):
            assert_close(a, b)
    hist = reader.metric_history(run_id, "attrib/saliency/topk_mass")
    assert [p.step for p in hist] == [1, 2]
    assert w2.flush() is True  # nothing left, nothing duplicated
    assert len(reader.metric_history(run_id, "attrib/saliency/topk_mass")) == 2


def test_strict_writer_raises_but_keeps_the_step(run, monkeypatch):
    from mlflow.tracking import MlflowClient

    from attrib_mlops.tracking import TrackingUnavailableError

    client, run_id, spool = run
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    w = AttributionWriter(MlflowClient(tracking_uri=f"http://127.0.0.1:{_unused_port()}"), run_id,
                          spool_dir=spool, strict=True)
    with pytest.raises(TrackingUnavailableError, match="unreachable; step 4 kept in"):
        w.log_step(4, make_step(4, n=2, methods=("saliency",)))
    w.client = client
    assert w.flush() and AttributionReader(client=client).steps(run_id) == [4]


def test_retry_after_failure_between_manifest_and_metrics_logs_metrics_once(run):
    from mlflow.exceptions import MlflowException

    client, run_id, spool = run

    class Flaky:
        fail = True

        def __getattr__(self, name):
            return getattr(client, name)

        def log_batch(self, run_id, metrics=(), **kw):
            if metrics and Flaky.fail:
                Flaky.fail = False
                raise MlflowException("API request failed: Response code 503")
            return client.log_batch(run_id, metrics=metrics, **kw)

    w = AttributionWriter(Flaky(), run_id, spool_dir=spool)
    s = w.log_step(7, make_step(7, n=2, methods=("saliency",)))
    assert not s.logged and [p.parent.name for p in w.pending()] == ["0000000007"]  # probe went through
    reader = AttributionReader(client=client)
    assert reader.steps(run_id) == [7]  # artifacts and manifest went through
    assert client.get_metric_history(run_id, "attrib/saliency/topk_mass") == []
    assert w.flush()
    assert w.flush()
    assert [m.step for m in client.get_metric_history(run_id, "attrib/saliency/topk_mass")] == [7]
    assert len(list_all(client, run_id, "attribution/steps")) == 3  # parquet, summary, view: uploaded once


# ------------------------------------------------------------------ real engine
@pytest.mark.slow
def test_real_engine_results_roundtrip(run, tiny, samples):
    from attrib_mlops import attribute

    client, run_id, spool = run
    model, tokenizer = tiny
    prompts, targets = samples
    ids = [f"p{i}" for i in range(len(prompts))]
    results = attribute(model, tokenizer, prompts, targets, methods=["saliency"], sample_ids=ids)
    w = AttributionWriter(client, run_id, spool_dir=spool, keep_float32=True)
    w.log_probe_set([{"id": i, "prompt": p, "target": t} for i, p, t in zip(ids, prompts, targets)])
    s = w.log_step(100, results)
    assert s.logged
    assert math.isfinite(s.mlflow_metrics["attrib/saliency/concentration_entropy"])
    back = AttributionReader(client=client).load(run_id, 100, method="saliency")
    for a, b in zip(results, back):
        np.testing.assert_array_equal(a.matrix, b.matrix)  # keep_float32: exact
        assert a.source_tokens == b.source_tokens and a.info.keys() == b.info.keys()
    half = read_results(os.path.join(artifact_dir(client, run_id), "attribution",
                                     "steps/0000000100/model/saliency.parquet"), use_f32=False)
    for a, b in zip(results, half):
        assert_close(a, b)
