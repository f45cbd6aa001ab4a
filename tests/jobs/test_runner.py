"""jobs.runner: resuming after a crash, the cache, shared targets, sinks."""

from __future__ import annotations

import json

import numpy as np
import pytest

import attrib_mlops.api as api
from attrib_mlops.errors import InputError
from attrib_mlops.jobs import JobSpec, LocalFolderSink, ResultSink, load_local_results, run_job
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


def test_events_executor_seam_and_no_cache(tmp_path, tiny_dir, samples_file):
    from attrib_mlops.jobs import LocalExecutor

    class Recording(LocalExecutor):
        def __init__(self):
            super().__init__()
            self.units = []

        def map(self, units):
            for unit, out in super().map(units):
                self.units.append((unit.model, unit.method, unit.indices))
                yield unit, out

    events = []
    ex = Recording()
    spec = _spec(tmp_path, tiny_dir, samples_file, methods=["saliency", "attention"], cache_dir=None)
    out = run_job(spec, progress=False, executor=ex, on_event=events.append)
    assert out.computed == 10 and not (tmp_path / "cache").exists()  # no cache: nothing written there
    assert ex.units == [("tiny", m, b) for m in ("saliency", "attention") for b in ([0, 1], [2, 3], [4])]
    progress = [e.progress for e in events]
    assert progress == sorted(progress) and events[-1].status == "finished" and events[-1].progress == 1.0
    assert {e.method for e in events if e.method} == {"saliency", "attention"}
    assert "model_fingerprint" not in load_local_results(out.output_dir)[("tiny", "saliency")][0].info
    assert run_job(spec, progress=False).computed == 10  # still no cache: computed again

    failed = []
    with pytest.raises(InputError):
        run_job(_spec(tmp_path, tiny_dir, samples_file, samples={"source": str(samples_file), "target_field": None}),
                progress=False, on_event=failed.append)
    assert failed == []  # a spec problem found before the job starts: no event
    bad = _spec(tmp_path, tiny_dir, samples_file, models=[{"name": "m", "ref": str(tmp_path / "missing")}])
    with pytest.raises(Exception):
        run_job(bad, progress=False, on_event=failed.append)
    assert failed[-1].status == "failed" and failed[-1].error


def test_step_sink_commits_each_model_with_all_methods(tmp_path, tiny_dir, samples_file):
    from attrib_mlops.jobs import StepSink
    from attrib_mlops.tracking import AttributionReader

    uri = f"sqlite:///{tmp_path}/steps.db"
    sink = StepSink(tracking_uri=uri, experiment="steps", run_name="two-steps", steps={"a": 5, "b": 7},
                    spool_dir=tmp_path / "spool")
    spec = _spec(tmp_path, tiny_dir, samples_file, methods=["saliency", "attention"],
                 models=[{"name": "a", "ref": str(tiny_dir)}, {"name": "b", "ref": str(tiny_dir)}])
    run_job(spec, sinks=[sink], progress=False)
    reader = AttributionReader(uri)
    assert reader.steps(sink.run_id) == [5, 7] and sink.logged_steps == [5, 7]
    info = reader.run_info(sink.run_id)
    assert info.status == "FINISHED" and info.run_name == "two-steps"
    assert set(info.methods) == {"saliency", "attention"}
    assert [r.sample_id for r in reader.load(sink.run_id, 7, model="b", method="attention")] == \
        [f"s{i}" for i in range(5)]
