"""Training examples: normalise a dataset, records or texts; tokenise; fingerprint.

A training example is identified by its ``id`` field (as a string), else by its
position. Its loss tokens are those of the target when the record has a prompt
and a target (the prompt is context only, as in supervised fine-tuning), all
tokens of ``text`` otherwise, or the ``labels`` of a pre-tokenised record
(``input_ids`` + ``labels`` with -100 on context tokens).

The training-set fingerprint hashes what the examples *are* (ids and texts, or
token ids for pre-tokenised records), not how they were loaded, so the same
rows from a ``datasets.Dataset`` or a list of dicts give the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attrib_mlops.errors import InputError

__all__ = ["TrainExample", "normalize_train_data", "tokenize_examples", "train_fingerprint", "load_train_file"]

TARGET_FIELDS = ("target", "completion", "response", "output", "answer")


@dataclass
class TrainExample:
    """One training example.

    Attributes:
        id: identifier (the record's id field, else its position).
        text: display text (prompt + target, or the text).
        prompt: the context part ("" for plain texts).
        target: the part the loss is on (the whole text for plain texts).
        input_ids / labels: token ids and labels (-100 = no loss) once tokenised.
    """

    id: str
    text: str
    prompt: str = ""
    target: str = ""
    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    pretokenized: bool = False

    @property
    def n_loss_tokens(self) -> int:
        return sum(1 for x in self.labels[1:] if x != -100)


def load_train_file(path: str | Path) -> Any:
    """Read training data from a ``.jsonl``/``.json``/``.csv``/``.parquet`` file or a saved ``datasets`` folder."""
    import datasets

    p = Path(path)
    if not p.exists():
        raise InputError(f"training data '{path}' does not exist; give a .jsonl, .json, .csv, .parquet file "
                         "or a folder written by datasets.Dataset.save_to_disk")
    if p.is_dir():
        try:
            return datasets.load_from_disk(str(p))
        except Exception as e:  # noqa: BLE001
            raise InputError(f"'{path}' is not a folder written by datasets.Dataset.save_to_disk: {e}") from e
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        with open(p, encoding="utf-8") as fh:
            try:
                return [json.loads(line) for line in fh if line.strip()]
            except json.JSONDecodeError as e:
                raise InputError(f"'{path}' is not valid JSON lines: {e}") from e
    if suffix == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"'{path}' is not valid JSON: {e}") from e
        if not isinstance(data, list):
            raise InputError(f"'{path}' must hold a JSON list of records or texts")
        return data
    if suffix in (".csv", ".parquet"):
        return datasets.Dataset.from_csv(str(p)) if suffix == ".csv" else datasets.Dataset.from_parquet(str(p))
    raise InputError(f"unsupported training data file '{path}': use .jsonl, .json, .csv or .parquet")


def _records(train_data: Any) -> list[Any]:
    if isinstance(train_data, (str, Path)) and Path(train_data).exists():
        train_data = load_train_file(train_data)
    if isinstance(train_data, str):
        raise InputError("train_data is a string; give a list of texts, a list of records, a datasets.Dataset "
                         "or the path of an existing file")
    try:
        import datasets

        if isinstance(train_data, datasets.Dataset):
            return list(train_data)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(train_data, Mapping):  # columns, as datasets' dataset[a:b] gives
        cols = {k: list(v) for k, v in train_data.items()}
        lengths = {len(v) for v in cols.values()}
        if len(lengths) != 1:
            raise InputError("train_data is a dict whose columns differ in length; give records or equal columns")
        n = lengths.pop()
        return [{k: v[i] for k, v in cols.items()} for i in range(n)]
    if not isinstance(train_data, Iterable):
        raise InputError(f"train_data must be a datasets.Dataset, records or texts, got {type(train_data).__name__}")
    return list(train_data)


def _pick(rec: Mapping[str, Any], given: str | None, candidates: Sequence[str]) -> str | None:
    if given is not None:
        return given if given in rec else None
    return next((c for c in candidates if c in rec), None)


def normalize_train_data(
    train_data: Any,
    *,
    id_field: str = "id",
    text_field: str | None = None,
    prompt_field: str | None = None,
    target_field: str | None = None,
) -> list[TrainExample]:
    """Turn a ``datasets.Dataset``, records, a dict of columns or plain texts into :class:`TrainExample` s.

    >>> [e.id for e in normalize_train_data(["a b", "c d"])]
    ['0', '1']
    >>> normalize_train_data([{"id": 7, "prompt": "a", "target": " b"}])[0].text
    'a b'
    """
    rows = _records(train_data)
    if not rows:
        raise InputError("train_data is empty; give at least one training example")
    out: list[TrainExample] = []
    for pos, rec in enumerate(rows):
        if isinstance(rec, str):
            out.append(TrainExample(str(pos), rec, "", rec))
            continue
        if not isinstance(rec, Mapping):
            raise InputError(f"training example {pos} is a {type(rec).__name__}; give texts or records (dicts)")
        rid = rec.get(id_field)
        rid = str(pos) if rid is None else str(rid)
        if "input_ids" in rec and text_field is None and prompt_field is None:
            ids = [int(x) for x in rec["input_ids"]]
            labels = [int(x) for x in rec["labels"]] if rec.get("labels") is not None else list(ids)
            if len(labels) != len(ids):
                raise InputError(f"training example {rid!r}: labels ({len(labels)}) and input_ids ({len(ids)}) differ in length")
            text = str(rec.get("text", ""))
            out.append(TrainExample(rid, text, "", text, ids, labels, pretokenized=True))
            continue
        p_field = _pick(rec, prompt_field, ("prompt",))
        t_field = _pick(rec, target_field, TARGET_FIELDS)
        if p_field is not None and t_field is not None:
            prompt, target = str(rec[p_field]), str(rec[t_field])
            out.append(TrainExample(rid, prompt + target, prompt, target))
            continue
        x_field = _pick(rec, text_field, ("text",))
        if x_field is None:
            raise InputError(
                f"training example {pos} has none of the fields the index needs (fields: {sorted(rec)}); give "
                "'text', or 'prompt' with one of " + ", ".join(repr(f) for f in TARGET_FIELDS)
                + ", or pre-tokenised 'input_ids' (+ 'labels'), or name them with text_field/prompt_field/target_field"
            )
        text = str(rec[x_field])
        out.append(TrainExample(rid, text, "", text))
    seen: dict[str, int] = {}
    for k, ex in enumerate(out):
        if ex.id in seen:
            raise InputError(f"training examples {seen[ex.id]} and {k} share the id {ex.id!r}; ids must be unique")
        seen[ex.id] = k
    return out


def tokenize_examples(examples: list[TrainExample], tokenizer: Any, *, max_length: int | None,
                      add_special_tokens: bool = True) -> int:
    """Fill ``input_ids``/``labels`` in place; returns how many examples were cut to ``max_length``.

    Prompt and target are tokenised separately and concatenated (the target
    without special tokens), as supervised fine-tuning pipelines do.
    """
    cut = 0
    for ex in examples:
        if not ex.pretokenized:
            if ex.prompt:
                p = list(tokenizer(ex.prompt, add_special_tokens=add_special_tokens)["input_ids"])
                t = list(tokenizer(ex.target, add_special_tokens=False)["input_ids"])
                ex.input_ids, ex.labels = p + t, [-100] * len(p) + t
            else:
                ids = list(tokenizer(ex.text, add_special_tokens=add_special_tokens)["input_ids"])
                ex.input_ids, ex.labels = ids, list(ids)
        if max_length is not None and len(ex.input_ids) > max_length:
            ex.input_ids, ex.labels = ex.input_ids[:max_length], ex.labels[:max_length]
            cut += 1
        if len(ex.input_ids) < 2 or ex.n_loss_tokens == 0:
            raise InputError(f"training example {ex.id!r} has no token to compute a loss on "
                             f"({len(ex.input_ids)} tokens); drop it or give it a non-empty target")
    return cut


def train_fingerprint(examples: list[TrainExample]) -> str:
    """sha256 over the ids and contents of the examples (order matters)."""
    h = hashlib.sha256()
    for ex in examples:
        if ex.pretokenized:
            item: Any = [ex.id, ex.input_ids, ex.labels]
        else:
            item = [ex.id, ex.prompt, ex.target]
        h.update(json.dumps(item, ensure_ascii=False).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()
