"""The result document: the seed's schema from AttributionResult, checked against the matrix by hand."""

from __future__ import annotations

import math

import numpy as np

from attrib_mlops.result import AttributionResult
from attrib_mlops.service.results import result_entry, results_document


def _result() -> AttributionResult:
    # decoder-only: rows = 2 prompt tokens + 2 target tokens, columns = 2 target tokens
    m = np.array([[0.5, 0.25], [1.0, 2.0], [9.0, 4.0], [7.0, 7.0]], np.float32)  # future cells hold junk
    return AttributionResult(m, ["a", "b", "c", "d"], ["c", "d"], "saliency", "native",
                             step_scores={"probability": np.array([0.5, np.nan], np.float32)},
                             n_prompt=2, prompt="a b", target=" c d", sample_id="s1")


def test_entry_follows_the_seed_schema_with_future_cells_null():
    e = result_entry("tiny", _result())
    assert e["model"] == "tiny" and e["method"] == "saliency" and e["sample_id"] == "s1"
    assert e["input"] == {"text": "a b", "tokens": ["a", "b"]}
    assert e["output"] == {"text": " c d", "tokens": ["c", "d"]}
    assert e["attribution"]["source_tokens"] == ["a", "b", "c", "d"]
    # row i >= n_prompt + j looks into the future: null, whatever the matrix held
    assert e["attribution"]["raw"] == [[0.5, 0.25], [1.0, 2.0], [None, 4.0], [None, None]]
    imp = e["attribution"]["aggregated"]["token_importance"]
    assert imp["input"] == [0.75, 3.0, 4.0, None]  # I(x_i) = sum_j A[i, j] over defined cells
    assert imp["output"] == [1.5, 6.25]  # I(y_j) = sum_i A[i, j]
    assert e["step_scores"]["probability"] == [0.5, None]


def test_document_has_metadata_and_is_strict_json():
    import json

    doc = results_document(job_id="j1", name="n", status="FINISHED", created_at="t0", completed_at="t1",
                           options={"n_steps": 8, "x": float("nan")}, entries=[result_entry("m", _result())],
                           total=1)
    text = json.dumps(doc, allow_nan=False)  # NaN never leaks into the JSON
    back = json.loads(text)
    assert {"job_id", "created_at", "completed_at", "options", "results"} <= set(back)
    assert back["options"] == {"n_steps": 8, "x": None} and back["total"] == 1
    assert not any(isinstance(v, float) and math.isnan(v) for v in back["results"][0]["attribution"]["raw"][0])
