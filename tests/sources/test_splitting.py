"""Splitters, explicit substrings and the text ablation."""

from __future__ import annotations

import pytest

from attrib_mlops.errors import InputError
from attrib_mlops.sources.splitting import find_substrings, remove_spans, split_text


def _texts(text, spans):
    return [text[a:b] for a, b in spans]


def test_sentence_splitter_is_rule_based_and_trims():
    text = "Mr. Smith went to Washington.  He arrived at 3 p.m. on Monday! Did he? Yes."
    assert _texts(text, split_text(text, "sentence")) == [
        "Mr. Smith went to Washington.", "He arrived at 3 p.m. on Monday!", "Did he?", "Yes.",
    ]


def test_line_and_region_splitting():
    text = "HEADER a.\n\n  b c  \nd\nFOOTER"
    assert _texts(text, split_text(text, "line")) == ["HEADER a.", "b c", "d", "FOOTER"]
    region = (text.index("a."), text.index("FOOTER"))
    assert _texts(text, split_text(text, "line", [region])) == ["a.", "b c", "d"]
    assert _texts(text, split_text(text, "turn", [(0, 6), (7, 9), (9, 11)])) == ["HEADER", "a."]


def test_token_splitter_uses_offsets_inside_regions():
    text = "x y z"
    offs = [(0, 1), (1, 2), (2, 3), (4, 5)]
    assert _texts(text, split_text(text, "token", [(2, 5)], offs)) == ["y", "z"]
    with pytest.raises(InputError, match="fast tokenizer"):
        split_text(text, "token")
    with pytest.raises(InputError, match="unknown source splitter 'paragraph'"):
        split_text(text, "paragraph")


def test_explicit_substrings_in_order_and_errors():
    text = "alpha beta alpha gamma"
    assert find_substrings(text, ["alpha", "alpha", "gamma"]) == [(0, 5), (11, 16), (17, 22)]
    with pytest.raises(InputError, match="not a substring"):
        find_substrings(text, ["delta"], 3)
    with pytest.raises(InputError, match="in the order they occur"):
        find_substrings(text, ["gamma", "beta"])
    with pytest.raises(InputError, match="non-empty string"):
        find_substrings(text, [""])


@pytest.mark.parametrize(
    "keep, expected",
    [
        ([True, False, True], "A. C. Q?"),
        ([False, True, True], "B. C. Q?"),
        ([True, True, False], "A. B. Q?"),
        ([False, False, False], "Q?"),
        ([True, True, True], "A. B. C. Q?"),
    ],
)
def test_remove_spans_leaves_single_separators(keep, expected):
    text = "A. B. C. Q?"
    assert remove_spans(text, [(0, 2), (3, 5), (6, 8)], keep) == expected


def test_remove_span_at_the_end_takes_the_space_before():
    text = "one\ntwo\nthree"
    spans = [(0, 3), (4, 7), (8, 13)]
    assert remove_spans(text, spans, [True, True, False]) == "one\ntwo"
    assert remove_spans(text, spans, [True, False, True]) == "one\nthree"
    with pytest.raises(InputError, match="2 keep flags for 3 sources"):
        remove_spans(text, spans, [True, False])
