"""Source-level ground truth of the demo's key-value task (for context-source attribution).

Each ``k = v ;`` pair, the ``hint v ;`` triple (shortcut prompts) and the
``? k`` question are sources. For a row of
:func:`attrib_mlops.demo.tasks.make_keyvalue_dataset`, :func:`keyvalue_sources`
returns them verbatim and in order, with the index of the asked key's pair
(the true source) and of the hint (or None).

Example:
    >>> from attrib_mlops.demo.tasks import make_keyvalue_dataset
    >>> row = make_keyvalue_dataset(1, seed=0, shortcut=True)[0]
    >>> srcs, truth, hint = keyvalue_sources(row)
    >>> srcs[truth].split()[2] == row["answer"], srcs[hint].split()[0]
    (True, 'hint')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["keyvalue_sources"]


def keyvalue_sources(row: Mapping[str, Any]) -> tuple[list[str], int, int | None]:
    """``(sources, true_index, hint_index)`` of a key-value row (see module docstring)."""
    toks = str(row["prompt"]).split()
    q = toks.index("?")
    sources: list[str] = []
    hint = None
    i = 0
    while i < q:
        piece = toks[i : i + 4] if toks[i] != "hint" else toks[i : i + 3]
        if toks[i] == "hint":
            hint = len(sources)
        sources.append(" ".join(piece))
        i += len(piece)
    sources.append(" ".join(toks[q:]))
    truth = int(row["ground_truth"][0]) // 4  # pair p has its value token at 4p + 2
    return sources, truth, hint
