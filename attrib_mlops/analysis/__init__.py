"""Pure-numpy analysis of attribution matrices (no torch, mlflow or transformers).

``aggregate`` turns matrices into importances, windows, normalised and combined
matrices; ``metrics`` turns them into scalar metrics for tracking; ``registry``
registers every metric once (name, function, direction, aggregation), with one
module per attribution kind in ``kinds/``; ``compare`` pairs two result sets by
sample id with token checks.
"""

from attrib_mlops.analysis.aggregate import (
    DIM_AGGREGATIONS,
    check_same_tokens,
    common_prefix_alignment,
    difference,
    dim_aggregate,
    input_centered_window_sums,
    multi_method_mean,
    normalize,
    normalize_vector,
    output_centered_window_sums,
    source_importance,
    target_importance,
    temporal_weighted_sum,
    window_importance,
)
from attrib_mlops.analysis.compare import Pairing, SamplePair, align_prefix, pair_samples
from attrib_mlops.analysis.metrics import (
    concentration,
    drift,
    ground_truth_alignment,
    jensen_shannon,
    kendall,
    mean_target_probability,
    method_agreement,
    normalized_entropy,
    spearman,
    summarize,
    topk_overlap,
)
from attrib_mlops.analysis.registry import Metric, get_metric, list_metrics, register_metric

__all__ = [
    "DIM_AGGREGATIONS",
    "Metric",
    "Pairing",
    "SamplePair",
    "align_prefix",
    "get_metric",
    "list_metrics",
    "pair_samples",
    "register_metric",
    "check_same_tokens",
    "common_prefix_alignment",
    "concentration",
    "difference",
    "dim_aggregate",
    "drift",
    "ground_truth_alignment",
    "input_centered_window_sums",
    "jensen_shannon",
    "kendall",
    "mean_target_probability",
    "method_agreement",
    "multi_method_mean",
    "normalize",
    "normalize_vector",
    "normalized_entropy",
    "output_centered_window_sums",
    "source_importance",
    "spearman",
    "summarize",
    "target_importance",
    "temporal_weighted_sum",
    "topk_overlap",
    "window_importance",
]
