"""Side by side: word-level diff, the changed tokens attributed, one shared normalisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attrib_mlops.training_data import attribute_training_data, build_training_index, compare_continuations
from attrib_mlops.training_data.compare import SideBySide, word_diff


def test_word_diff_spans():
    d = word_diff(" w1 w2 w3 w4", " w1 w9 w3 w4 w5")
    assert [(s["op"], s["generated"], s["user"]) for s in d] == [
        ("equal", "w1", "w1"), ("replace", "w2", "w9"), ("equal", "w3 w4", "w3 w4"), ("insert", "", "w5")]
    assert " w1 w2 w3 w4"[d[1]["g_start"]:d[1]["g_end"]] == "w2"
    assert [s["op"] for s in word_diff("a b", "a")] == ["equal", "delete"]
    assert [s["op"] for s in word_diff("a", "a")] == ["equal"]


@pytest.fixture(scope="module")
def index(ckpts, rows, tmp_path_factory):
    return build_training_index(ckpts, None, rows, projection_dim=64,
                                out_dir=str(tmp_path_factory.mktemp("cmp") / "index"), show_progress=False)


def test_side_by_side_attributes_the_changed_tokens_on_one_scale(index):
    gen, user = " w4 w5 w6", " w4 w9 w6"
    sbs = compare_continuations(index, None, None, "w1 w2 w3", user, generated=gen, method="tracin", top_k=3)
    assert sbs.selection == {"generated": "changed", "user": "changed"}
    assert sbs.generated.selected == [1] and sbs.user.selected == [1]  # only the replaced word's token
    g_ref = attribute_training_data(index, None, None, "w1 w2 w3", gen, target_tokens=[1])
    u_ref = attribute_training_data(index, None, None, "w1 w2 w3", user, target_tokens=[1])
    np.testing.assert_allclose(sbs.generated.scores, g_ref.scores, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sbs.user.scores, u_ref.scores, rtol=1e-5, atol=1e-7)
    scale = max(np.abs(g_ref.scores).max(), np.abs(u_ref.scores).max())
    assert sbs.scale == pytest.approx(scale, rel=1e-6)
    assert sbs.generated.scale == sbs.user.scale == sbs.scale
    rel = [it["relative"] for side in sbs.top().values() for lst in side.values() for it in lst]
    assert max(abs(r) for r in rel) == pytest.approx(1.0) and all(abs(r) <= 1 + 1e-6 for r in rel)
    h = sbs.histogram(bins=8)
    assert h["generated"]["edges"] == h["user"]["edges"] and h["generated"]["scale"] == h["user"]["scale"]
    back = SideBySide.from_dict(json.loads(json.dumps(sbs.to_dict(), allow_nan=False)))
    assert back.diff == sbs.diff and back.scale == sbs.scale and back.user.selected == [1]


def test_side_by_side_with_the_model_generation_and_no_change(index):
    sbs = compare_continuations(index, None, None, "w1 w2 w3", " w7 w8 w9", method="grad_cos")
    assert sbs.generated.target.strip()  # the model's greedy continuation
    same = compare_continuations(index, None, None, "w1 w2 w3", " w7 w8", generated=" w7 w8")
    assert same.selection == {"generated": "all", "user": "all"}
    np.testing.assert_allclose(same.generated.scores, same.user.scores, rtol=1e-6)
    inserted = compare_continuations(index, None, None, "w1 w2 w3", " w7 w8 w9", generated=" w7 w8")
    assert inserted.selection == {"generated": "all", "user": "changed"} and inserted.user.selected == [2]
