"""Sequence classifiers: head detection, label names, text encoding and the batched forward.

Shared by the native classifier engine (:mod:`.classifier`) and the Captum
engine (:mod:`.captum_engine`). The conventions:

* **Head.** :func:`model_head` tells a sequence classifier (class name
  ``*ForSequenceClassification``) from a generative LM; any other transformers
  model (a bare ``BertModel``, a token classifier, ...) is refused with
  :class:`~attrib_mlops.errors.UnsupportedModelError` naming the supported heads.
* **Labels.** :func:`label_names` reads ``config.id2label``; a config without
  one, or with only the default ``LABEL_<i>`` names, falls back to the class
  indices (``"0"``, ``"1"``...) and results say so in ``info["label_names"]``.
  :func:`resolve_label` accepts a name, an index, a digit string or
  ``LABEL_<i>``; an unknown label raises an error listing the labels.
* **Padding.** Encoder classifiers (BERT, RoBERTa, DistilBERT: they pool the
  first token) are right-padded. Decoder classifiers (GPT-2, Llama...: they pool
  the last non-pad token, which transformers cannot find from ``inputs_embeds``)
  are left-padded with explicit ``position_ids``, so the last position is always
  the last real token and positions are those of the unpadded text. The first
  time a model is seen, the batched route is checked against the model's own
  ``input_ids`` forward on a padded sample; if they differ the engine falls back
  to one sample per forward (exact for any pooling) and says so in a warning.
* **Special tokens** ([CLS], [SEP], <s>...) are kept as rows and flagged in
  ``info["special_tokens_mask"]``; the ``unk`` baseline keeps them as they are
  (every other token becomes the unknown token), like the Captum BERT tutorial.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import ContextLengthError, InputError, UnsupportedModelError
from ..options import AttributeOptions
from .native_kernels import token_baseline
from .prep import context_limit

logger = logging.getLogger(__name__)

__all__ = [
    "SUPPORTED_HEADS",
    "ClassifierSample",
    "ClassifierBatch",
    "ClassifierForward",
    "model_head",
    "is_sequence_classifier",
    "label_names",
    "resolve_label",
    "normalize_label_targets",
    "encode_texts",
    "classifier_guard",
    "baseline_embeddings",
    "pooling_of",
    "model_kind",
]

SUPPORTED_HEADS = (
    "causal LM (*ForCausalLM, *LMHeadModel), encoder-decoder LM (*ForConditionalGeneration) "
    "and sequence classification (*ForSequenceClassification)"
)
ALL_LABELS = ("*", "all")


# ------------------------------------------------------------------ head
def is_sequence_classifier(model: Any) -> bool:
    """True for a loaded ``*ForSequenceClassification`` model (PEFT wrappers included)."""
    return type(model).__name__.endswith("ForSequenceClassification")


def model_kind(model: Any) -> str:
    """The method registry's model kind of a loaded model: ``"classifier"`` or ``"causal_lm"``."""
    from .registry import CAUSAL_LM, CLASSIFIER

    return CLASSIFIER if is_sequence_classifier(model) else CAUSAL_LM


def model_head(model: Any) -> str:
    """``"sequence_classification"`` or ``"generative"`` (causal or encoder-decoder LM).

    Raises:
        UnsupportedModelError: a transformers model that neither generates nor
            classifies sequences (e.g. a bare ``BertModel``).

    Example:
        >>> from transformers import BertConfig, BertForSequenceClassification
        >>> cfg = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        ...                  intermediate_size=8)
        >>> model_head(BertForSequenceClassification(cfg))
        'sequence_classification'
    """
    if is_sequence_classifier(model):
        return "sequence_classification"
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover - transformers is a core dependency
        return "generative"
    if isinstance(model, PreTrainedModel):
        can = getattr(model, "can_generate", None)
        if callable(can) and not can():
            raise UnsupportedModelError(
                f"{type(model).__name__} has no head attrib-mlops can attribute; supported heads: {SUPPORTED_HEADS}. "
                "Load the model with AutoModelForCausalLM or AutoModelForSequenceClassification."
            )
    return "generative"


def pooling_of(model: Any) -> str:
    """``"first"`` for encoder classifiers (masked-LM families), ``"last"`` for decoder classifiers."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return "first" if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "last"


# ---------------------------------------------------------------- labels
def label_names(model: Any) -> tuple[list[str], bool]:
    """``(names, from_config)``: label names by class index, and whether they came from ``id2label``.

    A config with no ``id2label`` or only transformers' default ``LABEL_<i>``
    names gives the indices as names (``from_config`` False).
    """
    cfg = getattr(model, "config", None)
    id2label = dict(getattr(cfg, "id2label", None) or {})
    n = int(getattr(cfg, "num_labels", 0) or len(id2label))
    if n < 1:
        raise UnsupportedModelError(f"{type(model).__name__} has no classes (config.num_labels is {n})")
    names = []
    for i in range(n):
        v = id2label.get(i, id2label.get(str(i)))
        names.append(None if v is None else str(v))
    if all(v is None or v == f"LABEL_{i}" for i, v in enumerate(names)):
        return [str(i) for i in range(n)], False
    return [v if v is not None else str(i) for i, v in enumerate(names)], True


def _listing(names: Sequence[str]) -> str:
    return ", ".join(f"{i}={n!r}" for i, n in enumerate(names))


def resolve_label(spec: Any, names: Sequence[str]) -> int:
    """Class index of a label given by name, index, digit string or ``LABEL_<i>``.

    Raises:
        InputError: no such label; the message lists the model's labels.

    Example:
        >>> resolve_label("positive", ["negative", "positive"]), resolve_label(0, ["negative", "positive"])
        (1, 0)
    """
    n = len(names)
    if isinstance(spec, (bool, np.bool_)):
        raise InputError(f"label {spec!r} is a bool; give a label name or index ({_listing(names)})")
    if isinstance(spec, (int, np.integer)):
        if 0 <= int(spec) < n:
            return int(spec)
        raise InputError(f"label index {int(spec)} is out of range; the model's labels are {_listing(names)}")
    if isinstance(spec, str):
        if spec in names:
            return list(names).index(spec)
        s = spec.strip()
        if s.isdigit() and int(s) < n:
            return int(s)
        if s.startswith("LABEL_") and s[6:].isdigit() and int(s[6:]) < n:
            return int(s[6:])
        raise InputError(f"unknown label {spec!r}; the model's labels are {_listing(names)}")
    raise InputError(f"a label must be a name or an index, got {type(spec).__name__} {spec!r}")


def normalize_label_targets(targets: Any, n_prompts: int, names: Sequence[str]) -> list[list[int] | None]:
    """Per prompt: the class indices to attribute, or None for the predicted class.

    ``targets`` is None (predicted class for every prompt), one label (used for
    every prompt), ``"*"``/``"all"`` (every class), or a list with one entry per
    prompt, each None, a label, a list of labels or ``"*"``.
    """
    if targets is None:
        return [None] * n_prompts

    def one(t: Any) -> list[int] | None:
        if t is None:
            return None
        if isinstance(t, str) and t in ALL_LABELS and t not in names:
            return list(range(len(names)))
        if isinstance(t, (list, tuple)):
            if not t:
                raise InputError("an empty list of labels; give at least one label or None (predicted class)")
            out = [resolve_label(x, names) for x in t]
            if len(set(out)) != len(out):
                raise InputError(f"labels {list(t)!r} name the same class twice")
            return out
        return [resolve_label(t, names)]

    if isinstance(targets, (str, int, np.integer)):
        return [one(targets)] * n_prompts
    items = list(targets)
    if len(items) != n_prompts:
        raise InputError(
            f"got {n_prompts} texts but {len(items)} labels; give one label (or list of labels) per text, "
            "a single label for all, or targets=None for the predicted class"
        )
    return [one(t) for t in items]


# -------------------------------------------------------------- encoding
@dataclass
class ClassifierSample:
    """One tokenised text: ids (special tokens included) and what results need to describe them."""

    ids: list[int]
    text: str
    sample_id: str | None = None
    special: list[bool] = field(default_factory=list)
    word_ids: list[int | None] | None = None
    offsets: list[tuple[int, int]] | None = None
    labels: list[int] | None = None  # None = the predicted class
    truncated: int = 0


def _max_len(model: Any, tokenizer: Any) -> int | None:
    lim = context_limit(model)
    tml = getattr(tokenizer, "model_max_length", None)
    if isinstance(tml, int) and 0 < tml < 10**6:
        lim = tml if lim is None else min(lim, tml)
    return lim


def encode_texts(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[list[int] | None],
    *,
    truncate: bool = False,
    sample_ids: Sequence[str | None] | None = None,
) -> list[ClassifierSample]:
    """Tokenise each text with its special tokens, as the model saw it in training.

    Raises:
        InputError: an empty text.
        ContextLengthError: a text longer than the model's context when ``truncate`` is off
            (with ``truncate=True`` the end is cut, special tokens kept).
    """
    limit = _max_len(model, tokenizer)
    ids_list = list(sample_ids) if sample_ids is not None else [None] * len(texts)
    fast = bool(getattr(tokenizer, "is_fast", False))
    out = []
    for k, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"text {k} is empty or not a string; every sample needs a non-empty text")
        kw: dict[str, Any] = {"add_special_tokens": True, "return_special_tokens_mask": True}
        if fast:
            kw["return_offsets_mapping"] = True
        enc = tokenizer(text, **kw)
        truncated = 0
        if limit is not None and len(enc["input_ids"]) > limit:
            if not truncate:
                raise ContextLengthError(
                    f"text {k} is {len(enc['input_ids'])} tokens but the model's context is {limit}. "
                    "Shorten it, or pass truncate=True to cut its end."
                )
            full = len(enc["input_ids"])
            enc = tokenizer(text, truncation=True, max_length=limit, **kw)
            truncated = full - len(enc["input_ids"])
        ids = list(enc["input_ids"])
        special = [bool(s) for s in enc.get("special_tokens_mask", [0] * len(ids))]
        word_ids = list(enc.word_ids()) if fast else None
        offsets = [tuple(o) for o in enc["offset_mapping"]] if fast else None
        out.append(ClassifierSample(ids, text, ids_list[k], special, word_ids, offsets, labels[k], truncated))
    return out


# --------------------------------------------------------------- batches
class ClassifierBatch:
    """Padded samples: right padding for encoders, left padding (+ position ids) for decoders."""

    def __init__(self, samples: list[ClassifierSample], pad_id: int, device: torch.device, left: bool):
        self.samples = samples
        self.left = left
        self.lengths = [len(s.ids) for s in samples]
        L = max(self.lengths)
        N = len(samples)
        ids = torch.full((N, L), pad_id, dtype=torch.long)
        mask = torch.zeros((N, L), dtype=torch.long)
        pos = torch.zeros((N, L), dtype=torch.long)
        special = torch.zeros((N, L), dtype=torch.bool)
        self.offset = [L - n if left else 0 for n in self.lengths]
        for b, s in enumerate(samples):
            o, n = self.offset[b], self.lengths[b]
            ids[b, o : o + n] = torch.tensor(s.ids)
            mask[b, o : o + n] = 1
            pos[b, o : o + n] = torch.arange(n)
            special[b, o : o + n] = torch.tensor(s.special, dtype=torch.bool) if s.special else False
        self.ids, self.mask, self.pos = ids.to(device), mask.to(device), pos.to(device)
        self.special = special.to(device)
        self.L, self.N = L, N

    def rows(self, b: int) -> slice:
        """Positions of sample ``b``'s real tokens."""
        return slice(self.offset[b], self.offset[b] + self.lengths[b])

    def pooled_position(self, pooling: str) -> torch.Tensor:
        """[N] query position the classifier pools (first real token, or the last one)."""
        if pooling == "first":
            return torch.tensor(self.offset, device=self.ids.device)
        return torch.tensor([o + n - 1 for o, n in zip(self.offset, self.lengths)], device=self.ids.device)

    def columns(self, preds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
        """``(cols [N, K], valid [N, K], per-sample class lists)``; None labels -> the predicted class."""
        per = [s.labels if s.labels is not None else [int(preds[b])] for b, s in enumerate(self.samples)]
        K = max(len(c) for c in per)
        cols = torch.zeros((self.N, K), dtype=torch.long)
        valid = torch.zeros((self.N, K), dtype=torch.bool)
        for b, c in enumerate(per):
            cols[b, : len(c)] = torch.tensor(c)
            valid[b, : len(c)] = True
        return cols.to(self.ids.device), valid.to(self.ids.device), per


class ClassifierForward:
    """Float32 class logits from input embeddings (position ids passed for left-padded decoders)."""

    def __init__(self, model: Any, left: bool):
        self.model = model
        self.left = left

    def __call__(self, x: torch.Tensor, mask: torch.Tensor | None, pos: torch.Tensor, **kw: Any) -> torch.Tensor:
        """Logits; ``mask`` None = no padding."""
        return self.outputs(x, mask, pos, **kw).logits.float()

    def outputs(self, x: torch.Tensor, mask: torch.Tensor | None, pos: torch.Tensor, **kw: Any) -> Any:
        args: dict[str, Any] = {"inputs_embeds": x, "attention_mask": mask}
        if self.left:
            args["position_ids"] = pos
        return self.model(**args, **kw)


@contextlib.contextmanager
def classifier_guard(model: Any, tokenizer: Any) -> Iterator[int]:
    """Yield the pad id to use; a decoder classifier without ``config.pad_token_id`` gets one for the duration.

    transformers refuses batches > 1 when ``pad_token_id`` is None, even with
    ``inputs_embeds`` (where it pools the last position, which left padding
    makes the last real token). The config is restored afterwards.
    """
    cfg = model.config
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    old = getattr(cfg, "pad_token_id", None)
    set_it = old is None
    if set_it:
        cfg.pad_token_id = int(pad)
    # the model's "will not detect padding tokens in inputs_embeds" warning does not apply: we left-pad
    hf_logger = logging.getLogger(type(model).__module__)
    level = hf_logger.level
    hf_logger.setLevel(logging.ERROR)
    try:
        yield int(pad)
    finally:
        hf_logger.setLevel(level)
        if set_it:
            cfg.pad_token_id = old


_BATCH_OK: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def batching_is_exact(model: Any, fwd: ClassifierForward, sample: ClassifierSample, pad_id: int,
                      device: torch.device) -> bool:
    """Does a padded batch give the logits of the model's own ``input_ids`` forward? (cached per model)."""
    ok = _BATCH_OK.get(model)
    if ok is not None:
        return ok
    limit = context_limit(model)
    keep = len(sample.ids) if limit is None else max(1, min(len(sample.ids), limit - 8))
    short = ClassifierSample(sample.ids[:keep], sample.text, special=sample.special[:keep])
    # a longer companion makes the sample padded (3 extra tokens, inside the context)
    longer = ClassifierSample(short.ids + short.ids[:3], sample.text, special=short.special + short.special[:3])
    sample = short
    batch = ClassifierBatch([sample, longer], pad_id, device, fwd.left)
    with torch.no_grad():
        emb = model.get_input_embeddings()(batch.ids)
        got = fwd(emb, batch.mask, batch.pos)[0]
        ids = torch.tensor([sample.ids], device=device)
        ref = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()[0]
    tol = 1e-4 if ref.dtype == torch.float32 and emb.dtype == torch.float32 else 2e-2
    ok = bool(torch.allclose(got, ref, rtol=tol, atol=tol * (float(ref.abs().max()) + 1.0)))
    if not ok:
        logger.warning(
            "%s: padded batches change its logits (pooling this engine does not know); attributing one sample "
            "per forward pass instead", type(model).__name__,
        )
    _BATCH_OK[model] = ok
    return ok


def baseline_embeddings(model: Any, tokenizer: Any, batch: ClassifierBatch, x0: torch.Tensor,
                        options: AttributeOptions) -> torch.Tensor:
    """Reference input: ``zeros``, or ``unk`` = the unknown token's embedding at every non-special position."""
    return token_baseline(model, tokenizer, batch.ids, batch.special | (batch.mask == 0), x0, options)
