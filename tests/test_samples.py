"""ProbeSet loading: records, JSON/JSONL/CSV files, datasets, built-in demo sources."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from pydantic import ValidationError

from attrib_mlops.errors import InputError
from attrib_mlops.samples import ProbeSet, Sample, SamplesSpec

ROWS = [
    {"id": "a", "prompt": "w1 w2 w3", "target": " w4", "ground_truth": [1], "task": "t"},
    {"id": "b", "prompt": "w5 w6", "target": " w7", "ground_truth": [0, 1], "task": "t"},
    {"id": "c", "prompt": "w8", "target": " w9", "ground_truth": None, "task": "u"},
]


def _write_all(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(ROWS))
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    with (tmp_path / "s.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "prompt", "target", "ground_truth", "task"])
        w.writeheader()
        gts = ["[1]", "0 1", ""]  # JSON list string, space-separated, empty
        for r, gt in zip(ROWS, gts):
            w.writerow({**r, "ground_truth": gt})
    return [tmp_path / f"s.{ext}" for ext in ("json", "jsonl", "csv")]


def test_from_records_basics_and_generated_ids():
    ps = ProbeSet.from_records([{"prompt": "a b", "target": " c", "ground_truth": "2", "x": np.int64(3)},
                                {"prompt": "d e"}])
    assert ps.ids == ["sample-0", "sample-1"]
    assert ps[0] == Sample("sample-0", "a b", " c", [2], {"x": 3})
    assert ps[1].target is None and ps[1].ground_truth is None
    json.dumps(ps.to_records())  # JSON-friendly
    assert len(ps.fingerprint) == 64 and ps.source == "records"


def test_json_jsonl_csv_load_the_same_samples(tmp_path):
    sets = [ProbeSet.from_file(p) for p in _write_all(tmp_path)]
    for ps in sets:
        assert ps.ids == ["a", "b", "c"]
        assert [s.ground_truth for s in ps] == [[1], [0, 1], None]
        assert [s.target for s in ps] == [" w4", " w7", " w9"]
        assert ps[0].meta == {"task": "t"}
    # the fingerprint is a hash of the normalized content: same content, same fingerprint
    assert len({ps.fingerprint for ps in sets}) == 1
    assert ProbeSet.from_file(tmp_path / "s.json", limit=2).fingerprint != sets[0].fingerprint


def test_missing_prompt_field_names_field_and_columns(tmp_path):
    path = _write_all(tmp_path)[0]
    with pytest.raises(InputError, match=r"'text' not found; available columns: id, prompt, target, ground_truth"):
        ProbeSet.from_file(path, prompt_field="text")


def test_duplicate_ids_and_bad_ground_truth_are_errors(tmp_path):
    with pytest.raises(InputError, match="duplicate sample ids 'x'"):
        ProbeSet.from_records([{"id": "x", "prompt": "a"}, {"id": "x", "prompt": "b"}])
    with pytest.raises(InputError, match="row 0: ground truth 'one two'"):
        ProbeSet.from_records([{"prompt": "a", "ground_truth": "one two"}])
    with pytest.raises(InputError, match="non-empty string"):
        ProbeSet.from_records([{"prompt": "  "}])


def test_file_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        ProbeSet.from_file(tmp_path / "nope.jsonl")
    (tmp_path / "s.txt").write_text("x")
    with pytest.raises(InputError, match="unsupported type .txt"):
        ProbeSet.from_file(tmp_path / "s.txt")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{oops\n')
    with pytest.raises(InputError, match="line 2"):
        ProbeSet.from_file(tmp_path / "bad.jsonl")


def test_dataset_seeded_selection_is_deterministic_and_leaves_global_rng_alone():
    import datasets

    ds = datasets.Dataset.from_dict({"prompt": [f"w{i} w{i + 1}" for i in range(20)], "label": list(range(20))})
    state = np.random.get_state()[1].copy()
    a = ProbeSet.from_dataset(ds, limit=5, seed=7)
    b = ProbeSet.from_dataset(ds, limit=5, seed=7)
    c = ProbeSet.from_dataset(ds, limit=5, seed=8)
    first = ProbeSet.from_dataset(ds, limit=5)
    assert (np.random.get_state()[1] == state).all()
    assert a.ids == b.ids and a.fingerprint == b.fingerprint
    assert a.ids != c.ids and a.fingerprint != c.fingerprint
    assert first.ids == [f"sample-{i}" for i in range(5)]  # no id column: stable ids from the row index
    assert a.ids == sorted(a.ids, key=lambda s: int(s.split("-")[1]))  # source order kept
    assert [s.meta["label"] for s in a] == [int(i.split("-")[1]) for i in a.ids]
    assert all(s.target is None for s in a)  # no target column: allowed


def test_demo_sources_from_spec():
    ps = ProbeSet.from_spec({"source": "demo:keyvalue", "n": 4, "seed": 3})
    assert len(ps) == 4 and ps.ids[0] == "kv-3-0"
    assert all(s.ground_truth and s.prompt.split()[s.ground_truth[0]] == s.target.strip() for s in ps)
    assert ProbeSet.from_spec({"source": "demo:keyvalue", "n": 4, "seed": 3}).fingerprint == ps.fingerprint
    sc = ProbeSet.from_spec(SamplesSpec(source="demo:keyvalue-shortcut", n=4, seed=3, limit=2))
    assert len(sc) == 2 and all("hint" in s.prompt for s in sc)
    with pytest.raises(InputError, match="unknown built-in samples source 'demo:nope'; available: demo:keyvalue"):
        ProbeSet.from_spec("demo:nope")
    with pytest.raises(ValidationError, match="only applies to built-in"):
        SamplesSpec(source="data.jsonl", n=3)
