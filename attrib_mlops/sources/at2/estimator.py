"""The AT2 score estimator: one weight per attention layer and head, saved as safetensors + JSON.

A source's score is the weighted sum of its attention features
(:mod:`~attrib_mlops.sources.at2.features`),

    score[s] = sum_{l, h} w[l, h] * mean_t sum_{k in s} A_l[h, q_t, k],

and the predicted outcome of a keep/drop mask is the sum of the kept sources'
scores. ``w`` is trained (:mod:`~attrib_mlops.sources.at2.train`) so that
these predictions correlate with actual ablation outcomes; with uniform
weights ``1 / (layers x heads)`` it is the naive attention average AT2 is
compared with (:meth:`SourceEstimator.uniform`).

On disk an estimator is a folder with ``estimator.safetensors`` (the
``[layers, heads]`` float32 weights) and ``estimator.json`` (architecture it was
trained for, provenance, held-out quality); no pickle. ``load`` also takes an
MLflow URI (``models:/<id>``, ``runs:/<run>/<path>``), resolved by
:mod:`attrib_mlops.tracking.estimators`.

Example:
    >>> import numpy as np, tempfile
    >>> est = SourceEstimator.uniform(n_layers=2, n_heads=2)
    >>> est.scores(np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
    array([1., 0.])
    >>> d = tempfile.mkdtemp()
    >>> SourceEstimator.load(est.save(d)).weights.tolist()
    [[0.25, 0.25], [0.25, 0.25]]
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..._util import json_clean, now_iso
from ...errors import InputError, ModelLoadError

__all__ = ["FORMAT", "FORMAT_VERSION", "EstimatorMismatchError", "SourceEstimator"]

#: Value of ``format`` in ``estimator.json``.
FORMAT = "attrib-mlops/at2-source-estimator"
#: Version of the on-disk layout; bump on incompatible changes.
FORMAT_VERSION = 1
WEIGHTS_FILE = "estimator.safetensors"
META_FILE = "estimator.json"
_URI_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/", "dbfs:/", "s3://", "gs://", "wasbs://")


class EstimatorMismatchError(InputError):
    """An estimator trained for another architecture, layer count or head count."""


@dataclass
class SourceEstimator:
    """A trained AT2 estimator (or the uniform naive-attention one).

    Attributes:
        weights: ``[n_layers, n_heads]`` float32 weights (L1 norm 1 after training).
        architecture: what it was trained for: ``model_type``, ``architectures``,
            ``n_layers``, ``n_heads``.
        info: provenance and quality: ``kind`` (``"at2"`` or ``"uniform"``), ``base_model``,
            ``checkpoint``, ``n_examples``, ``n_masks``, ``seed``, ``options``, ``training``
            (loss curve summary), ``quality`` (held-out Pearson, LDS, top-1 agreement), ``created``.
    """

    weights: np.ndarray
    architecture: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float32)
        if w.ndim != 2 or w.size == 0:
            raise InputError(f"estimator weights must be a non-empty [n_layers, n_heads] array, got shape {w.shape}")
        self.weights = w
        arch = dict(self.architecture or {})
        arch["n_layers"], arch["n_heads"] = int(w.shape[0]), int(w.shape[1])
        self.architecture = arch

    # ------------------------------------------------------------ construction
    @classmethod
    def uniform(cls, n_layers: int, n_heads: int, architecture: dict[str, Any] | None = None) -> SourceEstimator:
        """Naive attention averaging: every layer and head weighs ``1 / (n_layers * n_heads)``."""
        F = int(n_layers) * int(n_heads)
        if F < 1:
            raise InputError(f"need at least one layer and head, got {n_layers} x {n_heads}")
        arch = dict(architecture or {})
        return cls(np.full((int(n_layers), int(n_heads)), 1.0 / F, dtype=np.float32), arch,
                   {"kind": "uniform", "created": now_iso()})

    @classmethod
    def uniform_for(cls, model: Any) -> SourceEstimator:
        """:meth:`uniform` for ``model``'s layers and heads (read from its config)."""
        from .features import architecture_of

        arch = architecture_of(model)
        if arch["n_layers"] is None or arch["n_heads"] is None:
            raise InputError(
                f"cannot read the number of layers and heads from {type(model).__name__}'s config; "
                "use SourceEstimator.uniform(n_layers, n_heads)"
            )
        return cls.uniform(arch["n_layers"], arch["n_heads"], arch)

    # ----------------------------------------------------------------- views
    @property
    def n_layers(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.weights.shape[1])

    @property
    def n_features(self) -> int:
        return int(self.weights.size)

    @property
    def kind(self) -> str:
        return str(self.info.get("kind", "at2"))

    @property
    def quality(self) -> dict[str, Any]:
        return dict(self.info.get("quality") or {})

    def fingerprint(self) -> str:
        """Short hash of the weights and architecture (identifies an estimator in provenance)."""
        h = hashlib.sha256(self.weights.tobytes())
        h.update(json.dumps(json_clean(self.architecture), sort_keys=True).encode())
        return h.hexdigest()[:16]

    def provenance(self) -> dict[str, Any]:
        """What a result computed with this estimator records in ``info["estimator"]``."""
        keep = ("kind", "base_model", "checkpoint", "uri", "n_examples", "n_masks", "seed", "created", "quality")
        out = {k: self.info[k] for k in keep if k in self.info}
        out.update(fingerprint=self.fingerprint(), architecture=dict(self.architecture))
        return json_clean(out)

    # ------------------------------------------------------------- scoring
    def scores(self, features: np.ndarray) -> np.ndarray:
        """Scores from features: ``[..., F]`` -> ``[...]`` (e.g. ``[S, F]`` -> ``[S]``)."""
        f = np.asarray(features, dtype=np.float64)
        if f.shape[-1] != self.n_features:
            raise EstimatorMismatchError(
                f"features have {f.shape[-1]} layer x head entries but the estimator has {self.n_layers} x "
                f"{self.n_heads} = {self.n_features} weights; use an estimator trained for this model"
            )
        return f @ self.weights.reshape(-1).astype(np.float64)

    def check_model(self, model: Any) -> None:
        """Raise :class:`EstimatorMismatchError` unless ``model`` has this estimator's architecture and shape."""
        from .features import architecture_of

        arch = architecture_of(model)
        mine = self.architecture
        problems = []
        if arch["n_layers"] is not None and arch["n_layers"] != self.n_layers:
            problems.append(f"{arch['n_layers']} layers (estimator: {self.n_layers})")
        if arch["n_heads"] is not None and arch["n_heads"] != self.n_heads:
            problems.append(f"{arch['n_heads']} heads (estimator: {self.n_heads})")
        want = mine.get("model_type")
        if want and arch["model_type"] != want:
            problems.append(f"model_type {arch['model_type']!r} (estimator: {want!r})")
        if problems:
            raise EstimatorMismatchError(
                f"this estimator was trained for a {want or 'model'} with {self.n_layers} layers x {self.n_heads} "
                f"heads, but the model has {', '.join(problems)}; train one for this model with "
                "attrib_mlops.train_source_estimator (or load the matching estimator)"
            )

    # ---------------------------------------------------------- save / load
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``estimator.safetensors`` and ``estimator.json`` into folder ``path``; returns it."""
        from safetensors.numpy import save_file

        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        save_file({"weights": np.ascontiguousarray(self.weights)}, str(d / WEIGHTS_FILE),
                  metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "architecture": self.architecture,
                "info": self.info, "fingerprint": self.fingerprint()}
        tmp = d / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(json_clean(meta), indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, d / META_FILE)
        return d

    @classmethod
    def load(cls, source: str | os.PathLike) -> SourceEstimator:
        """Load from a folder written by :meth:`save`, or an MLflow URI (``models:/...``, ``runs:/...``).

        Raises:
            ModelLoadError: nothing there, not an estimator folder, or a newer format.
        """
        ref = str(source)
        if ref.startswith(_URI_SCHEMES):
            from ...tracking.estimators import download_estimator  # MLflow lives in the tracking layer

            d = download_estimator(ref)
            est = cls.load(d)
            est.info.setdefault("uri", ref)
            return est
        d = Path(ref)
        if d.is_file() and d.name in (META_FILE, WEIGHTS_FILE):
            d = d.parent
        meta_path, w_path = d / META_FILE, d / WEIGHTS_FILE
        if not meta_path.is_file() or not w_path.is_file():
            raise ModelLoadError(
                f"{ref!r} is not an AT2 estimator folder (expected {META_FILE} and {WEIGHTS_FILE}); "
                "give a folder written by SourceEstimator.save or an MLflow URI of a logged estimator"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"could not read {meta_path}: {e}") from e
        if meta.get("format") != FORMAT:
            raise ModelLoadError(f"{meta_path} is not an AT2 estimator (format {meta.get('format')!r})")
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise ModelLoadError(
                f"estimator written with format version {meta['format_version']}; this attrib-mlops reads up to "
                f"{FORMAT_VERSION}. Upgrade attrib-mlops."
            )
        from safetensors.numpy import load_file

        try:
            weights = load_file(str(w_path))["weights"]
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise ModelLoadError(f"could not read the weights in {w_path}: {e}") from e
        est = cls(weights, dict(meta.get("architecture") or {}), dict(meta.get("info") or {}))
        saved = meta.get("fingerprint")
        if saved and saved != est.fingerprint():
            raise ModelLoadError(f"{d}: the weights do not match estimator.json (fingerprint {saved}); re-save it")
        return est

    def __repr__(self) -> str:
        return (
            f"SourceEstimator(kind={self.kind!r}, model_type={self.architecture.get('model_type')!r}, "
            f"layers={self.n_layers}, heads={self.n_heads}, n_examples={self.info.get('n_examples')})"
        )
