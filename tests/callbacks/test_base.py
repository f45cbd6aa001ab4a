"""The plain-loop monitor (callbacks/base.py) against a real MLflow SQLite store."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from attrib_mlops.callbacks import AttributionMonitor
from attrib_mlops.tracking import AttributionReader


def test_failures_are_logged_and_skipped_unless_strict(kv, store, caplog):
    model, tok, _, probe = kv
    run = store.client.create_run(store.exp)
    mon = AttributionMonitor(probe, tok, ["saliency"], tracking_uri=store.uri, run_id=run.info.run_id,
                             spool_dir=store.tmp / "spool", options={"max_new_tokens": 2})
    with caplog.at_level(logging.ERROR, logger="attrib_mlops.callbacks"):
        assert mon.log(object(), 5) is False  # not a model: attribution fails
    assert "step 5 failed and was skipped" in caplog.text
    assert mon.failures and mon.failures[0][0] == 5
    strict = AttributionMonitor(probe, tok, ["saliency"], tracking_uri=store.uri, run_id=run.info.run_id,
                                spool_dir=store.tmp / "spool", strict=True)
    with pytest.raises(Exception):
        strict.log(object(), 6)


def test_monitor_plain_loop_and_resume(kv, store):
    model, tok, _, probe = kv
    run = store.client.create_run(store.exp)
    mon = AttributionMonitor(probe, tok, ["saliency"], tracking_uri=store.uri, run_id=run.info.run_id,
                             spool_dir=store.tmp / "spool")
    assert mon.log(model, 10) is True
    t = mon.timings[-1]  # time on the caller's thread, per phase (benchmarks/callback_overhead.py reports it)
    assert t["step"] == 10 and t["attribute_s"] == mon.costs[-1] and 0 < t["setup_s"] <= t["log_s"]
    assert t["total_s"] >= t["attribute_s"] + t["log_s"]
    assert mon.log(model, 10) is False  # already logged
    assert len(mon.timings) == 1
    state = mon.state_dict()
    mon2 = AttributionMonitor(probe, tok, ["saliency"], tracking_uri=store.uri, spool_dir=store.tmp / "spool")
    mon2.load_state_dict(state)
    assert mon2.run_id == run.info.run_id
    assert mon2.log(model, 10) is False and mon2.log(model, 20) is True
    mon2.close()
    assert mon2.close_s > 0 and [t["step"] for t in mon2.timings] == [20]
    assert AttributionReader(store.uri).steps(run.info.run_id) == [10, 20]
    a = AttributionReader(store.uri).load(run.info.run_id, 10, method="saliency")
    b = AttributionReader(store.uri).load(run.info.run_id, 20, method="saliency")
    for x, y in zip(a, b):  # same model at both steps -> same matrices (float16 storage)
        np.testing.assert_allclose(x.matrix, y.matrix, rtol=1e-3, atol=1e-6)
