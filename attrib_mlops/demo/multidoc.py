"""A synthetic multi-document task: the answer appears in exactly one document.

Each prompt is ``n_docs`` documents, one per line, then a question line::

    doc f3 f17 f8 f1 .
    doc f9 a4 f0 f12 .
    doc f5 f21 f2 f6 .
    ? answer                       target: " a4"

Every document is ``doc_len`` filler words ``f*``; exactly one document (chosen
uniformly) has one of its words replaced by an answer word ``a*`` at a uniform
position. The target is that answer word, so the only source that holds the
answer is its document: ``answer_doc`` (0-based line index) is the source-level
ground truth, and the question line is source ``n_docs``. Nothing is slotted:
the answer's document and position are random, so a model must find the answer
by content, and both ablation modes of :func:`attrib_mlops.attribute_sources`
(``remove`` and ``mask``) are in distribution.

A tiny GPT-2 learns it in a few hundred steps
(:func:`attrib_mlops.demo.train.train_keyvalue` trains on any ``prompt``/``target``
dataset): ``build_tiny_model(multidoc_vocab(), **MULTIDOC_MODEL)`` and
``train_keyvalue(model, tok, make_multidoc_dataset(**MULTIDOC_DATA), **MULTIDOC_TRAIN)``.

Example:
    >>> ds = make_multidoc_dataset(2, seed=0)
    >>> row = ds[0]
    >>> lines = row["prompt"].split("\\n")
    >>> row["answer"] in lines[row["answer_doc"]].split()
    True
    >>> sum(row["answer"] in line.split() for line in lines)
    1
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "MULTIDOC_TASK",
    "MULTIDOC_MODEL",
    "MULTIDOC_DATA",
    "MULTIDOC_TRAIN",
    "multidoc_vocab",
    "make_multidoc_dataset",
]

MULTIDOC_TASK = "multidoc"
_PUNCT = ["doc", ".", "?", "answer"]

#: Architecture for ``build_tiny_model(multidoc_vocab(), **MULTIDOC_MODEL)``.
MULTIDOC_MODEL: dict[str, Any] = dict(n_layer=2, n_embd=64, n_head=4, n_positions=64, seed=0)
#: Training arguments of :func:`attrib_mlops.demo.train.train_keyvalue` for this task.
MULTIDOC_TRAIN: dict[str, Any] = dict(
    max_steps=300, batch_size=32, lr=3e-3, warmup_steps=0.05, weight_decay=0.0,
    lr_scheduler_type="cosine", seed=0, logging_steps=50, num_threads=1,
)
#: Training data (one pass over fresh rows).
MULTIDOC_DATA: dict[str, Any] = dict(n=MULTIDOC_TRAIN["max_steps"] * MULTIDOC_TRAIN["batch_size"], seed=0, min_docs=1)


def multidoc_vocab(n_fillers: int = 24, n_answers: int = 16) -> list[str]:
    """Words of the task: ``f0..``, ``a0..``, then ``doc . ? answer`` (fixed order, stable ids)."""
    if n_fillers < 1 or n_answers < 1:
        raise ValueError("n_fillers and n_answers must be >= 1")
    return [f"f{i}" for i in range(n_fillers)] + [f"a{i}" for i in range(n_answers)] + list(_PUNCT)


def make_multidoc_dataset(
    n: int,
    *,
    n_docs: int = 4,
    min_docs: int | None = None,
    doc_len: int = 4,
    n_fillers: int = 24,
    n_answers: int = 16,
    seed: int = 0,
):
    """``n`` rows as a ``datasets.Dataset`` (deterministic for a seed).

    Columns: ``id`` (``"md-<seed>-<i>"``), ``prompt``, ``target`` (answer with a leading
    space), ``answer``, ``answer_doc`` (line index of the document holding the answer),
    ``sources`` (the document lines and the question line, verbatim) and ``task``.
    ``min_docs``: each row has a uniform number of documents in ``[min_docs, n_docs]``
    (default: always ``n_docs``). Training with ``min_docs=1`` (``MULTIDOC_DATA``) puts
    prompts with documents removed in distribution, so the ``remove`` ablation is
    meaningful. Held-out probes: use a seed the training data did not use.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    lo = n_docs if min_docs is None else int(min_docs)
    if n_docs < 1 or doc_len < 1 or not 1 <= lo <= n_docs:
        raise ValueError("need n_docs >= 1, doc_len >= 1 and 1 <= min_docs <= n_docs")
    rng = np.random.default_rng([0x3D0C, seed])
    cols: dict[str, list] = {k: [] for k in ("id", "prompt", "target", "answer", "answer_doc", "sources", "task")}
    for i in range(n):
        k_docs = int(rng.integers(lo, n_docs + 1)) if lo < n_docs else n_docs
        words = rng.integers(0, n_fillers, size=(k_docs, doc_len))
        doc = int(rng.integers(k_docs))
        at = int(rng.integers(doc_len))
        ans = f"a{int(rng.integers(n_answers))}"
        lines = []
        for d in range(k_docs):
            toks = [f"f{int(w)}" for w in words[d]]
            if d == doc:
                toks[at] = ans
            lines.append(" ".join(["doc", *toks, "."]))
        lines.append("? answer")
        cols["id"].append(f"md-{seed}-{i}")
        cols["prompt"].append("\n".join(lines))
        cols["target"].append(" " + ans)
        cols["answer"].append(ans)
        cols["answer_doc"].append(doc)
        cols["sources"].append(lines)
        cols["task"].append(MULTIDOC_TASK)
    return documents_dataset(cols)


def documents_dataset(cols: dict[str, list[Any]], int_lists: tuple[str, ...] = ()) -> Any:
    """A ``datasets.Dataset`` of a document task's columns, with the features every such task shares.

    Columns ``id``, ``prompt``, ``target``, ``answer``, ``task`` (strings), ``answer_doc`` (int),
    ``sources`` (list of strings), plus the lists of ints named in ``int_lists``.

    Example:
        >>> cols = {"id": ["x"], "prompt": ["doc a .\\n? answer"], "target": [" a"], "answer": ["a"],
        ...         "answer_doc": [0], "sources": [["doc a ."]], "task": ["t"]}
        >>> documents_dataset(cols).num_rows
        1
    """
    import datasets

    seq = getattr(datasets, "List", None) or datasets.Sequence
    strings = ("id", "prompt", "target", "answer")
    features = {name: datasets.Value("string") for name in strings}
    features["answer_doc"] = datasets.Value("int64")
    features.update({name: seq(datasets.Value("int64")) for name in int_lists})
    features["sources"] = seq(datasets.Value("string"))
    features["task"] = datasets.Value("string")
    return datasets.Dataset.from_dict(cols, features=datasets.Features(features))
