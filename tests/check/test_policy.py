"""check.policy: the Policy (rule keys from the registry), its files and per-method overrides."""

from __future__ import annotations

import pytest

from attrib_mlops.check import Policy, compare, load_policy
from attrib_mlops.errors import SpecError


def test_policy_defaults_are_documented():
    p = Policy()
    assert (p.k, p.min_mean_importance_corr, p.min_mean_spearman, p.max_topk_changed_share) == (3, 0.5, None, 0.3)
    assert (p.min_hit_at_1, p.max_hit_at_1_drop, p.max_hit_at_k_drop, p.max_probability_drop) == (None, None,
                                                                                                  0.25, 0.1)
    assert p.accuracy_tolerance == 0.05
    doc = Policy.__doc__
    for key in Policy.model_fields:
        assert f"``{key}``" in doc, key


@pytest.mark.parametrize(
    "text, key",
    [
        ("min_mean_spearman: 0.5\nmax_topk_change: 0.2\n", "max_topk_change"),
        ("min_mean_importance_corr: high\n", "min_mean_importance_corr"),
        ("min_mean_importance_corr: '0.5'\n", "min_mean_importance_corr"),
        ("k: 2.5\n", "k"),
        ("max_probability_drop: 3.0\n", "max_probability_drop"),
        ("methods:\n  saliency:\n    min_hit_at_2: 0.5\n", "methods.saliency.min_hit_at_2"),
        ("methods:\n  saliency:\n    min_hit_at_1: [1]\n", "methods.saliency.min_hit_at_1"),
    ],
)
def test_policy_errors_name_the_key(tmp_path, text, key):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as e:
        load_policy(path)
    assert f"'{key}'" in str(e.value) and str(path) in str(e.value)


def test_policy_file_problems(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_policy(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("k: [1, 2\n")
    with pytest.raises(SpecError, match="not valid YAML.*line"):
        load_policy(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="mapping"):
        load_policy(listy)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_policy(empty) == Policy()


def test_policy_per_method_overrides_and_null_switches_off(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("min_mean_importance_corr: 0.6\nmethods:\n  attention:\n    min_mean_importance_corr: 0.2\n"
                    "    max_probability_drop: null\n")
    p = load_policy(path)
    assert p.for_method("saliency")["min_mean_importance_corr"] == 0.6
    assert p.for_method("saliency")["max_probability_drop"] == 0.1
    att = p.for_method("attention")
    assert att["min_mean_importance_corr"] == 0.2 and att["max_probability_drop"] is None
    assert att["max_topk_changed_share"] == 0.3  # not written: inherited
    assert compare({}, {}, {"k": 2}).policy["k"] == 2
    with pytest.raises(SpecError, match="unknown key 'kk'"):
        compare({}, {}, {"kk": 2})


# ------------------------------------------------------------------ refs
