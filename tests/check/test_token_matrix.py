"""The regression-check story on really trained tiny models (recipes/regression_check.py).

clean vs clean-reseed passes; clean vs shortcut fails on attribution while the probe
accuracies differ by less than the policy's tolerance (or the attribution check fires
at an earlier step than accuracy drops). About a minute on two CPU cores.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "regression_check.py"


def _recipe():
    spec = importlib.util.spec_from_file_location("recipe_regression_check", RECIPE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_shortcut_is_caught_by_attribution_not_by_accuracy(tmp_path):
    recipe = _recipe()
    t0 = time.perf_counter()
    out = recipe.run_story(tmp_path / "mlflow.db")
    print(recipe.report(out))
    print(f"test_check_keyvalue: run_story took {time.perf_counter() - t0:.1f} s")
    models, checks, pol = out["models"], out["checks"], recipe.policy()
    assert out["holds"], out["why"]

    reseed, shortcut = checks["clean-reseed"], checks["shortcut"]
    assert reseed.verdict == "pass" and reseed.exit_code == 0, reseed.summary_text()
    assert shortcut.verdict == "regression" and shortcut.exit_code == 1, shortcut.summary_text()
    assert {m.method for m in shortcut.methods} == set(recipe.CONFIG["methods"])
    # every method sees it, on attribution rules, not on the target probability
    for m in shortcut.methods:
        failed = {r.name for r in m.failed_rules}
        assert {"mean_importance_corr", "topk_changed_share", "hit_at_3_drop"} <= failed, (m.method, failed)
        assert "probability_drop" not in failed
    # accuracy does not tell the models apart (or attribution fired first)
    gap = abs(models["clean"]["accuracy"] - models["shortcut"]["accuracy"])
    first_attr = recipe._first_failure(models["shortcut"]["live_check"])
    first_acc = recipe._first_accuracy_drop(models)
    assert gap < pol.accuracy_tolerance or (first_attr is not None and (first_acc is None or first_attr < first_acc))
    acc_rule = next(r for r in shortcut.rules if r.name == "accuracy_drop")  # read back from the runs' metric
    assert acc_rule.passed is (gap <= pol.accuracy_tolerance)
    # ... while the shortcut model cannot answer without its cue: it never learned the lookup
    assert models["shortcut"]["clean_accuracy"] < 0.5 <= models["clean"]["clean_accuracy"]

    # live check in the callback: the shortcut run fails at every logged step, the reseed passes at the end
    steps = recipe.CONFIG["steps"]
    assert set(models["shortcut"]["live_check"]) == set(range(recipe.CONFIG["log_every"], steps + 1,
                                                              recipe.CONFIG["log_every"]))
    assert all(v == 0.0 for v in models["shortcut"]["live_check"].values())
    assert models["clean-reseed"]["live_check"][steps] == 1.0
    assert not models["shortcut"]["failures"] and not models["clean-reseed"]["failures"]

    # verdicts logged back to the candidate runs
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=out["tracking_uri"])
    tags = client.get_run(models["shortcut"]["run_id"]).data.tags
    assert tags["attrib_mlops.check.verdict"] == "regression"
    assert client.get_run(models["clean-reseed"]["run_id"]).data.tags["attrib_mlops.check.verdict"] == "pass"
