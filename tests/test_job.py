"""Jobs: spec validation, the content-keyed cache, resuming after a crash, shared targets."""

from __future__ import annotations

import json

import numpy as np
import pytest

import attrib_mlops.api as api
from attrib_mlops.errors import InputError, SpecError
from attrib_mlops.job import (
    JobSpec,
    LocalFolderSink,
    ResultCache,
    ResultSink,
    load_job,
    load_local_results,
    model_fingerprint,
    parse_job,
    run_job,
)
from attrib_mlops.result import AttributionResult

PROMPTS = ["w1 w2 w3 w4", "w5 w6 w7", "w8 w9 w10 w11 w12 w13", "w2 w4 w6", "w3 w5"]
TARGETS = [" w5 w6", " w1 w2 w3", " w0", " w8", " w7 w9"]


@pytest.fixture
def samples_file(tmp_path):
    path = tmp_path / "samples.jsonl"
    rows = [{"id": f"s{i}", "prompt": p, "target": t, "ground_truth": [0]} for i, (p, t) in
            enumerate(zip(PROMPTS, TARGETS))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _spec(tmp_path, tiny_dir, samples_file, **over):
    d = {
        "name": "t",
        "models": [{"name": "tiny", "ref": str(tiny_dir)}],
        "methods": ["saliency"],
        "samples": {"source": str(samples_file)},
        "options": {"batch_size": 2},
        "output_dir": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
    }
    d.update(over)
    return d


def _same(a: list[AttributionResult], b: list[AttributionResult]) -> None:
    assert [r.sample_id for r in a] == [r.sample_id for r in b]
    for x, y in zip(a, b):
        assert x.source_tokens == y.source_tokens and x.target_tokens == y.target_tokens
        np.testing.assert_array_equal(x.matrix, y.matrix)
        for k in x.step_scores:
            np.testing.assert_array_equal(x.step_scores[k], y.step_scores[k])


# ------------------------------------------------------------------ validation
BASE = {"name": "j", "models": [{"name": "m", "ref": "x"}], "methods": ["saliency"], "samples": {"source": "s.jsonl"}}


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"models": [{"name": "m", "ref": "x", "pth": 1}]}, "unknown key 'models.0.pth'"),
        ({"methods": ["saliency", "salency"]}, "'methods.1': unknown method 'salency'; valid: "),
        ({"options": {"batch_sise": 4}}, "unknown key 'options.batch_sise' (valid keys: batch_size"),
        ({"options": {"batch_size": "many"}}, "'options.batch_size': Input should be a valid integer"),
        ({"models": "m"}, "'models': Input should be a valid list"),
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"samples": {"source": "s.jsonl", "limt": 3}}, "unknown key 'samples.limt'"),
        ({"targets": "model:other"}, "'targets': model 'other' is not in models"),
        ({"targets": "sometimes"}, "'targets': must be 'given', 'generate' or 'model:<name"),
        ({"engine": "native", "methods": ["lime"]}, "'methods.0': engine 'native' does not support 'lime'"),
        ({"models": [{"name": "a b", "ref": "x"}]}, "'models.0.name': model name 'a b' must start"),
    ],
)
def test_spec_errors_name_the_key(change, expected):
    with pytest.raises(SpecError) as err:
        parse_job({**BASE, **change})
    assert expected in str(err.value)


def test_spec_error_names_every_bad_key_and_defaults():
    with pytest.raises(SpecError) as err:
        parse_job({**BASE, "models": [{"name": "m", "ref": "x", "pth": 1}], "methods": ["salency"],
                   "options": {"nsteps": 3}})
    msg = str(err.value)
    assert "models.0.pth" in msg and "methods.0" in msg and "options.nsteps" in msg
    spec = parse_job(BASE)
    assert spec.output_dir.replace("\\", "/") == "attrib-results/j" and spec.cache_dir == ".attrib-cache"
    assert spec.to_dict()["options"] == {}


def test_load_job_file_errors(tmp_path):
    with pytest.raises(SpecError, match="job file .*nope.yaml' not found"):
        load_job(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [x\n")
    with pytest.raises(SpecError, match=r"bad.yaml' is not valid YAML: .*line"):
        load_job(bad)
    good = tmp_path / "j.json"
    good.write_text(json.dumps(BASE))
    assert load_job(good).name == "j"
    good.write_text(json.dumps({**BASE, "methods": ["nope"]}))
    with pytest.raises(SpecError, match=r"invalid job spec '.*j.json': 'methods.0': unknown method"):
        load_job(good)


# ------------------------------------------------------------------ fingerprint and cache
def test_model_fingerprint_tracks_weights(tiny):
    import copy

    import torch

    model = tiny[0]
    fp = model_fingerprint(model)
    assert fp == model_fingerprint(model)
    sampled = model_fingerprint(model, full_hash_limit=0)
    assert sampled != fp
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1.0
    assert model_fingerprint(other) != fp
    assert model_fingerprint(other, full_hash_limit=0) != sampled  # element 0 is always in the sample


def test_cache_roundtrip_keeps_nan_as_null(tmp_path):
    cache = ResultCache(tmp_path)
    r = AttributionResult(np.array([[0.5, 0.1], [0.2, np.nan]]), ["a", "b"], ["b", "c"], "saliency", "native",
                          n_prompt=1, sample_id="x")
    key = "ab" * 32
    assert cache.get(key) is None
    path = cache.put(key, r)
    assert json.loads(path.read_text())["matrix"][1][1] is None
    got = cache.get(key)
    np.testing.assert_array_equal(got.matrix, r.matrix)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left
    path.write_text("{broken")
    assert cache.get(key) is None  # a corrupt entry is a miss


# ------------------------------------------------------------------ running
def test_second_run_computes_nothing_and_gives_identical_results(tmp_path, tiny_dir, samples_file):
    spec = _spec(tmp_path, tiny_dir, samples_file, methods=["saliency", "attention"])
    first = run_job(spec, progress=False)
    assert first.status == "FINISHED" and first.computed == 10 and first.cached == 0
    before = load_local_results(first.output_dir)
    second = run_job(spec, progress=False)
    assert second.computed == 0 and second.cached == 10
    assert second.counts[("tiny", "attention")] == {"computed": 0, "cached": 5}
    after = load_local_results(second.output_dir)
    assert list(after) == [("tiny", "saliency"), ("tiny", "attention")]
    for key in before:
        _same(before[key], after[key])
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "FINISHED" and manifest["models"][0]["fingerprint"]
    assert [s["id"] for s in manifest["probe_set"]["samples"]] == [f"s{i}" for i in range(5)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs"][0]["metrics"]["hit_at_1"] is not None
    assert len((out / "results" / "tiny" / "saliency.jsonl").read_text().splitlines()) == 5


def test_interrupted_run_resumes_with_only_missing_samples(tmp_path, tiny_dir, samples_file, monkeypatch):
    reference = run_job(_spec(tmp_path / "ref", tiny_dir, samples_file), progress=False)
    expected = load_local_results(reference.output_dir)[("tiny", "saliency")]

    spec = _spec(tmp_path, tiny_dir, samples_file)  # batch_size 2: batches of 2, 2, 1
    real = api.attribute
    calls = []

    def flaky(*args, **kwargs):
        calls.append(len(args[2]))
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "attribute", flaky)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_job(spec, progress=False)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["status"] == "FAILED"
    monkeypatch.setattr(api, "attribute", real)

    again = run_job(spec, progress=False)
    assert again.counts[("tiny", "saliency")] == {"computed": 3, "cached": 2}
    _same(load_local_results(again.output_dir)[("tiny", "saliency")], expected)


def test_model_targets_are_shared_by_all_models(tmp_path, tiny_dir, samples_file):
    from attrib_mlops.demo.tiny import build_tiny_model, save_tiny

    other = save_tiny(*build_tiny_model([f"w{i}" for i in range(40)], n_layer=1, n_embd=16, n_head=2,
                                        n_positions=64, seed=5), tmp_path / "other")
    spec = _spec(
        tmp_path, tiny_dir, samples_file,
        models=[{"name": "a", "ref": str(other)}, {"name": "b", "ref": str(tiny_dir)}],
        targets="model:b",
        samples={"source": str(samples_file), "limit": 3, "target_field": None},
        options={"batch_size": 4, "max_new_tokens": 2},
    )
    outcome = run_job(spec, progress=False)
    assert [p.model for p in outcome.pairs] == ["a", "b"]  # reported in spec order
    res = load_local_results(outcome.output_dir)
    a, b = res[("a", "saliency")], res[("b", "saliency")]
    assert [r.target_tokens for r in a] == [r.target_tokens for r in b]
    assert [r.target for r in a] != TARGETS[:3]
    assert all(r.info["target_source"] == "generated:b" for r in a + b)
    assert any(not np.allclose(x.matrix, y.matrix, equal_nan=True) for x, y in zip(a, b))
    assert run_job(spec, progress=False).computed == 0  # generated continuations are cached too


def test_given_targets_missing_is_a_clear_error(tmp_path, tiny_dir, samples_file):
    spec = _spec(tmp_path, tiny_dir, samples_file, samples={"source": str(samples_file), "target_field": None})
    with pytest.raises(InputError, match="have no target .*targets: generate"):
        run_job(spec, progress=False)


def test_custom_sink_receives_pairs(tmp_path, tiny_dir, samples_file):
    class Recorder:
        def __init__(self):
            self.calls = []

        def begin(self, job, probe_set):
            self.calls.append(("begin", job.name, len(probe_set)))

        def write(self, model_name, method, results):
            self.calls.append(("write", model_name, method, [r.sample_id for r in results]))

        def end(self, status):
            self.calls.append(("end", status))

    rec = Recorder()
    assert isinstance(rec, ResultSink) and isinstance(LocalFolderSink(tmp_path), ResultSink)
    spec = JobSpec.model_validate(_spec(tmp_path, tiny_dir, samples_file, samples={"source": str(samples_file),
                                                                                    "limit": 2}))
    run_job(spec, sinks=[rec], progress=False)
    assert rec.calls == [("begin", "t", 2), ("write", "tiny", "saliency", ["s0", "s1"]), ("end", "FINISHED")]
    assert not (tmp_path / "out").exists()  # explicit sinks replace the default folder sink
