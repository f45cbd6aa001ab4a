"""The training-data storage kind (tracking/kinds/training_data.py) through the real writer and reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from attrib_mlops.tracking import AttributionReader, AttributionWriter, TrackingError
from attrib_mlops.tracking import layout as L
from attrib_mlops.tracking.kinds import get_kind
from attrib_mlops.training_data.result import TrainingDataAttribution

PROBE = [{"id": f"q{i}", "prompt": f"k{i} = v{i} ; ? k{i}", "target": f" v{i}"} for i in range(3)]
IDS = [f"ex{j}" for j in range(6)]
TEXTS = [f"text {j} <script>alert({j})</script>" for j in range(6)]


def _results(step: int, method: str = "tracin") -> list[TrainingDataAttribution]:
    rng = np.random.default_rng(step)
    return [TrainingDataAttribution(rng.normal(size=6).astype(np.float32), IDS, TEXTS, method, p["prompt"],
                                    p["target"], [p["target"]], [0], None, {"index": "x"}, 3, p["id"])
            for p in PROBE]


@pytest.fixture
def run(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.create_experiment("tda", artifact_location=str(tmp_path / "artifacts"))
    return client, client.create_run(exp).info.run_id, tmp_path / "spool"


def test_written_and_read_back_additively(run):
    client, run_id, spool = run
    w = AttributionWriter(client, run_id, spool_dir=spool)
    w.log_probe_set(PROBE)
    first, second = _results(0), _results(5)
    assert w.log_step(0, first).logged and w.log_step(5, second).logged
    reader = AttributionReader(client=client)
    assert "training_data" in reader.kinds(run_id)
    got = reader.load(run_id, 5, method="tracin", kind="training_data")
    assert [r.sample_id for r in got] == ["q0", "q1", "q2"]
    np.testing.assert_array_equal(got[1].scores, second[1].scores)
    assert got[1].ids == IDS and got[1].texts == TEXTS and got[1].prompt == PROBE[1]["prompt"]
    assert got[1].top(2) == second[1].top(2)

    summ = reader.summary(run_id, 5, kind="training_data")["models"]["model"]["methods"]["tracin"]
    assert summ["drift"]["prev_step"] == 0 and "drift_prev_top_overlap" in summ["metrics"]
    want = np.nanmean([a.overlap(b, k=w.k) for a, b in zip(first, second)])  # share of the earlier top-k kept
    assert summ["metrics"]["drift_prev_top_overlap"] == pytest.approx(want)
    assert summ["metrics"]["positive_share"] == pytest.approx(np.mean([(r.scores > 0).mean() for r in second]))
    html = reader.html_path(run_id, 5, kind="training_data").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html
    hist = client.get_metric_history(run_id, "attrib/tracin/top_score")
    assert [m.step for m in hist] == [0, 5]

    man = reader.manifest(run_id, refresh=True)
    assert man["schema_version"] == L.SCHEMA_VERSION and man["kinds"]["training_data"] == {"version": 1}
    assert man["steps"][0]["files"] == {}  # the v1 keys stay empty: additive entry only
    assert reader.problems(run_id, deep=True) == []


def test_a_foreign_file_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "x.parquet"
    pq.write_table(pa.table({"a": [1]}), p)
    with pytest.raises(TrackingError, match="not a training-data file"):
        get_kind("training_data").read(p)
    kind = get_kind("training_data")
    kind.write(_results(1), Path(tmp_path / "ok.parquet"), metadata={}, row_group_size=2, keep_float32=False)
    assert [r.sample_id for r in kind.read(tmp_path / "ok.parquet", ["q2"])] == ["q2"]
