"""The token-matrix task kind: results are :class:`~attrib_mlops.result.AttributionResult` objects."""

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
