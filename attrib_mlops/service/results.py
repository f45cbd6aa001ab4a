"""The job service's result document: the seed's result schema, one entry per (model, method, sample).

Shape (``GET /api/jobs/{id}/results``)::

    {
      "job_id": "...", "name": "...", "status": "FINISHED",
      "created_at": "2026-01-01T10:00:00+00:00", "completed_at": "2026-01-01T10:00:09+00:00",
      "options": {...},                         # the job's attribution options as given
      "total": 6, "offset": 0, "limit": null,   # paging over the entries
      "results": [
        {
          "model": "tiny", "method": "saliency", "sample_id": "s0", "engine": "native",
          "input":  {"text": "w1 w2", "tokens": ["w1", "w2"]},
          "output": {"text": " w3", "tokens": ["w3"]},
          "attribution": {
            "source_tokens": ["w1", "w2", "w3"],   # the rows of raw: prompt, then output tokens
            "raw": [[0.1], [0.7], [null]],          # A[i][j], null = undefined (future) cell
            "aggregated": {"token_importance": {"input": [...], "output": [...]}}
          },
          "step_scores": {"probability": [...], "entropy": [...]}
        }
      ]
    }

``raw`` follows the project's matrix convention (Inseq's): for decoder-only models
the rows are the prompt tokens followed by the output tokens, and cells that
would look into the future are ``null``. ``token_importance.input[i]`` is
``I(x_i) = sum_j A[i, j]`` over the rows and ``token_importance.output[j]`` is
``I(y_j) = sum_i A[i, j]`` over the columns (defined cells only).

Example:
    >>> import numpy as np
    >>> from attrib_mlops.result import AttributionResult
    >>> r = AttributionResult(np.array([[1.0], [2.0]], np.float32), ["a", "b"], ["b"], "saliency", "native",
    ...                       n_prompt=1, prompt="a", target=" b", sample_id="s0")
    >>> e = result_entry("tiny", r)
    >>> e["input"]["tokens"], e["attribution"]["raw"], e["attribution"]["aggregated"]["token_importance"]["output"]
    (['a'], [[1.0], [None]], [1.0])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .._util import json_clean

__all__ = ["result_entry", "results_document"]


def result_entry(model: str, result: Any) -> dict[str, Any]:
    """One entry of ``results`` for one result of ``model`` (token matrix; other kinds as their dict)."""
    from ..analysis import source_importance, target_importance
    from ..result import AttributionResult

    if not isinstance(result, AttributionResult):  # another attribution kind: its own JSON form
        d = result.to_dict() if hasattr(result, "to_dict") else {"value": str(result)}
        return json_clean({"model": model, "method": getattr(result, "method", None),
                           "sample_id": getattr(result, "sample_id", None), "kind": type(result).__name__,
                           "result": d})
    r = result
    n_prompt = int(r.n_prompt if r.n_prompt is not None else len(r.source_tokens))
    matrix = r.matrix.copy()
    matrix[~r.valid_mask()] = float("nan")
    return json_clean({
        "model": model,
        "method": r.method,
        "sample_id": r.sample_id,
        "engine": r.engine,
        "input": {"text": r.prompt, "tokens": list(r.source_tokens[:n_prompt])},
        "output": {"text": r.target, "tokens": list(r.target_tokens)},
        "attribution": {
            "source_tokens": list(r.source_tokens),
            "raw": matrix,
            "aggregated": {
                "token_importance": {
                    "input": source_importance(matrix),
                    "output": target_importance(matrix),
                },
            },
        },
        "step_scores": {k: v for k, v in r.step_scores.items()},
    })


def results_document(
    *,
    job_id: str,
    name: str | None,
    status: str,
    created_at: str | None,
    completed_at: str | None,
    options: Mapping[str, Any],
    entries: Iterable[dict[str, Any]],
    total: int,
    offset: int = 0,
    limit: int | None = None,
) -> dict[str, Any]:
    """The whole document: job metadata plus the (paged) entries made by :func:`result_entry`."""
    return {
        "job_id": job_id,
        "name": name,
        "status": status,
        "created_at": created_at,
        "completed_at": completed_at,
        "options": json_clean(dict(options)),
        "total": int(total),
        "offset": int(offset),
        "limit": limit,
        "results": list(entries),
    }
