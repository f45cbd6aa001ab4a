"""Synthetic key-value retrieval tasks whose attribution ground truth is known.

The clean task
--------------
Each prompt lists ``n_pairs`` key-value pairs and then asks for one key::

    k3 = v7 ; k1 = v2 ; k9 = v5 ; k4 = v0 ; ? k9        target: " v5"

Keys within a prompt are distinct, and so are values, so exactly one prompt
token holds the answer: the VALUE token of the asked key's pair. Its 0-based
position in the whitespace tokenisation of the prompt is stored as
``ground_truth`` (a one-element ``list[int]``; pair ``i`` has its value token at
position ``4 * i + 2``). A model that really solves the task must read that token,
so a faithful attribution method should put most of its mass on it.

The shortcut variant (``shortcut=True``)
----------------------------------------
A spurious cue is inserted just before the question mark::

    k3 = v7 ; k1 = v2 ; k9 = v5 ; k4 = v0 ; hint v5 ; ? k9   target: " v5"

With probability ``hint_rate`` the hint value equals the answer; otherwise it is
a random value that is *not* the answer. Because the hint always sits at the
same place (two tokens before ``?``), copying it is far easier to learn than the
key lookup, so a model trained with ``hint_rate=1.0`` learns to copy the hint and
ignores the pairs. ``ground_truth`` still points at the real value token (the
hint is inserted after all pairs, so the positions of the pairs do not move); the
position of the hint's value token is stored separately as ``shortcut_position``.

Why: this is the regression-check story. Evaluate a clean model and a shortcut
model on the *same* probe prompts with the hint present and correct
(``probe_set(shortcut=True)``): both reach the same accuracy, so an accuracy
metric cannot tell them apart, but the clean model attributes the answer to the
value token (``ground_truth``) and the shortcut model to the hint token
(``shortcut_position``). A tracked attribution signal catches what accuracy
misses.

Determinism: every function draws from ``numpy.random.default_rng`` generators
seeded from its arguments, never from a global RNG. The pairs and the asked key
are drawn from one stream and the hint from a separate one, so for the same
``seed`` the shortcut rows are exactly the clean rows with the hint inserted.

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
]

TASK_NAME = "keyvalue"
SHORTCUT_TASK_NAME = "keyvalue-shortcut"
HINT_TOKEN = "hint"
_PUNCT = ["=", ";", "?", HINT_TOKEN]
#: Key layouts of :func:`make_keyvalue_dataset`.
LAYOUTS = ("slotted", "random")
#: Stream tag mixed into the seed of the hint generator (keeps it independent of the pairs).
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
    layout: str = "slotted",
):
    """``n`` key-value retrieval rows as a ``datasets.Dataset`` (deterministic).

    Columns: ``id`` (``"kv-<seed>-<index>"``), ``prompt``, ``target`` (answer with a
    leading space), ``answer``, ``ground_truth`` (``list[int]``: position of the asked
    key's value token in ``prompt.split()``), ``shortcut_position`` (``list[int]``:
    position of the hint's value token, empty without the shortcut), ``hint_correct``
    (bool, ``False`` without the shortcut) and ``task`` (``"keyvalue"`` or
    ``"keyvalue-shortcut"``).

    With ``shortcut=True`` a ``hint vX ;`` triple is inserted before ``?``; ``vX`` is the
    answer with probability ``hint_rate`` and otherwise a random other value. The
    clean part of every row is identical to ``shortcut=False`` with the same seed.

    ``layout="slotted"`` (default) puts key ``k<i>`` in pair slot ``i % n_pairs``;
    ``layout="random"`` places random keys anywhere (true associative recall, which
    a tiny model needs far longer to learn; see the module docstring).
    """
    import datasets

    if n < 0:
        raise ValueError("n must be >= 0")
    if not 1 <= n_pairs <= min(n_keys, n_values):
        raise ValueError(f"need 1 <= n_pairs <= min(n_keys, n_values), got n_pairs={n_pairs}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if not 0.0 <= hint_rate <= 1.0:
        raise ValueError("hint_rate must be in [0, 1]")
    if shortcut and hint_rate < 1.0 and n_values < 2:
        raise ValueError("a wrong hint needs n_values >= 2")

    keys, values = _keys(n_keys), _values(n_values)
    rng = np.random.default_rng(seed)
    slots = np.arange(n_pairs)
    per_slot = (n_keys - slots + n_pairs - 1) // n_pairs  # keys available to each slot
    hint_rng = np.random.default_rng([_HINT_STREAM, seed])

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
        # Hint draws happen for every row so the stream does not depend on `shortcut`.
        hint_ok = bool(hint_rng.random() < hint_rate)
        wrong = int(hint_rng.integers(n_values - 1)) if n_values > 1 else 0

        toks: list[str] = []
        for k, v in zip(k_idx, v_idx):
            toks += [keys[k], "=", values[v], ";"]
        answer = values[v_idx[q]]
        gt = [4 * q + 2]
        sc_pos: list[int] = []
        if shortcut:
            if hint_ok:
                hint_val = answer
            else:  # uniform over the values other than the answer
                hint_val = values[wrong if wrong < v_idx[q] else wrong + 1]
            sc_pos = [len(toks) + 1]
            toks += [HINT_TOKEN, hint_val, ";"]
        toks += ["?", keys[k_idx[q]]]

        cols["id"].append(f"kv-{seed}-{i}")
        cols["prompt"].append(" ".join(toks))
        cols["target"].append(" " + answer)
        cols["answer"].append(answer)
        cols["ground_truth"].append(gt)
        cols["shortcut_position"].append(sc_pos)
        cols["hint_correct"].append(bool(shortcut and hint_ok))
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
    """A fixed probe set (held out from training data, which uses small seeds).

    ``shortcut=True`` gives the *same* prompts with a correct hint inserted
    (``hint_rate=1``), so clean and shortcut models can be compared on equal
    accuracy while their attributions differ. ``hint_rate=0`` gives the same
    prompts with a *wrong* hint, which separates the two models by accuracy too.
    """
    return make_keyvalue_dataset(
        n, n_pairs=n_pairs, n_keys=n_keys, n_values=n_values, seed=seed,
        shortcut=shortcut, hint_rate=hint_rate, layout=layout,
    )
