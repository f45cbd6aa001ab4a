"""Summaries of a result set: each registered ``sample`` metric aggregated over the samples.

What job summaries (``summary.json``, the CLI table, :class:`~attrib_mlops.jobs.JobOutcome`)
report. The aggregation of each metric is the one it was registered with
(:mod:`attrib_mlops.analysis.registry`).

Example:
    >>> import numpy as np
    >>> from attrib_mlops.result import AttributionResult
    >>> rs = [AttributionResult(np.array([[0.9], [0.1]]), ["k", "v"], ["x"], "saliency", "native", n_prompt=2,
    ...                         sample_id=s) for s in ("a", "b")]
    >>> summarize_results(rs, {"a": [0], "b": [1]}, k=1)["hit_at_1"]
    0.5
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from attrib_mlops.analysis.metrics import summarize
from attrib_mlops.analysis.registry import get_kind, get_metric, kind_of
from attrib_mlops.errors import AttribError
from attrib_mlops.result import AttributionResult

__all__ = ["summarize_results"]


def summarize_results(
    results: Sequence[AttributionResult],
    ground_truth: Mapping[str, Sequence[int] | None] | None = None,
    k: int = 3,
    problems: list[tuple[str | None, str]] | None = None,
) -> dict[str, float | None]:
    """Each metric of :func:`~attrib_mlops.analysis.summarize` aggregated over ``results`` (None if undefined).

    Args:
        results: results of one (model, method).
        ground_truth: sample id -> prompt token positions; ``hit_at_1``, ``hit_at_3`` and
            ``mean_rank`` are aggregated over the samples that have one.
        k: top-k size.
        problems: when given, ``(sample id, message)`` is appended for every sample whose
            ground truth is not usable (positions out of range, e.g. after truncation); its
            alignment metrics are skipped. Without it such a sample is skipped silently.

    Raises:
        AttribError: a sample's metrics cannot be computed (other than its ground truth).
    """
    kind = get_kind(kind_of(results[0])) if results else None
    if kind is not None and kind.summarize is not None:  # another kind's summary (e.g. context sources)
        return kind.summarize(results, ground_truth, k)
    ground_truth = ground_truth or {}
    values: dict[str, list[float]] = {}
    for r in results:
        gt = ground_truth.get(r.sample_id) if r.sample_id is not None else None
        try:
            m = summarize(r, k=k, true_positions=gt or None)
        except AttribError as e:
            if not gt:
                raise
            if problems is not None:
                problems.append((r.sample_id, str(e)))
            m = summarize(r, k=k)
        for name, v in m.items():
            values.setdefault(name, []).append(v)
    return {name: get_metric(name, "sample").reduce(v) for name, v in values.items()}
