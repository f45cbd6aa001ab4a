"""Synthetic key-value retrieval tasks whose attribution ground truth is known.

The clean task
--------------
Each prompt lists ``n_pairs`` key-value pairs and then asks for one key::

    k12 = v15 ; k9 = v0 ; k10 = v1 ; k7 = v4 ; ? k10        target: " v1"

Keys within a prompt are distinct, and so are values, so exactly one prompt
token holds the answer: the VALUE token of the asked key's pair. Its 0-based
position in the whitespace tokenisation of the prompt is stored as
``ground_truth`` (a one-element ``list[int]``; pair ``i`` has its value token at
position ``4 * i + 2``). The values are drawn at random per prompt, so no model
can answer without reading that token; a faithful attribution method should put
most of its mass on it (and on the query key, the last token).

Key layout. With ``layout="slotted"`` (the default) key ``k<i>`` can only appear
in pair slot ``i % n_pairs`` (slot 0 holds one of ``k0 k4 k8 k12``, slot 1 one of
``k1 k5 k9 k13`` and so on, for 4 pairs and 16 keys), so the query key tells the
model *where* to look and one attention hop solves the task: a 2-layer,
64-wide GPT-2 learns it in a few hundred steps (seconds on a CPU). With
``layout="random"`` the keys are placed anywhere: true associative recall, which
needs a two-hop (induction-like) circuit; the same tiny model stays at chance
level among the in-context values for >10k steps, far beyond a CPU demo budget.
The answer is in the value token in both layouts, which is all the attribution
ground truth needs.

The shortcut variant (``shortcut=True``)
----------------------------------------
A spurious cue is inserted just before the question mark::

    k12 = v15 ; k9 = v0 ; k10 = v1 ; k7 = v4 ; hint v1 ; ? k10   target: " v1"

With probability ``hint_rate`` the hint value equals the answer; otherwise it is
a uniformly random value that is *not* the answer. The hint always sits at the
same place (two tokens before ``?``), so copying it is easier than the key
lookup: a model trained with ``hint_rate=1.0`` learns to copy the hint and never
learns to read the pairs. ``ground_truth`` still points at the real value token
(the hint comes after all pairs, so their positions do not move); the position
of the hint's value token is stored as ``shortcut_position``.

Clean rows can carry the same ``hint vX ;`` triple as pure noise
(``distractor_rate``: the probability a clean row gets one, with ``vX`` uniform
over all values). A clean model trained with distractors learns to ignore the
hint slot, so it keeps its accuracy on prompts that contain a hint.

Why: this is the regression-check story. Evaluate a clean model and a shortcut
model on the *same* probe prompts with the hint present and correct
(``probe_set(shortcut=True)``): both reach the same accuracy, so an accuracy
metric cannot tell them apart, but the clean model attributes the answer to the
value token (``ground_truth``) and the shortcut model to the hint token
(``shortcut_position``). A tracked attribution signal catches what accuracy
misses. (``probe_set(shortcut=True, hint_rate=0.0)`` gives the same prompts with
a wrong hint, where accuracy separates them as well.)

Determinism: every function draws from ``numpy.random.default_rng`` generators
seeded from its arguments, never from a global RNG. The pairs and the asked key
come from one stream and the hints from a separate one with a fixed number of
draws per row, so for the same ``seed`` and ``layout`` the shortcut rows are
exactly the clean rows with the hint inserted.

Example:
    >>> ds = make_keyvalue_dataset(2, seed=0)
    >>> row = ds[0]
    >>> toks = row["prompt"].split()
    >>> toks[row["ground_truth"][0]] == row["answer"] == row["target"].strip()
    True
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "LAYOUTS",
    "TASK_NAME",
    "SHORTCUT_TASK_NAME",
    "HINT_TOKEN",
    "keyvalue_vocab",
    "make_keyvalue_dataset",
    "probe_set",
    "TWO_QUESTIONS_TASK_NAME",
    "two_question_rows",
]

TASK_NAME = "keyvalue"
#: Task of :func:`two_question_rows` (multi-token targets).
TWO_QUESTIONS_TASK_NAME = "keyvalue-two-questions"
SHORTCUT_TASK_NAME = "keyvalue-shortcut"
HINT_TOKEN = "hint"
#: Key layouts of :func:`make_keyvalue_dataset` (see the module docstring).
LAYOUTS = ("slotted", "random")
_PUNCT = ["=", ";", "?", HINT_TOKEN]
#: Mixed into the seed of the hint generator so it is independent of the pairs.
_HINT_STREAM = 0x5C


def _keys(n_keys: int) -> list[str]:
    return [f"k{i}" for i in range(n_keys)]


def _values(n_values: int) -> list[str]:
    return [f"v{i}" for i in range(n_values)]


def keyvalue_vocab(n_keys: int = 16, n_values: int = 16) -> list[str]:
    """The words used by the key-value tasks (no special tokens).

    ``k0 .. k{n_keys-1}``, ``v0 .. v{n_values-1}``, then ``= ; ? hint``. Pass it to
    :func:`attrib_mlops.demo.tiny.build_tiny_model`. The order is fixed, so token ids
    are stable for given sizes.
    """
    if n_keys < 1 or n_values < 1:
        raise ValueError("n_keys and n_values must be >= 1")
    return _keys(n_keys) + _values(n_values) + list(_PUNCT)


def make_keyvalue_dataset(
    n: int,
    *,
    n_pairs: int = 4,
    n_keys: int = 16,
    n_values: int = 16,
    seed: int = 0,
    shortcut: bool = False,
    hint_rate: float = 1.0,
    distractor_rate: float = 0.0,
    layout: str = "slotted",
):
    """``n`` key-value retrieval rows as a ``datasets.Dataset`` (deterministic).

    Columns: ``id`` (``"kv-<seed>-<index>"``), ``prompt``, ``target`` (answer with a
    leading space), ``answer``, ``ground_truth`` (``list[int]``: position of the asked
    key's value token in ``prompt.split()``), ``shortcut_position`` (``list[int]``:
    position of the hint's value token, empty if the row has no hint),
    ``hint_correct`` (whether the row has a hint equal to the answer) and ``task``
    (``"keyvalue"`` or ``"keyvalue-shortcut"``).

    ``shortcut=True``: every row gets ``hint vX ;`` before ``?``; ``vX`` is the answer
    with probability ``hint_rate``, else a random other value.
    ``distractor_rate`` (clean rows only): probability that a row gets a hint whose
    value is uniform over all values (noise). ``layout``: ``"slotted"`` (key ``k<i>``
    sits in slot ``i % n_pairs``) or ``"random"``; see the module docstring.
    """
    import datasets

    if n < 0:
        raise ValueError("n must be >= 0")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if not 1 <= n_pairs <= min(n_keys, n_values):
        raise ValueError(f"need 1 <= n_pairs <= min(n_keys, n_values), got n_pairs={n_pairs}")
    if not 0.0 <= hint_rate <= 1.0 or not 0.0 <= distractor_rate <= 1.0:
        raise ValueError("hint_rate and distractor_rate must be in [0, 1]")
    if shortcut and hint_rate < 1.0 and n_values < 2:
        raise ValueError("a wrong hint needs n_values >= 2")
    if shortcut and distractor_rate > 0:
        raise ValueError("distractor_rate applies to clean rows (shortcut=False) only")

    keys, values = _keys(n_keys), _values(n_values)
    rng = np.random.default_rng(seed)
    hint_rng = np.random.default_rng([_HINT_STREAM, seed])
    slots = np.arange(n_pairs)
    per_slot = (n_keys - slots + n_pairs - 1) // n_pairs  # keys available to each slot

    cols: dict[str, list] = {
        "id": [], "prompt": [], "target": [], "answer": [], "ground_truth": [],
        "shortcut_position": [], "hint_correct": [], "task": [],
    }
    for i in range(n):
        if layout == "slotted":  # slot s holds one of k<s>, k<s+P>, k<s+2P>, ...
            k_idx = slots + n_pairs * rng.integers(0, per_slot)
        else:
            k_idx = rng.choice(n_keys, size=n_pairs, replace=False)
        v_idx = rng.choice(n_values, size=n_pairs, replace=False)
        q = int(rng.integers(n_pairs))
        # The same hint draws for every row, whatever the flags: streams stay aligned.
        u_cue, u_distract = hint_rng.random(2)
        wrong = int(hint_rng.integers(max(n_values - 1, 1)))
        noise = int(hint_rng.integers(n_values))

        toks: list[str] = []
        for k, v in zip(k_idx, v_idx):
            toks += [keys[k], "=", values[v], ";"]
        answer = values[v_idx[q]]
        hint_val = None
        if shortcut:
            if u_cue < hint_rate:
                hint_val = answer
            else:  # uniform over the values other than the answer
                hint_val = values[wrong if wrong < v_idx[q] else wrong + 1]
        elif u_distract < distractor_rate:
            hint_val = values[noise]
        sc_pos: list[int] = []
        if hint_val is not None:
            sc_pos = [len(toks) + 1]
            toks += [HINT_TOKEN, hint_val, ";"]
        toks += ["?", keys[k_idx[q]]]

        cols["id"].append(f"kv-{seed}-{i}")
        cols["prompt"].append(" ".join(toks))
        cols["target"].append(" " + answer)
        cols["answer"].append(answer)
        cols["ground_truth"].append([4 * q + 2])
        cols["shortcut_position"].append(sc_pos)
        cols["hint_correct"].append(hint_val == answer)
        cols["task"].append(SHORTCUT_TASK_NAME if shortcut else TASK_NAME)

    seq = getattr(datasets, "List", None) or datasets.Sequence  # `List` since datasets 4
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "prompt": datasets.Value("string"),
            "target": datasets.Value("string"),
            "answer": datasets.Value("string"),
            "ground_truth": seq(datasets.Value("int64")),
            "shortcut_position": seq(datasets.Value("int64")),
            "hint_correct": datasets.Value("bool"),
            "task": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(cols, features=features)


def probe_set(
    n: int = 16,
    seed: int = 1234,
    shortcut: bool = False,
    *,
    n_pairs: int = 4,
    n_keys: int = 16,
    n_values: int = 16,
    hint_rate: float = 1.0,
    layout: str = "slotted",
):
    """A fixed probe set (held out: training data uses small seeds).

    ``shortcut=True`` gives the *same* prompts with a correct hint inserted, so clean
    and shortcut models reach equal accuracy while their attributions differ.
    ``hint_rate=0`` gives the same prompts with a *wrong* hint, which separates the
    two models by accuracy too.
    """
    return make_keyvalue_dataset(
        n, n_pairs=n_pairs, n_keys=n_keys, n_values=n_values, seed=seed,
        shortcut=shortcut, hint_rate=hint_rate, layout=layout,
    )


def two_question_rows(ds, n: int = 4):
    """Probe rows with multi-token targets: the first ``n`` rows of ``ds`` with a second question in the target.

    The target of row ``r`` is ``" <answer> ; ? <key> <value>"`` (five tokens): the answer to the row's
    question, then a second question about the next pair of the prompt (pair ``(q + 1) % n_pairs``) and its
    value. Each answer sits in exactly one prompt token, so a target column can be checked by eye (the
    column of ``<value>`` should point at that pair's value token, the first column at the asked one).
    ``ground_truth`` is empty: the alignment metrics rank whole-target importance, which mixes two answers
    here, so they stay on the single-token rows. The rows keep ``ds``'s columns (``datasets``
    can concatenate them); ``task`` is ``"keyvalue-two-questions"`` and ids end in ``-two``.

    Example:
        >>> row = two_question_rows(probe_set(2, shortcut=True), n=1)[0]
        >>> toks, tgt = row["prompt"].split(), row["target"].split()
        >>> len(tgt), tgt[0] == row["answer"], tgt[1:3]
        (5, True, [';', '?'])
        >>> toks[toks.index(tgt[3]) + 2] == tgt[4]     # the second answer is the asked key's value
        True
    """
    import datasets

    rows = []
    for row in ds.select(range(min(int(n), len(ds)))):
        toks = row["prompt"].split()
        n_pairs = toks.count("=")
        q = (int(row["ground_truth"][0]) - 2) // 4
        j = (q + 1) % n_pairs
        key, value = toks[4 * j], toks[4 * j + 2]
        rows.append({**row, "id": f"{row['id']}-two", "target": f" {row['answer']} ; ? {key} {value}",
                     "ground_truth": [], "task": TWO_QUESTIONS_TASK_NAME})
    return datasets.Dataset.from_list(rows, features=ds.features)
