"""Option validation names the bad key."""

from __future__ import annotations

import pytest

from attrib_mlops.errors import SpecError
from attrib_mlops.sources.options import SourceOptions, parse_source_options


def test_defaults_follow_contextcite():
    o = parse_source_options()
    assert (o.n_ablations, o.keep_prob, o.lasso_alpha, o.ablation, o.topk) == (64, 0.5, 0.01, "remove", (1, 3, 5))


def test_unknown_and_invalid_keys_are_named():
    with pytest.raises(SpecError, match="unknown key 'n_ablation'.*Valid options: n_ablations"):
        parse_source_options(n_ablation=3)
    with pytest.raises(SpecError, match="'ablation'"):
        parse_source_options(ablation="zero")
    with pytest.raises(SpecError, match="'keep_prob'"):
        parse_source_options(keep_prob=1.0)
    with pytest.raises(SpecError, match="'target_span'"):
        parse_source_options(target_span=(2, 2))


def test_merge_and_key_dict():
    o = parse_source_options({"seed": 3}, n_ablations=16, topk=[5, 1, 1])
    assert (o.seed, o.n_ablations, o.topk) == (3, 16, (1, 5))
    assert parse_source_options(o) is o
    assert "show_progress" not in o.key_dict() and o.key_dict()["seed"] == 3
    assert isinstance(o.load_options().trust_remote_code, bool)
    assert SourceOptions(dtype="bfloat16").load_options().dtype == "bfloat16"
