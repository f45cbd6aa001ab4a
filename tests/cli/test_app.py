"""cli.app: the metrics table reads the metric registry."""

from __future__ import annotations

from rich.console import Console

from attrib_mlops.cli import metrics_table, table_metrics


def test_table_columns_come_from_the_registry():
    assert table_metrics() == {"hit_at_1": "hit@1", "mean_rank": "rank", "topk_mass": "top-k",
                               "concentration_entropy": "entropy", "mean_probability": "p(tgt)",
                               # classifiers (analysis/kinds/token_matrix_classifier.py)
                               "probe_accuracy": "acc", "rationale_hit_at_1": "rat hit@1", "rationale_tau": "rat tau",
                               # context sources, then training data (analysis/kinds/sources.py, training_data.py)
                               "lds": "LDS", "top1_drop": "top-1 drop", "top_score": "top score",
                               "positive_share": "supporting", "top_concentration": "top-k mass"}
    rows = [{"model": "m", "method": "saliency", "computed": 2, "cached": 1,
             "metrics": {"topk_mass": 0.5, "hit_at_1": None, "mean_entropy": 3.0}}]
    console = Console(record=True, width=120)
    console.print(metrics_table(rows))
    text = console.export_text()
    assert "top-k" in text and "0.50" in text and "2/1" in text
    assert "hit@1" not in text and "H(out)" not in text  # undefined everywhere / not a table metric
