"""The token-matrix task kind: results are :class:`~attrib_mlops.result.AttributionResult` objects.

Causal LMs and sequence classifiers alike: for a classifier the sample's ``target`` is
the label to attribute (``targets: given``), and its cache key is the same (model and
tokenizer fingerprints, method, engine, options, prompt, label). The sample's label and
rationale are added to each classifier result afterwards (:meth:`TokenMatrixTask.annotate`),
so the registered classifier metrics (probe accuracy, rationale alignment) can read them.
"""

from __future__ import annotations

from typing import Any

from ...analysis.registry import TOKEN_MATRIX
from ...result import AttributionResult
from . import TaskKind

__all__ = ["TokenMatrixTask"]


class TokenMatrixTask(TaskKind):
    """Token matrices (:class:`~attrib_mlops.result.AttributionResult`) through :func:`attrib_mlops.api.attribute`."""

    name = TOKEN_MATRIX

    def attribute(self, model, tokenizer, prompts, targets, method, engine, sample_ids, options):
        from ... import api  # module attribute lookup: tests and wrappers can patch api.attribute

        return api.attribute(model, tokenizer, list(prompts), list(targets), [method], engine,
                             sample_ids=list(sample_ids), options=options)

    def decode(self, data: dict[str, Any]) -> AttributionResult:
        return AttributionResult.from_dict(data)

    def annotate(self, result: AttributionResult, sample: Any) -> None:
        """Classifier results: ``info["gold_label"]`` (the sample's ``meta["label"]``, else its target) and,
        for a sample with ``meta["rationale_spans"]`` and no ground truth, ``info["rationale_positions"]``."""
        from ...analysis.rationale import is_classifier_result, rationale_positions

        if not is_classifier_result(result):
            return
        meta = getattr(sample, "meta", None) or {}
        gold = meta.get("label", sample.target)
        if gold is not None:
            result.info["gold_label"] = str(gold)
        spans = meta.get("rationale_spans")
        if spans and not sample.ground_truth and result.info.get("offsets") is not None:
            result.info["rationale_positions"] = rationale_positions(result, spans)
