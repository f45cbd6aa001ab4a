"""AT2 estimators in MLflow: log one as a model linked to its checkpoint, load it back by URI.

An estimator (:class:`~attrib_mlops.sources.at2.estimator.SourceEstimator`) is
logged as an MLflow *LoggedModel* of the run (``model_type``
``attrib-mlops/at2-source-estimator``) whose artifacts are the estimator folder
(``estimator.safetensors`` + ``estimator.json``, no pickle). The LoggedModel
carries:

* tags: ``attrib_mlops.kind=at2-source-estimator``, the ``base_model`` it was trained
  for, the ``checkpoint`` (path) and ``checkpoint_model_id`` (the checkpoint's own
  LoggedModel, e.g. from the callback), the training ``step``;
* params: architecture (``model_type``, ``n_layers``, ``n_heads``), ``n_examples``, ``n_masks``, ``seed``;
* metrics (logged on the run, linked to the model, at ``step``): the held-out quality,
  ``attrib/at2/<name>`` for ``lds``, ``lds_attention``, ``lds_surrogate``, ``pearson``,
  ``pearson_attention``, ``top1_agreement``, ``train_pearson`` and the top-k drops
  ``topk_drop_<k>``, ``topk_drop_<k>_attention``, ``topk_drop_<k>_surrogate``.

Its URI is ``models:/<model_id>``. Servers without the LoggedModel API (or
``as_logged_model=False``) get the folder as run artifacts under
``at2_estimators/<name>`` instead (URI ``runs:/<run_id>/at2_estimators/<name>``).
Either URI loads with :func:`load_estimator` or
``attrib_mlops.SourceEstimator.load(uri)``.

Example::

    from attrib_mlops.tracking.estimators import log_estimator, load_estimator
    logged = log_estimator(est, run_id=run.info.run_id, step=400, checkpoint="out/checkpoint-400")
    same = load_estimator(logged.uri)
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelLoadError

logger = logging.getLogger(__name__)

__all__ = [
    "MODEL_TYPE",
    "RUN_ARTIFACT_DIR",
    "LoggedEstimator",
    "log_estimator",
    "download_estimator",
    "load_estimator",
    "list_estimators",
    "EstimatorReading",
]

#: ``model_type`` of the LoggedModels holding AT2 estimators.
MODEL_TYPE = "attrib-mlops/at2-source-estimator"
#: Run-artifact folder used when the server has no LoggedModel API.
RUN_ARTIFACT_DIR = "at2_estimators"
#: Quality entries logged as metrics (``attrib/at2/<name>``).
QUALITY_METRICS = ("lds", "lds_attention", "lds_surrogate", "pearson", "pearson_attention", "pearson_surrogate",
                   "top1_agreement", "top1_agreement_attention", "train_pearson")
_TAG = "attrib_mlops."


@dataclass(frozen=True)
class LoggedEstimator:
    """Where an estimator was logged: ``uri`` loads it; ``model_id`` is None for run artifacts."""

    uri: str
    run_id: str
    name: str
    model_id: str | None = None
    step: int | None = None


def _client(tracking_uri: str | None):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _run_id(run_id: str | None) -> str:
    if run_id:
        return run_id
    import mlflow

    run = mlflow.active_run()
    if run is None:
        raise InputError("log_estimator needs run_id= or an active MLflow run (mlflow.start_run())")
    return run.info.run_id


def metric_name(name: str) -> str:
    """MLflow metric key of an estimator quality entry, e.g. ``attrib/at2/lds``."""
    return f"attrib/at2/{name}"


def log_estimator(
    estimator: Any,
    *,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    name: str | None = None,
    step: int | None = None,
    checkpoint: str | None = None,
    checkpoint_model_id: str | None = None,
    base_model: str | None = None,
    as_logged_model: bool = True,
) -> LoggedEstimator:
    """Log ``estimator`` to an MLflow run (see the module docstring); returns its URI.

    Args:
        estimator: a :class:`~attrib_mlops.sources.at2.estimator.SourceEstimator`.
        run_id: the run (default: the active run).
        tracking_uri: the tracking server (default: MLflow's current one).
        name: model name (default ``at2-estimator`` or ``at2-estimator-<step>``).
        step: training step the estimator was fitted at (metrics use it; default 0).
        checkpoint: path of the checkpoint it was trained for.
        checkpoint_model_id: the checkpoint's LoggedModel id (links the two).
        base_model: the model reference (default: the estimator's ``info["base_model"]``).
        as_logged_model: False logs plain run artifacts instead of a LoggedModel.
    """
    from mlflow.entities import Metric

    from ..sources.at2.estimator import SourceEstimator

    if not isinstance(estimator, SourceEstimator):
        raise InputError(f"log_estimator needs a SourceEstimator, got {type(estimator).__name__}")
    client = _client(tracking_uri)
    run_id = _run_id(run_id)
    name = name or (f"at2-estimator-{step}" if step is not None else "at2-estimator")
    base = base_model or estimator.info.get("base_model")
    arch = estimator.architecture
    tags = {f"{_TAG}kind": "at2-source-estimator", f"{_TAG}fingerprint": estimator.fingerprint()}
    for key, val in (("base_model", base), ("checkpoint", checkpoint), ("checkpoint_model_id", checkpoint_model_id),
                     ("step", step)):
        if val is not None:
            tags[f"{_TAG}{key}"] = str(val)
    params = {k: str(arch.get(k)) for k in ("model_type", "n_layers", "n_heads")}
    params.update({k: str(estimator.info[k]) for k in ("n_examples", "n_masks", "seed", "ablation")
                   if k in estimator.info})
    model_id = None
    with tempfile.TemporaryDirectory(prefix="at2-estimator-") as tmp:
        folder = estimator.save(Path(tmp) / name)
        if as_logged_model:
            try:
                run = client.get_run(run_id)
                lm = client.create_logged_model(experiment_id=run.info.experiment_id, name=name, source_run_id=run_id,
                                                tags=tags, params=params, model_type=MODEL_TYPE)
                model_id = lm.model_id
            except Exception as e:  # noqa: BLE001 - servers without the LoggedModel API
                logger.info("no LoggedModel API on this server (%s); logging the estimator as run artifacts", e)
        if model_id is not None:
            try:
                client.log_model_artifacts(model_id, str(folder))
            except Exception:
                client.finalize_logged_model(model_id, "FAILED")
                raise
            client.finalize_logged_model(model_id, "READY")
            uri = f"models:/{model_id}"
        else:
            client.log_artifacts(run_id, str(folder), artifact_path=f"{RUN_ARTIFACT_DIR}/{name}")
            client.set_tag(run_id, f"{_TAG}at2_estimator.{name}", str(step if step is not None else ""))
            uri = f"runs:/{run_id}/{RUN_ARTIFACT_DIR}/{name}"
    now = int(time.time() * 1000)
    kwargs = {"model_id": model_id} if model_id else {}
    metrics = [Metric(metric_name(key), v, now, int(step or 0), **kwargs) for key, v in quality_metrics(estimator)]
    if metrics:
        client.log_batch(run_id, metrics=metrics)
    return LoggedEstimator(uri=uri, run_id=run_id, name=name, model_id=model_id, step=step)


def quality_metrics(estimator: Any) -> list[tuple[str, float]]:
    """``(name, value)`` of the estimator's finite quality numbers; top-k drops as ``topk_drop_<k>``."""
    out = []
    for key, v in estimator.quality.items():
        if key in QUALITY_METRICS and isinstance(v, (int, float)) and v == v:  # NaN != NaN
            out.append((key, float(v)))
        elif key.startswith("topk_drop") and isinstance(v, dict):
            for k, d in v.items():
                if isinstance(d, (int, float)) and d == d:
                    scorer = key[len("topk_drop"):]  # "" or "_attention" / "_surrogate"
                    out.append((f"topk_drop_{k}{scorer}", float(d)))
    return out


def download_estimator(uri: str, dst: str | os.PathLike | None = None, *, tracking_uri: str | None = None) -> Path:
    """Download a logged estimator; returns the folder holding ``estimator.json``.

    ``tracking_uri`` names the server a ``models:/``/``runs:/`` URI is resolved on (default: MLflow's current one).
    """
    import mlflow

    from ..sources.at2.estimator import META_FILE

    dst = str(dst) if dst is not None else tempfile.mkdtemp(prefix="attrib-mlops-at2-")
    try:
        if tracking_uri and uri.startswith(("models:/", "runs:/")):
            local = _download_with_client(uri, dst, tracking_uri)
        else:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst)
    except Exception as e:  # noqa: BLE001 - mlflow raises many types
        raise ModelLoadError(f"could not download the AT2 estimator {uri!r} from MLflow: {e}") from e
    for root, _dirs, files in os.walk(local):
        if META_FILE in files:
            return Path(root)
    raise ModelLoadError(f"MLflow artifact {uri!r} holds no AT2 estimator ({META_FILE} not found)")


def _download_with_client(uri: str, dst: str, tracking_uri: str) -> str:
    """``models:/<id>`` / ``runs:/<run>/<path>`` resolved on ``tracking_uri`` (MLflow's own resolution of these
    schemes uses the process-wide tracking URI)."""
    import mlflow

    client = _client(tracking_uri)
    if uri.startswith("runs:/"):
        run_id, _, path = uri[len("runs:/"):].partition("/")
        return client.download_artifacts(run_id, path, dst)
    model_id = uri[len("models:/"):].strip("/")
    location = client.get_logged_model(model_id).artifact_location
    return mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=dst, tracking_uri=tracking_uri)


def load_estimator(uri: str, *, tracking_uri: str | None = None) -> Any:
    """The :class:`~attrib_mlops.sources.at2.estimator.SourceEstimator` logged at ``uri`` (on ``tracking_uri``)."""
    from ..sources.at2.estimator import SourceEstimator

    est = SourceEstimator.load(download_estimator(uri, tracking_uri=tracking_uri))
    est.info.setdefault("uri", uri)
    return est


def list_estimators(experiment_id: str, *, run_id: str | None = None, tracking_uri: str | None = None,
                    ) -> list[dict[str, Any]]:
    """Estimators logged as LoggedModels in an experiment (optionally one run), oldest step first.

    Each entry: ``uri``, ``model_id``, ``name``, ``run_id``, ``step``, ``checkpoint``,
    ``checkpoint_model_id``, ``base_model`` and ``params`` (architecture and training
    size). Load weights (e.g. for a layer x head heatmap across checkpoints) with
    :func:`load_estimator`.
    """
    client = _client(tracking_uri)
    out = []
    token = None
    while True:
        page = client.search_logged_models(experiment_ids=[str(experiment_id)],
                                           filter_string=f"model_type = '{MODEL_TYPE}'", page_token=token)
        for lm in page:
            if run_id and lm.source_run_id != run_id:
                continue
            tags = dict(lm.tags or {})
            step = tags.get(f"{_TAG}step")
            out.append({
                "uri": f"models:/{lm.model_id}",
                "model_id": lm.model_id,
                "name": lm.name,
                "run_id": lm.source_run_id,
                "step": int(step) if step not in (None, "") else None,
                "checkpoint": tags.get(f"{_TAG}checkpoint"),
                "checkpoint_model_id": tags.get(f"{_TAG}checkpoint_model_id"),
                "base_model": tags.get(f"{_TAG}base_model"),
                "params": dict(lm.params or {}),
            })
        token = getattr(page, "token", None)
        if not token:
            break
    out.sort(key=lambda e: (e["step"] is None, e["step"] or 0, e["name"]))
    return out


class EstimatorReading:
    """What :class:`~attrib_mlops.tracking.reader.AttributionReader` reads of AT2 estimators (mixin on its ``client``).

    Example:
        >>> reader = AttributionReader("sqlite:///mlflow.db")                       # doctest: +SKIP
        >>> entries = reader.estimators()                                            # doctest: +SKIP
        >>> reader.load_estimator(entries[0]["uri"]).weights.shape                   # doctest: +SKIP
        (2, 4)
    """

    client: Any

    def _tracking_uri(self) -> str | None:
        inner = getattr(self.client, "_tracking_client", None)
        return getattr(inner, "tracking_uri", None)

    def estimators(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Estimators logged as LoggedModels in every active experiment (or only those of ``run_id``).

        Entries as :func:`list_estimators`, plus ``experiment_id`` and ``run_name``; by run, oldest step first.
        """
        uri = self._tracking_uri()
        if run_id:
            exps = [self.client.get_run(run_id).info.experiment_id]
        else:
            exps = [e.experiment_id for e in self.client.search_experiments(max_results=1000)]
        out, names = [], {}
        for exp in exps:
            for entry in list_estimators(exp, run_id=run_id, tracking_uri=uri):
                rid = entry["run_id"]
                if rid and rid not in names:
                    try:
                        names[rid] = self.client.get_run(rid).info.run_name or rid[:8]
                    except Exception:  # noqa: BLE001 - a deleted run: its id is a fine label
                        names[rid] = rid[:8]
                out.append(dict(entry, experiment_id=str(exp), run_name=names.get(rid, "")))
        out.sort(key=lambda e: (e["run_id"] or "", e["step"] is None, e["step"] or 0, e["name"]))
        return out

    def load_estimator(self, uri: str) -> Any:
        """The estimator logged at ``uri`` (``models:/<id>`` or ``runs:/...``), read from this reader's server."""
        return load_estimator(uri, tracking_uri=self._tracking_uri())
