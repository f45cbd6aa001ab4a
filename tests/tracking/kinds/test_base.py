"""The storage kind seam: a new kind plugs into the writer and reader as one class (no other change).

The kind below (per-source scores, the shape the context-source kind will have) is
defined here, in the test, and never named in attrib_mlops: the writer and reader
find it through the registry and dispatch to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from attrib_mlops._util import nanmean
from attrib_mlops.errors import InputError
from attrib_mlops.result import AttributionResult
from attrib_mlops.tracking import AttributionReader, AttributionWriter, SchemaVersionError
from attrib_mlops.tracking import layout as L
from attrib_mlops.tracking.kinds import StorageKind, get_kind, kind_names, kind_of
from attrib_mlops.tracking.kinds import base as kinds_base

NAME = "toy_sources"


@dataclass
class SourceScores:
    """One score per source (sentence) of a prompt, for its target."""

    scores: np.ndarray
    sources: list[str]
    method: str
    sample_id: str | None = None
    prompt: str = ""
    target: str = ""
    engine: str = "toy"
    info: dict = field(default_factory=dict)


def _share(r: SourceScores) -> float:
    a = np.abs(r.scores)
    return float(a.max() / a.sum()) if a.sum() else float("nan")


@pytest.fixture
def toy_kind():
    class ToySourcesKind(StorageKind):
        name = NAME
        version = 1
        result_type = SourceScores
        suffix = ".parquet"

        def write(self, results, path, *, metadata, row_group_size, keep_float32):
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table({
                "sample_id": [str(r.sample_id) for r in results], "method": [r.method for r in results],
                "sources": [r.sources for r in results], "scores": [r.scores.astype(np.float32) for r in results],
                "prompt": [r.prompt for r in results], "target": [r.target for r in results],
            }), path)

        def read(self, path, sample_ids=None):
            rows = pq.read_table(path).to_pylist()
            out = [SourceScores(np.asarray(r["scores"], np.float32), r["sources"], r["method"], r["sample_id"],
                                r["prompt"], r["target"]) for r in rows]
            return out if sample_ids is None else [r for r in out if r.sample_id in set(sample_ids)]

        def compute(self, groups, ground_truth, references, k):
            section = {"methods": {}, "agreement": {}}
            for method, rs in groups.items():
                samples = {str(r.sample_id): {"max_share": _share(r)} for r in rs}
                ref_step, ref = references[method]["prev"]
                if ref is not None:
                    for r in rs:
                        samples[str(r.sample_id)]["drift_prev_l1"] = float(
                            np.abs(r.scores - ref[str(r.sample_id)].scores).sum())
                keys = sorted({key for s in samples.values() for key in s})
                section["methods"][method] = {
                    "metrics": {key: nanmean([s.get(key) for s in samples.values()]) for key in keys},
                    "samples": samples, "drift": {"prev_step": ref_step}}
            return section

        def render(self, panels, meta, title):
            rows = "".join(f"<li>{m}/{me}: {len(rs)}</li>" for (m, me), rs in sorted(panels.items()))
            return f"<!doctype html><title>{title}</title><ul>{rows}</ul>"

    yield get_kind(NAME)
    kinds_base._REGISTRY.pop(NAME, None)


@pytest.fixture
def run(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.create_experiment("kinds", artifact_location=str(tmp_path / "artifacts"))
    return client, client.create_run(exp).info.run_id, tmp_path / "spool"


PROBE = [{"id": f"s{i}", "prompt": f"a{i}. b{i}. c{i}.", "target": " x"} for i in range(3)]


def _scores(step: int, method: str = "ablation") -> list[SourceScores]:
    rng = np.random.default_rng(step)
    return [SourceScores(rng.random(3).astype(np.float32), ["a.", "b.", "c."], method, p["id"], p["prompt"],
                         p["target"]) for p in PROBE]


def _tokens(method: str = "saliency") -> list[AttributionResult]:
    return [AttributionResult(np.full((2, 1), 0.5, np.float32), ["a", "b"], ["x"], method, "native", n_prompt=2,
                              sample_id=p["id"], prompt=p["prompt"], target=p["target"]) for p in PROBE]


def test_registry_names_and_errors(toy_kind):
    assert kind_names()[0] == "token_matrix" and NAME in kind_names()
    assert kind_of(_scores(0)) is toy_kind and kind_of(_tokens()).name == "token_matrix"
    with pytest.raises(InputError, match="registered kinds: token_matrix"):
        get_kind("nope")
    with pytest.raises(InputError, match="one kind per call"):
        kind_of(_tokens() + _scores(0))
    with pytest.raises(InputError, match="got int"):
        kind_of([1])
    assert toy_kind.file_relpath("org/m", "ablation") == f"{NAME}/org_m-{L.safe_name('org/m')[-8:]}/ablation.parquet"


def test_a_new_kind_is_written_and_read_through_the_registry(toy_kind, run):
    client, run_id, spool = run
    w = AttributionWriter(client, run_id, spool_dir=spool)
    w.log_probe_set(PROBE)
    assert w.log_step(0, _tokens()).logged
    s0 = w.log_step(0, _scores(0))  # same step, another kind
    assert s0.logged and s0.metrics["ablation"]["max_share"] == pytest.approx(np.mean([_share(r) for r in _scores(0)]))
    s10 = w.log_step(10, _scores(10), offline=True)  # through the spool, then committed
    assert not s10.logged and json.loads((s10.spool_path / "entry.json").read_text())["kind"] == NAME
    assert w.flush()

    reader = AttributionReader(client=client)
    assert reader.steps(run_id) == [0, 10] and reader.kinds(run_id) == ["token_matrix", NAME]
    got = reader.load(run_id, 10, method="ablation", kind=NAME)
    assert [r.sample_id for r in got] == ["s0", "s1", "s2"]
    np.testing.assert_allclose(got[1].scores, _scores(10)[1].scores)
    assert reader.load_sample(run_id, 10, "model", "ablation", "s2", kind=NAME).sources == ["a.", "b.", "c."]
    summ = reader.summary(run_id, 10, kind=NAME)
    assert summ["kind"] == NAME and summ["models"]["model"]["methods"]["ablation"]["drift"] == {"prev_step": 0}
    assert "drift_prev_l1" in summ["models"]["model"]["methods"]["ablation"]["metrics"]
    assert "model/ablation: 3" in reader.html_path(run_id, 10, kind=NAME).read_text()
    # the token kind of step 0 is untouched: its v1 files and summary know nothing of the new kind
    assert [r.sample_id for r in reader.load(run_id, 0, method="saliency")] == ["s0", "s1", "s2"]
    assert set(reader.summary(run_id, 0)["models"]["model"]["methods"]) == {"saliency"}
    with pytest.raises(InputError, match="no method 'ablation'"):
        reader.load(run_id, 0, method="ablation")
    assert reader.problems(run_id, deep=True) == []

    man = reader.manifest(run_id, refresh=True)
    assert man["schema_version"] == L.SCHEMA_VERSION
    assert man["kinds"] == {"token_matrix": {"version": 1}, NAME: {"version": 1}}
    step10 = man["steps"][1]
    assert step10["files"] == {} and step10["models"] == {}  # the v1 keys v1 readers require
    assert step10["kinds"][NAME]["files"] == {"model": {"ablation": f"steps/0000000010/{NAME}/model/ablation.parquet"}}
    art = Path(client.get_run(run_id).info.artifact_uri) / "attribution" / "steps" / "0000000010"
    assert sorted(p.relative_to(art).as_posix() for p in art.rglob("*") if p.is_file()) == [
        f"{NAME}/model/ablation.parquet", f"{NAME}/summary.json", f"{NAME}/view.html"]
    hist = client.get_metric_history(run_id, "attrib/ablation/max_share")
    assert [m.step for m in hist] == [0, 10]


def test_a_newer_version_of_one_kind_is_refused_alone(toy_kind, run):
    client, run_id, spool = run
    w = AttributionWriter(client, run_id, spool_dir=spool)
    w.log_probe_set(PROBE)
    w.log_step(0, _tokens())
    w.log_step(0, _scores(0))
    art = Path(client.get_run(run_id).info.artifact_uri) / "attribution" / L.MANIFEST_NAME
    man = json.loads(art.read_text())
    man["kinds"][NAME]["version"] = 2
    art.write_text(json.dumps(man))
    reader = AttributionReader(client=client)
    with pytest.raises(SchemaVersionError, match=f"kind '{NAME}' was written with version 2"):
        reader.load(run_id, 0, method="ablation", kind=NAME)
    assert len(reader.load(run_id, 0, method="saliency")) == 3  # the token kind still reads
    w2 = AttributionWriter(client, run_id, spool_dir=spool, strict=True)
    with pytest.raises(SchemaVersionError, match="version 2"):  # never appended to, the step stays spooled
        w2.log_step(10, _scores(10))
    assert len(w2.pending()) == 1


def test_every_kind_logs_what_its_registry_says():
    """One ``logged()`` for every kind: a drift metric registered ``logged=False`` stays out of MLflow."""
    from attrib_mlops.tracking.kinds import get_kind

    tm = get_kind("token_matrix")
    assert tm.logged("drift_prev_kendall") is False and tm.logged("drift_first_kendall") is False
    assert tm.logged("drift_prev_spearman") and tm.logged("topk_mass")
    assert get_kind("sources").logged("lds") and get_kind("training_data").logged("drift_prev_top_overlap")
