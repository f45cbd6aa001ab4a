"""A harder multi-document task: every document carries a candidate answer; the question names one.

Each prompt is ``n_docs`` numbered documents, one per line, then a question
naming one of them::

    n0 f3 a7 f17 f8 .
    n1 f9 f0 f12 a4 .
    n2 a2 f5 f21 f2 .
    n3 f6 f1 a11 f4 .
    ? n1                           target: " a4"

Every document is ``doc_len`` words: filler words ``f*`` and one answer word
``a*`` at a random position; answer words are distinct within a prompt. The
target is the answer word of the asked document (``answer_doc``), the only
source the answer needs. Documents sit in fixed slots (document ``i`` always
starts at token ``i * (doc_len + 2)``), so one attention hop solves the task,
as in the demo's slotted key-value task; a 2-layer, 64-wide GPT-2 learns it in
a few hundred steps.

Why it is harder than the plain multi-document task: the other documents are
*distractors*, candidate answers that compete with the target. Heads that
match answer words attend to them, so naive attention averaging gives them
positive scores, while ablation shows that removing a competitor *raises* the
target (a negative score). A linear estimator over heads (AT2) can weigh the
competing heads negatively; uniform averaging cannot.

``repeat_rate`` > 0 makes each distractor repeat the target's word with that
probability (training data: 0). A model then also copies from the repeats, so
the asked document is no longer necessary on its own (an OR of sources, which
no additive score, ablation surrogate included, represents well).

Example:
    >>> ds = make_distractor_dataset(2, seed=0)
    >>> row = ds[0]
    >>> lines = row["prompt"].split("\\n")
    >>> sum(w.startswith("a") for w in row["prompt"].split()), lines[-1] == f"? n{row['answer_doc']}"
    (4, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attrib_mlops.demo.multidoc import documents_dataset

__all__ = [
    "DISTRACTOR_TASK",
    "DISTRACTOR_MODEL",
    "DISTRACTOR_DATA",
    "DISTRACTOR_TRAIN",
    "distractor_vocab",
    "make_distractor_dataset",
]

DISTRACTOR_TASK = "distractors"

#: Architecture for ``build_tiny_model(distractor_vocab(), **DISTRACTOR_MODEL)``.
DISTRACTOR_MODEL: dict[str, Any] = dict(n_layer=2, n_embd=64, n_head=4, n_positions=64, seed=0)
#: Training arguments of :func:`attrib_mlops.demo.train.train_keyvalue` for this task.
DISTRACTOR_TRAIN: dict[str, Any] = dict(
    max_steps=400, batch_size=32, lr=3e-3, warmup_steps=0.05, weight_decay=0.0,
    lr_scheduler_type="cosine", seed=0, logging_steps=50, num_threads=1,
)
#: Training data (one pass over fresh rows; no repeated answer words).
DISTRACTOR_DATA: dict[str, Any] = dict(n=DISTRACTOR_TRAIN["max_steps"] * DISTRACTOR_TRAIN["batch_size"], seed=0)


def distractor_vocab(n_docs: int = 4, n_fillers: int = 24, n_answers: int = 16) -> list[str]:
    """Words of the task: ``f0..``, ``a0..``, ``n0..``, then ``. ?`` (fixed order, stable ids)."""
    if n_fillers < 1 or n_answers < n_docs or n_docs < 1:
        raise ValueError("need n_fillers >= 1 and n_answers >= n_docs >= 1")
    return ([f"f{i}" for i in range(n_fillers)] + [f"a{i}" for i in range(n_answers)]
            + [f"n{i}" for i in range(n_docs)] + [".", "?"])


def make_distractor_dataset(
    n: int,
    *,
    n_docs: int = 4,
    doc_len: int = 4,
    repeat_rate: float = 0.0,
    n_fillers: int = 24,
    n_answers: int = 16,
    seed: int = 0,
):
    """``n`` rows as a ``datasets.Dataset`` (deterministic for a seed).

    Columns: ``id`` (``"dd-<seed>-<i>"``), ``prompt``, ``target`` (answer with a leading
    space), ``answer``, ``answer_doc`` (the asked document's line), ``repeat_docs`` (lines
    whose answer word repeats the target's), ``sources`` (the document lines and the
    question line, verbatim) and ``task``. Held-out probes: use a seed the training data
    did not use.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if n_docs < 1 or doc_len < 1 or n_answers < n_docs or not 0.0 <= repeat_rate <= 1.0:
        raise ValueError("need n_docs >= 1, doc_len >= 1, n_answers >= n_docs and 0 <= repeat_rate <= 1")
    rng = np.random.default_rng([0xD15, seed])
    cols: dict[str, list] = {k: [] for k in
                             ("id", "prompt", "target", "answer", "answer_doc", "repeat_docs", "sources", "task")}
    for i in range(n):
        words = rng.integers(0, n_fillers, size=(n_docs, doc_len))
        where = rng.integers(0, doc_len, size=n_docs)
        answers = rng.choice(n_answers, size=n_docs, replace=False)
        asked = int(rng.integers(n_docs))
        repeat = rng.random(n_docs) < repeat_rate  # same draws whatever the rate: streams stay aligned
        repeats = [d for d in range(n_docs) if d != asked and repeat[d]]
        for d in repeats:
            answers[d] = answers[asked]
        lines = []
        for d in range(n_docs):
            toks = [f"f{int(w)}" for w in words[d]]
            toks[int(where[d])] = f"a{int(answers[d])}"
            lines.append(" ".join([f"n{d}", *toks, "."]))
        lines.append(f"? n{asked}")
        ans = f"a{int(answers[asked])}"
        cols["id"].append(f"dd-{seed}-{i}")
        cols["prompt"].append("\n".join(lines))
        cols["target"].append(" " + ans)
        cols["answer"].append(ans)
        cols["answer_doc"].append(asked)
        cols["repeat_docs"].append(repeats)
        cols["sources"].append(lines)
        cols["task"].append(DISTRACTOR_TASK)
    return documents_dataset(cols, int_lists=("repeat_docs",))
