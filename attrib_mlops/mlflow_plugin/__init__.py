"""MLflow plugins of attrib-mlops, one module per plugin type (as MLflow's own plugins are laid out).

* :mod:`.evaluator`: the ``attribution`` model evaluator, registered through the
  ``mlflow.model_evaluator`` entry point, so
  ``mlflow.models.evaluate(..., evaluators=["attribution"])`` attributes a logged
  transformers model and logs the results in the attribution storage layout.
* :mod:`.metrics`: the classifier probe metrics (accuracy, rationale alignment)
  the evaluator and the fine-tuning recipe log next to the writer's metrics.

Nothing here is imported by ``import attrib_mlops``; MLflow loads the evaluator
when it resolves the entry point.
"""
