"""Source-level ground truth of the key-value task."""

from __future__ import annotations

from attrib_mlops.demo.source_truth import keyvalue_sources
from attrib_mlops.demo.tasks import make_keyvalue_dataset
from attrib_mlops.sources.splitting import find_substrings


def test_sources_cover_pairs_hint_and_question_in_order():
    for shortcut in (False, True):
        for row in make_keyvalue_dataset(20, seed=5, shortcut=shortcut):
            srcs, truth, hint = keyvalue_sources(row)
            find_substrings(row["prompt"], srcs)  # verbatim and in order
            assert " ".join(srcs) == row["prompt"]
            assert srcs[truth].split()[2] == row["answer"]
            assert srcs[-1].startswith("? ") and srcs[-1].split()[1] == srcs[truth].split()[0]
            if shortcut:
                assert srcs[hint].split()[0] == "hint" and len(srcs) == 6
            else:
                assert hint is None and len(srcs) == 5
