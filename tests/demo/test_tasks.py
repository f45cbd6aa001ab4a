"""Synthetic key-value tasks: determinism, ground truth and the shortcut cue."""

from __future__ import annotations

import random

import numpy as np
import pytest

from attrib_mlops.demo.tasks import (
    HINT_TOKEN,
    LAYOUTS,
    SHORTCUT_TASK_NAME,
    TASK_NAME,
    keyvalue_vocab,
    make_keyvalue_dataset,
    probe_set,
)


def _rows(ds):
    return [dict(r) for r in ds]


def test_vocab_contents():
    vocab = keyvalue_vocab()
    assert vocab[:16] == [f"k{i}" for i in range(16)]
    assert vocab[16:32] == [f"v{i}" for i in range(16)]
    assert {"=", ";", "?", HINT_TOKEN} <= set(vocab)
    assert len(vocab) == len(set(vocab))
    assert len(keyvalue_vocab(n_keys=4, n_values=6)) == 4 + 6 + 4


def test_columns_and_ids():
    ds = make_keyvalue_dataset(5, seed=7)
    assert set(ds.column_names) == {
        "id", "prompt", "target", "answer", "ground_truth", "shortcut_position",
        "hint_correct", "task",
    }
    assert ds["id"] == [f"kv-7-{i}" for i in range(5)]
    assert set(ds["task"]) == {TASK_NAME}
    assert set(make_keyvalue_dataset(3, shortcut=True)["task"]) == {SHORTCUT_TASK_NAME}
    assert len(make_keyvalue_dataset(0)) == 0


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shortcut", [False, True])
def test_same_seed_same_data_different_seed_different(layout, shortcut):
    kw = dict(layout=layout, shortcut=shortcut, hint_rate=0.5)
    a = make_keyvalue_dataset(64, seed=3, **kw)
    b = make_keyvalue_dataset(64, seed=3, **kw)
    c = make_keyvalue_dataset(64, seed=4, **kw)
    assert _rows(a) == _rows(b)
    assert a["prompt"] != c["prompt"]


def test_does_not_touch_global_rngs():
    py, npy = random.getstate(), np.random.get_state()
    make_keyvalue_dataset(20, shortcut=True, hint_rate=0.5)
    make_keyvalue_dataset(20, distractor_rate=0.5, layout="random")
    assert random.getstate() == py
    after = np.random.get_state()
    assert after[0] == npy[0] and np.array_equal(after[1], npy[1]) and after[2:] == npy[2:]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n_pairs", [2, 4])
def test_ground_truth_points_at_the_asked_value(layout, n_pairs):
    ds = make_keyvalue_dataset(200, n_pairs=n_pairs, seed=1, layout=layout)
    for row in ds:
        toks = row["prompt"].split()
        assert len(toks) == 4 * n_pairs + 2
        assert toks[-2:-1] == ["?"]
        (gt,) = row["ground_truth"]
        assert gt % 4 == 2 and gt < 4 * n_pairs
        assert toks[gt] == row["answer"]
        assert row["target"] == " " + row["answer"]
        assert toks[gt - 2] == toks[-1]  # the asked key owns that value
        assert toks[gt - 1] == "="
        assert row["shortcut_position"] == [] and row["hint_correct"] is False


@pytest.mark.parametrize("layout", LAYOUTS)
def test_keys_and_values_distinct(layout):
    for row in make_keyvalue_dataset(300, seed=2, layout=layout):
        toks = row["prompt"].split()
        keys, values = toks[0:16:4], toks[2:16:4]
        assert all(k.startswith("k") for k in keys) and all(v.startswith("v") for v in values)
        assert len(set(keys)) == 4
        assert len(set(values)) == 4


def test_slotted_layout_puts_each_key_in_its_slot():
    ds = make_keyvalue_dataset(300, n_pairs=4, n_keys=16, seed=5, layout="slotted")
    seen = set()
    for row in ds:
        keys = row["prompt"].split()[0:16:4]
        for slot, k in enumerate(keys):
            assert int(k[1:]) % 4 == slot
            seen.add(k)
    assert seen == {f"k{i}" for i in range(16)}  # every key gets used


def test_random_layout_moves_keys_around():
    ds = make_keyvalue_dataset(300, seed=5, layout="random")
    slots_of_k0 = {
        row["prompt"].split()[0:16:4].index("k0")
        for row in ds
        if "k0" in row["prompt"].split()[0:16:4]
    }
    assert len(slots_of_k0) > 1


def test_words_are_in_the_vocabulary_and_positions_match_token_ids():
    from attrib_mlops.demo.tiny import build_word_tokenizer

    tok = build_word_tokenizer(keyvalue_vocab())
    ds = make_keyvalue_dataset(20, seed=0, shortcut=True, hint_rate=0.5)
    for row in ds:
        ids = tok(row["prompt"])["input_ids"]
        assert tok.unk_token_id not in ids
        assert len(ids) == len(row["prompt"].split())
        assert ids[row["ground_truth"][0]] == tok.convert_tokens_to_ids(row["answer"])
        assert tok(row["target"])["input_ids"] == [tok.convert_tokens_to_ids(row["answer"])]


@pytest.mark.parametrize("hint_rate", [0.0, 0.3, 1.0])
def test_shortcut_cue_present_and_correct_at_the_rate_asked(hint_rate):
    n = 2000
    ds = make_keyvalue_dataset(n, seed=11, shortcut=True, hint_rate=hint_rate)
    correct = 0
    for row in ds:
        toks = row["prompt"].split()
        (pos,) = row["shortcut_position"]
        assert toks[pos - 1] == HINT_TOKEN and toks[pos + 1] == ";"
        assert toks[pos + 2] == "?"  # just before the question
        assert toks[pos].startswith("v")
        assert row["hint_correct"] == (toks[pos] == row["answer"])
        assert toks[row["ground_truth"][0]] == row["answer"]  # still the real value
        correct += row["hint_correct"]
    if hint_rate in (0.0, 1.0):
        assert correct == n * hint_rate
    else:  # binomial: sd ~ 0.01
        assert abs(correct / n - hint_rate) < 0.05


def test_shortcut_rows_are_clean_rows_with_the_hint_inserted():
    clean = make_keyvalue_dataset(100, seed=9)
    cue = make_keyvalue_dataset(100, seed=9, shortcut=True, hint_rate=0.5)
    for c, s in zip(clean, cue):
        st = s["prompt"].split()
        (pos,) = s["shortcut_position"]
        assert st[: pos - 1] + st[pos + 2 :] == c["prompt"].split()
        assert (s["answer"], s["ground_truth"]) == (c["answer"], c["ground_truth"])


def test_distractor_hints_are_noise():
    n = 2000
    ds = make_keyvalue_dataset(n, seed=4, distractor_rate=0.5)
    with_hint = [r for r in ds if r["shortcut_position"]]
    assert abs(len(with_hint) / n - 0.5) < 0.05
    rate = np.mean([r["hint_correct"] for r in with_hint])
    assert rate < 0.15  # uniform over 16 values: about 1/16
    for r in with_hint:
        toks = r["prompt"].split()
        assert toks[r["shortcut_position"][0] - 1] == HINT_TOKEN
        assert toks[r["ground_truth"][0]] == r["answer"]
    assert set(ds["task"]) == {TASK_NAME}


def test_probe_set_is_fixed_and_comparable_across_variants():
    clean, again = probe_set(), probe_set()
    assert len(clean) == 16 and _rows(clean) == _rows(again)
    cue, wrong = probe_set(shortcut=True), probe_set(shortcut=True, hint_rate=0.0)
    assert all(cue["hint_correct"]) and not any(wrong["hint_correct"])
    assert clean["answer"] == cue["answer"] == wrong["answer"]
    assert clean["ground_truth"] == cue["ground_truth"]
    # held out from the default training seed
    assert not set(clean["prompt"]) & set(make_keyvalue_dataset(2000, seed=0)["prompt"])


@pytest.mark.parametrize(
    "kw",
    [
        dict(n_pairs=0),
        dict(n_pairs=5, n_keys=4),
        dict(n_pairs=5, n_values=4),
        dict(hint_rate=1.5),
        dict(distractor_rate=-0.1),
        dict(layout="zigzag"),
        dict(shortcut=True, distractor_rate=0.5),
    ],
)
def test_bad_arguments(kw):
    with pytest.raises(ValueError):
        make_keyvalue_dataset(3, **kw)


def test_two_question_rows_have_multi_token_targets_answered_in_the_prompt():
    """The demo's multi-token probe rows (issue 9 item 18): each target answers two questions of its prompt."""
    import datasets

    from attrib_mlops.demo.tasks import TWO_QUESTIONS_TASK_NAME, two_question_rows

    base = probe_set(6, shortcut=True)
    rows = two_question_rows(base, n=4)
    assert len(rows) == 4
    for src, row in zip(base, rows):
        toks, tgt = row["prompt"].split(), row["target"].split()
        assert row["prompt"] == src["prompt"] and row["id"] == f"{src['id']}-two"
        assert row["target"].startswith(" ") and len(tgt) == 5 and tgt[1:3] == [";", "?"]
        assert tgt[0] == src["answer"] == toks[src["ground_truth"][0]]
        key_pos = toks.index(tgt[3])
        assert key_pos % 4 == 0 and toks[key_pos + 1] == "=" and toks[key_pos + 2] == tgt[4]
        assert tgt[3] != toks[-1]  # a different question than the prompt's
        assert row["ground_truth"] == [] and row["task"] == TWO_QUESTIONS_TASK_NAME
    both = datasets.concatenate_datasets([base, rows])  # same columns: the demo tracks both together
    assert len(both) == 10 and len(set(both["id"])) == 10
