"""Content hashing and the on-disk result cache of jobs.

A result is cached under the sha256 of everything that determines it (:func:`cache_key`):
the model's and tokenizer's content fingerprints, the method, engine and options, the
prompt and target, and the library versions. So an unchanged re-run computes nothing,
an interrupted job resumes where it stopped, and the same prompt in another job is
served from the cache.

Example:
    >>> cache = ResultCache("/tmp/attrib-cache-doc")                         # doctest: +SKIP
    >>> key = cache_key(model_fingerprint="ab", method="saliency", engine="native", options={},
    ...                 prompt="a b", target=" c", versions={})             # doctest: +SKIP
    >>> cache.get(key) is None                                              # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

from .._util import content_hash
from ..analysis.registry import TOKEN_MATRIX
from ..tracking.folder import atomic_write_text
from .kinds import task_kind

logger = logging.getLogger(__name__)

__all__ = ["CACHE_FORMAT", "model_fingerprint", "tokenizer_fingerprint", "cache_key", "ResultCache",
           "atomic_write_text"]

CACHE_FORMAT = 1
#: Models with at most this many parameters are fingerprinted from every parameter byte.
FULL_HASH_LIMIT = 1_000_000_000
#: Above the limit, about this many elements (spread over all tensors) are hashed.
SAMPLED_HASH_ELEMENTS = 1 << 24


def model_fingerprint(model: Any, *, full_hash_limit: int = FULL_HASH_LIMIT) -> str:
    """Content hash of a model: its class, config JSON and parameter/buffer bytes (blake2b).

    Path-like config entries (``_name_or_path``, ``transformers_version``) are left out, so
    the same weights loaded from different folders share a fingerprint; dtype changes the
    bytes and therefore the fingerprint.

    Models with at most ``full_hash_limit`` (1e9) parameters hash every byte (a few seconds
    per GB on a CPU). Larger models hash names, shapes and dtypes of every tensor plus a
    strided sample of about 16M elements spread over all tensors. Trade-off: hashing a
    multi-GB model fully on every job start would cost tens of seconds; the sample catches
    any retraining or fine-tuning that touches most tensors, but an edit confined to
    unsampled elements (e.g. a handful of rows changed by hand) would go unnoticed and
    serve stale cached results. Pass ``full_hash_limit=math.inf`` to always hash fully.
    """
    import torch

    h = hashlib.blake2b(digest_size=32)
    cfg = getattr(model, "config", None)
    cfg_d: dict[str, Any] = dict(cfg.to_dict()) if hasattr(cfg, "to_dict") else {}
    for k in ("_name_or_path", "transformers_version", "_commit_hash"):
        cfg_d.pop(k, None)
    header = {
        "class": type(model).__name__,
        "config": cfg_d,
        "attn_implementation": getattr(cfg, "_attn_implementation", None),
    }
    h.update(json.dumps(header, sort_keys=True, default=str).encode())
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    total = sum(t.numel() for _, t in model.named_parameters())
    full = total <= full_hash_limit
    h.update(b"full" if full else b"sampled")
    all_elems = max(1, sum(t.numel() for _, t in tensors))
    with torch.no_grad():
        for name, t in tensors:
            h.update(f"|{name}|{tuple(t.shape)}|{t.dtype}|".encode())
            if t.device.type == "meta":  # offloaded: only the layout is known
                continue
            flat = t.detach().reshape(-1)
            if not full:
                budget = max(4096, math.ceil(SAMPLED_HASH_ELEMENTS * flat.numel() / all_elems))
                if flat.numel() > budget:
                    flat = flat[:: math.ceil(flat.numel() / budget)]
            if flat.numel():
                h.update(flat.contiguous().cpu().view(torch.uint8).numpy())
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Content hash of a tokenizer (its full serialized form when it has a fast backend)."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    special = getattr(tokenizer, "special_tokens_map", {}) or {}
    h.update(json.dumps(special, sort_keys=True, default=str).encode())
    return h.hexdigest()


def cache_key(
    *,
    model_fingerprint: str,
    method: str,
    engine: str,
    options: dict[str, Any],
    prompt: str,
    target: str,
    versions: dict[str, str],
    tokenizer_fingerprint: str | None = None,
    kind: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """sha256 of everything that determines one result (``options`` = ``AttributeOptions.key_dict()``).

    The tokenizer fingerprint is part of the key too: the same model with another
    tokenizer gives other tokens. ``kind`` (an attribution kind other than the token
    matrix) and ``extra`` (that kind's further inputs) enter the key only when given, so
    token-matrix keys are those of earlier versions.
    """
    payload = {
        "format": CACHE_FORMAT,
        "model": model_fingerprint,
        "tokenizer": tokenizer_fingerprint,
        "method": method,
        "engine": engine,
        "options": options,
        "prompt": prompt,
        "target": target,
        "versions": versions,
    }
    if kind is not None:
        payload["kind"] = kind
    if extra:
        payload["extra"] = extra
    return content_hash(payload)


class ResultCache:
    """Content-keyed on-disk cache of attribution results (one JSON file each, no pickle).

    Layout: ``<dir>/results/<key[:2]>/<key>.json`` (a result in its kind's JSON form, e.g.
    ``AttributionResult.to_dict()`` with NaN as null), ``<dir>/generations/...`` (generated
    continuations) and ``<dir>/fingerprints/...`` (memoized model fingerprints of local
    folders). Every file is written atomically, so a reader never sees a half-written entry;
    a corrupt entry counts as a miss. The results of another attribution kind are stored
    with that kind's codec (:mod:`attrib_mlops.jobs.kinds`), under their own keys.
    """

    def __init__(self, directory: str | os.PathLike):
        self.dir = Path(directory)

    def _path(self, kind: str, key: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{16,128}", key):
            raise ValueError(f"cache keys are hex digests, got {key!r}")
        return self.dir / kind / key[:2] / f"{key}.json"

    def get_json(self, kind: str, key: str) -> Any | None:
        p = self._path(kind, key)
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as e:
            logger.warning("ignoring unreadable cache entry %s (%s); it will be recomputed", p, e)
            return None

    def put_json(self, kind: str, key: str, data: Any) -> Path:
        return atomic_write_text(self._path(kind, key), json.dumps(data, ensure_ascii=False, allow_nan=False))

    def get(self, key: str, kind: str = TOKEN_MATRIX) -> Any | None:
        """The cached result of ``key`` (decoded by the ``kind``'s codec), or None."""
        d = self.get_json("results", key)
        if d is None:
            return None
        try:
            return task_kind(kind).decode(d)
        except (KeyError, TypeError, ValueError) as e:
            logger.warning("ignoring malformed cached result %s (%s); it will be recomputed", key, e)
            return None

    def put(self, key: str, result: Any, kind: str = TOKEN_MATRIX) -> Path:
        return self.put_json("results", key, task_kind(kind).encode(result))

    def __contains__(self, key: str) -> bool:
        return self._path("results", key).exists()
