"""The ``attribution`` MLflow model evaluator (entry point group ``mlflow.model_evaluator``).

``mlflow.models.evaluate`` with ``evaluators=["attribution"]`` attributes a
model logged with ``mlflow.transformers`` (a sequence classifier or a causal
LM) on the evaluation data and logs the results to the evaluation run in the
attribution storage layout (:class:`~attrib_mlops.tracking.AttributionWriter`:
manifest, Parquet matrices, ``summary.json``, ``view.html``, ``attrib/...``
metrics), so the dashboard, the reader and the regression check see an
evaluation like any training step. For classifiers it also logs the probe
accuracy and, given rationale spans, the rationale alignment metrics
(:mod:`attrib_mlops.mlflow_plugin.metrics`).

Example (classifier)::

    mlflow.models.evaluate(
        model_info.model_uri, df, targets="label", model_type="classifier",
        evaluators=["attribution"],
        evaluator_config={"attribution": {"methods": ["saliency", "integrated_gradients"],
                                          "rationale_column": "rationale_spans"}},
    )

Example (causal LM, teacher-forced on a ``target`` column)::

    mlflow.models.evaluate(model_info.model_uri, df, model_type="text", evaluators=["attribution"],
                           evaluator_config={"attribution": {"target_column": "target"}})

``evaluator_config`` keys (all optional):

* ``methods`` (default ``["saliency"]``), ``engine`` (``auto``), ``options``
  (:class:`~attrib_mlops.options.AttributeOptions` fields);
* ``text_column``: the input text (default: the only feature column, else
  ``text``/``prompt``);
* ``target_column``: causal LMs: the continuation to attribute (default:
  greedy generation);
* ``attribute``: classifiers: ``"label"`` (the evaluation targets, default when
  given) or ``"predicted"``;
* ``id_column``: sample ids (default ``eval-<row>``);
* ``rationale_column``: classifiers: ``[[start, end], ...]`` character spans of
  each text's rationale;
* ``model_name`` (``model``), ``step`` (``0``), ``artifact_root``
  (``attribution``), ``spool_dir``, ``k`` (rationale hit@k, ``1``).

Without ``evaluators=["attribution"]`` (``evaluators=None`` runs every
registered evaluator) a model that is not a transformers model is skipped,
not failed.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mlflow.models.evaluation.base import EvaluationResult, ModelEvaluator

from attrib_mlops.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["AttributionEvaluator", "CONFIG_KEYS"]

CONFIG_KEYS = (
    "methods", "engine", "options", "text_column", "target_column", "attribute", "id_column", "rationale_column",
    "model_name", "step", "artifact_root", "spool_dir", "k",
)


def _hf_components(model: Any, explicit: bool) -> tuple[Any, Any] | None:
    """(transformers model, tokenizer) of a pyfunc-loaded ``mlflow.transformers`` model."""
    if model is None:
        if explicit:
            raise InputError("the attribution evaluator needs a model (it attributes the model, not predictions)")
        return None
    try:
        raw = model.get_raw_model()
    except Exception:  # noqa: BLE001 - not every flavor has a raw model
        raw = None
    hf = getattr(raw, "model", None)
    tok = getattr(raw, "tokenizer", None)
    if hf is None or tok is None:
        if explicit:
            raise InputError(
                "the attribution evaluator needs a model logged with mlflow.transformers (a pipeline with a model "
                f"and a tokenizer); got {type(raw).__name__ if raw is not None else type(model).__name__}"
            )
        return None
    return hf, tok


class AttributionEvaluator(ModelEvaluator):
    """Attribution as an MLflow evaluation (see the module docstring)."""

    name = "attribution"

    @classmethod
    def can_evaluate(cls, *, model_type, evaluator_config, **kwargs) -> bool:
        return model_type in (None, "classifier", "text", "question-answering", "text-summarization")

    def evaluate(self, *, model_type, dataset, run_id, evaluator_config, model=None, **kwargs):
        from mlflow.tracking import MlflowClient

        from attrib_mlops.api import attribute
        from attrib_mlops.engines.classifier_prep import label_names, model_head, resolve_label
        from attrib_mlops.mlflow_plugin.metrics import classifier_probe_metrics, log_metrics
        from attrib_mlops.tracking import AttributionWriter

        config = dict(evaluator_config or {})
        unknown = sorted(set(config) - set(CONFIG_KEYS) - {"col_mapping"})
        if unknown:
            raise InputError(f"unknown attribution evaluator_config keys {unknown}; valid: {', '.join(CONFIG_KEYS)}")
        comps = _hf_components(model, explicit=bool(config))
        if comps is None:
            logger.info("attribution evaluator: not a transformers model, skipped")
            return None
        hf_model, tok = comps
        classifier = model_head(hf_model) == "sequence_classification"
        df = dataset.features_data
        text_col = config.get("text_column") or _default_text_column(df)
        if text_col not in df.columns:
            raise InputError(f"text_column {text_col!r} is not a column of the data; columns: {list(df.columns)}")
        texts = [str(t) for t in df[text_col].tolist()]
        ids = ([str(x) for x in df[config["id_column"]].tolist()] if config.get("id_column")
               else [f"eval-{i}" for i in range(len(texts))])
        labels = list(dataset.labels_data) if getattr(dataset, "has_targets", False) else None
        labels = [x.item() if hasattr(x, "item") else x for x in labels] if labels is not None else None

        if classifier:
            how = config.get("attribute", "label" if labels is not None else "predicted")
            if how not in ("label", "predicted"):
                raise InputError(f"evaluator_config attribute must be 'label' or 'predicted', got {how!r}")
            if how == "label" and labels is None:
                raise InputError("attribute='label' needs targets: pass targets=<label column> to evaluate()")
            targets: Any = labels if how == "label" else None
        else:
            tcol = config.get("target_column")
            targets = [str(t) for t in df[tcol].tolist()] if tcol else None

        methods = config.get("methods", ["saliency"])
        results = attribute(hf_model, tok, texts, targets, methods=methods, engine=config.get("engine", "auto"),
                            sample_ids=ids, options=config.get("options"))

        names = label_names(hf_model)[0] if classifier else []
        records = []
        for i, (sid, text) in enumerate(zip(ids, texts)):
            first = results[i]
            rec: dict[str, Any] = {"id": sid, "prompt": text, "target": first.target}
            if classifier and labels is not None:
                rec["label"] = names[resolve_label(labels[i], names)]
            if classifier and config.get("rationale_column"):
                spans = df[config["rationale_column"]].iloc[i]
                spans = json.loads(spans) if isinstance(spans, str) else spans
                rec["rationale_spans"] = [[int(a), int(b)] for a, b in spans]
                offsets = first.info.get("offsets") or []
                rec["ground_truth"] = [j for j, (a, b) in enumerate(offsets)
                                       if a < b and any(a < e and s < b for s, e in rec["rationale_spans"])]
            records.append(rec)

        client = MlflowClient()
        writer = AttributionWriter(client, run_id=run_id, artifact_root=config.get("artifact_root", "attribution"),
                                   spool_dir=config.get("spool_dir"), strict=True)
        writer.log_probe_set([{k: r.get(k) for k in ("id", "prompt", "target", "ground_truth")} for r in records])
        model_name = config.get("model_name", "model")
        step = int(config.get("step", 0))
        summary = writer.log_step(step, results, model=model_name)
        metrics = dict(summary.mlflow_metrics)
        if classifier:
            extra = classifier_probe_metrics(results, records, model=model_name, k=int(config.get("k", 1)))
            if extra:
                log_metrics(client, run_id, extra, step)
            metrics.update(extra)
        return EvaluationResult(metrics=metrics, artifacts={}, run_id=run_id)


def _default_text_column(df: Any) -> str:
    cols = list(df.columns)
    if len(cols) == 1:
        return cols[0]
    for name in ("text", "prompt", "inputs"):
        if name in cols:
            return name
    raise InputError(f"the data has several columns {cols}; name the input with evaluator_config text_column")
