"""tracking.folder: the local results folder, written atomically and read back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attrib_mlops.errors import InputError
from attrib_mlops.jobs import JobSpec
from attrib_mlops.result import AttributionResult
from attrib_mlops.samples import ProbeSet
from attrib_mlops.tracking.folder import LocalFolderSink, atomic_write_text, load_local_results, read_manifest


def test_folder_round_trip_and_status(tmp_path):
    probe = ProbeSet.from_stored([{"id": "s0", "prompt": "a", "target": " b", "ground_truth": [0]}])
    job = JobSpec.model_validate({"name": "f", "models": [{"name": "m", "ref": "x"}], "methods": ["saliency"],
                                  "samples": {"source": "inline"}})
    r = AttributionResult(np.array([[0.5], [np.nan]]), ["a", "b"], ["b"], "saliency", "native", n_prompt=1,
                          sample_id="s0", info={"model_fingerprint": "fp"})
    sink = LocalFolderSink(tmp_path / "out", k=1)
    sink.begin(job, probe)
    assert read_manifest(tmp_path / "out")["status"] == "RUNNING"
    sink.write("m", "saliency", [r])
    sink.end("FINISHED")
    manifest = read_manifest(tmp_path / "out")
    assert manifest["status"] == "FINISHED" and manifest["models"][0]["fingerprint"] == "fp"
    back = load_local_results(tmp_path / "out")[("m", "saliency")][0]
    assert back.sample_id == "s0" and np.isnan(back.matrix[1, 0]) and back.matrix[0, 0] == 0.5
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["pairs"][0]["metrics"]["hit_at_1"] == 1.0 and summary["k"] == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json", "results", "summary.json"]
    with pytest.raises(InputError, match="no manifest.json"):
        load_local_results(tmp_path)


def test_atomic_write_replaces_whole_files(tmp_path):
    p = atomic_write_text(tmp_path / "d" / "x.txt", "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two" and [q.name for q in p.parent.iterdir()] == ["x.txt"]
