"""Synthetic training sets with known training-data attribution ground truth.

Canaries (:func:`make_canary_dataset`)
--------------------------------------
Key-value rows (see :mod:`attrib_mlops.demo.tasks`) plus a few *canary* rows
that ask for a key which is never in the context, ``kc``, and answer ``vc``::

    k4 = v9 ; k1 = v3 ; k14 = v0 ; k7 = v12 ; ? kc        target: " vc"

Nothing in the prompt tells the answer, so a model can only produce ``vc``
after ``? kc`` by having memorised the canary rows, and the query
:func:`canary_query` (a held-out context, the same question) depends on them
and on nothing else. A faithful training-data attribution puts the canaries
on top: recall@k of the canaries against about k/N for a random ranking.

Flipped labels (:func:`make_flipped_dataset`)
---------------------------------------------
Rows ``k2 ; k9 ? k5`` -> `` v<pi(5)>`` with a fixed permutation ``pi`` of the
values (the fillers before ``?`` are random other keys, so rows differ). A
fraction of the rows get a wrong value on purpose (``flipped=True``). The
model learns the majority mapping; the flipped rows keep a high loss and a
large gradient, so their self-influence ranks them high.

Determinism: every function draws from ``numpy.random.default_rng(seed)``.

Example:
    >>> ds, canaries = make_canary_dataset(20, n_canaries=2, seed=0)
    >>> len(ds), len(canaries), ds[canaries[0]]["target"]
    (22, 2, ' vc')
"""

from __future__ import annotations

import numpy as np

from .tasks import keyvalue_vocab, make_keyvalue_dataset

__all__ = ["CANARY_KEY", "CANARY_VALUE", "canary_vocab", "make_canary_dataset", "canary_query",
           "make_flipped_dataset", "flip_permutation"]

CANARY_KEY = "kc"
CANARY_VALUE = "vc"


def canary_vocab(n_keys: int = 16, n_values: int = 16) -> list[str]:
    """The key-value vocabulary plus the canary key and value."""
    return keyvalue_vocab(n_keys, n_values) + [CANARY_KEY, CANARY_VALUE]


def _canary_prompt(rng: np.random.Generator, n_pairs: int, n_keys: int, n_values: int) -> str:
    keys = rng.choice(n_keys, size=n_pairs, replace=False)
    values = rng.choice(n_values, size=n_pairs, replace=False)
    toks: list[str] = []
    for k, v in zip(keys, values):
        toks += [f"k{k}", "=", f"v{v}", ";"]
    return " ".join(toks + ["?", CANARY_KEY])


def make_canary_dataset(n: int, *, n_canaries: int = 8, n_pairs: int = 4, n_keys: int = 16, n_values: int = 16,
                        seed: int = 0):
    """``n`` key-value rows plus ``n_canaries`` canary rows, shuffled.

    Returns ``(dataset, canary_positions)``: a ``datasets.Dataset`` with columns
    ``id``, ``prompt``, ``target``, ``canary`` (bool), and the row positions of
    the canaries. Ids are ``kv-<seed>-<i>`` and ``canary-<j>``.
    """
    import datasets

    base = make_keyvalue_dataset(n, n_pairs=n_pairs, n_keys=n_keys, n_values=n_values, seed=seed)
    rng = np.random.default_rng([0xCA, seed])
    rows = [{"id": r["id"], "prompt": r["prompt"], "target": r["target"], "canary": False} for r in base]
    rows += [{"id": f"canary-{j}", "prompt": _canary_prompt(rng, n_pairs, n_keys, n_values),
              "target": " " + CANARY_VALUE, "canary": True} for j in range(n_canaries)]
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    ds = datasets.Dataset.from_list(rows)
    return ds, [i for i, r in enumerate(rows) if r["canary"]]


def canary_query(seed: int = 999, *, n_pairs: int = 4, n_keys: int = 16, n_values: int = 16) -> dict[str, str]:
    """A held-out prompt asking the canary key: ``{"prompt", "target"}`` (target ``" vc"``)."""
    rng = np.random.default_rng([0xC0, seed])
    return {"prompt": _canary_prompt(rng, n_pairs, n_keys, n_values), "target": " " + CANARY_VALUE}


def flip_permutation(n_keys: int = 16, seed: int = 0) -> list[int]:
    """The fixed key -> value mapping of :func:`make_flipped_dataset`."""
    return [int(v) for v in np.random.default_rng([0xF1, seed]).permutation(n_keys)]


def make_flipped_dataset(n: int, *, flip_rate: float = 0.05, n_keys: int = 16, n_fillers: int = 2, seed: int = 0):
    """``n`` rows ``<fillers> ? k<i>`` -> `` v<pi(i)>``, a ``flip_rate`` share of them with a wrong value.

    Returns a ``datasets.Dataset`` with columns ``id``, ``prompt``, ``target``,
    ``flipped`` (bool). Use :func:`attrib_mlops.demo.tasks.keyvalue_vocab` with
    ``n_keys`` keys and values for the tokenizer.
    """
    import datasets

    if not 0.0 <= flip_rate < 1.0:
        raise ValueError("flip_rate must be in [0, 1)")
    pi = flip_permutation(n_keys, seed)
    rng = np.random.default_rng([0xF2, seed])
    n_flip = int(round(flip_rate * n))
    flipped = set(rng.choice(n, size=n_flip, replace=False).tolist()) if n_flip else set()
    rows = []
    for i in range(n):
        key = int(rng.integers(n_keys))
        others = [k for k in range(n_keys) if k != key]
        fillers = rng.choice(others, size=n_fillers, replace=False)
        value = pi[key]
        if i in flipped:
            wrong = int(rng.integers(n_keys - 1))
            value = wrong if wrong < value else wrong + 1
        prompt = " ".join([f"k{f}" for f in fillers] + ["?", f"k{key}"])
        rows.append({"id": f"flip-{seed}-{i}", "prompt": prompt, "target": f" v{value}", "flipped": i in flipped})
    return datasets.Dataset.from_list(rows)
