"""Small helpers shared across layers (no torch, no mlflow)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np

__all__ = [
    "now_iso",
    "json_clean",
    "dumps",
    "content_hash",
    "nanmean",
    "package_versions",
    "library_versions",
    "plain_text",
    "VERSIONED_PACKAGES",
]

#: The packages whose versions are recorded wherever provenance is written (result ``info``,
#: manifests, job summaries, cache keys, ``attrib-mlops version``).
VERSIONED_PACKAGES = ("attrib-mlops", "torch", "transformers", "inseq", "captum", "numpy", "pyarrow", "mlflow", "bokeh")


def now_iso() -> str:
    """UTC time, ISO 8601, seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def json_clean(x: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars/arrays -> Python values.

    >>> json_clean({"a": np.float32("nan"), "b": np.arange(2)})
    {'a': None, 'b': [0, 1]}
    """
    if isinstance(x, Mapping):
        return {str(k): json_clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return [json_clean(v) for v in x.tolist()]
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return f if math.isfinite(f) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions of ``names`` (``"not installed"`` when missing)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def library_versions() -> dict[str, str]:
    """Versions of :data:`VERSIONED_PACKAGES` (the one list of libraries recorded for provenance).

    >>> "attrib-mlops" in library_versions()
    True
    """
    return package_versions(VERSIONED_PACKAGES)


def dumps(obj: Any, *, canonical: bool = False) -> str:
    """Compact JSON text with UTF-8 kept as is.

    Args:
        obj: the value.
        canonical: ``True`` for the text that is hashed (fingerprints, cache keys): keys
            sorted, values JSON cannot hold written as ``str(value)``. ``False`` (default)
            for the text that is stored (manifests, summaries): NaN/inf become ``null``
            and numpy values plain Python ones (:func:`json_clean`), keys keep their order.

    >>> dumps({"b": float("nan"), "a": np.int64(1)})
    '{"b":null,"a":1}'
    >>> dumps({"b": 1, "a": "é"}, canonical=True)
    '{"a":"é","b":1}'
    """
    if canonical:
        return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return json.dumps(json_clean(obj), allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def content_hash(obj: Any) -> str:
    """sha256 hex digest of ``dumps(obj, canonical=True)``: the fingerprint of JSON-like content.

    >>> content_hash({"a": 1, "b": 2}) == content_hash({"b": 2, "a": 1}), len(content_hash([]))
    (True, 64)
    """
    return hashlib.sha256(dumps(obj, canonical=True).encode("utf-8")).hexdigest()


def nanmean(values: Iterable[Any], empty: Any = math.nan) -> Any:
    """Mean of the finite values (``None``, NaN and inf are left out); ``empty`` when there is none.

    >>> nanmean([1.0, None, float("nan"), 3.0]), nanmean([None], empty=None)
    (2.0, None)
    """
    a = np.asarray([v for v in values if v is not None], dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else empty


def plain_text(text: str) -> str:
    r"""``text`` as Bokeh shows it in titles and axis / legend labels, never as TeX.

    Bokeh renders any ``$$..$$``, ``\[..\]`` or ``\(..\)`` in such a string with MathJax (and
    loads MathJax from a CDN); a zero-width space inside each delimiter keeps the text as it reads.

    >>> plain_text("cost $$5$$") == "cost $\u200b$5$\u200b$"
    True
    """
    text = str(text)
    for delim in ("$$", "\\[", "\\]", "\\(", "\\)"):
        text = text.replace(delim, delim[0] + "\u200b" + delim[1:])
    return text
