"""The Trainer callback on a sequence classifier: on_evaluate (the eval hook) into a real SQLite store."""

from __future__ import annotations

import numpy as np
import torch
from mlflow.tracking import MlflowClient
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

from attrib_mlops.callbacks import AttributionCallback
from attrib_mlops.demo.sentiment import make_sentiment_dataset, make_sentiment_records, to_probe_records
from attrib_mlops.demo.tiny_classifier import build_tiny_classifier
from attrib_mlops.tracking import AttributionReader


def test_on_evaluate_logs_classifier_attribution(tmp_path):
    recs = make_sentiment_records(64, seed=0) + make_sentiment_records(4, seed=9)
    vocab = sorted({w.strip(".,'").lower() for r in recs for w in r["text"].split()})
    model, tok = build_tiny_classifier("bert", vocab, seed=0)
    cols = ["id", "text", "label", "label_id", "rationale", "rationale_spans"]

    def encode(ds):
        return ds.map(lambda b: {**tok(b["text"]), "labels": b["label_id"]}, batched=True, remove_columns=cols)

    train, evald = encode(make_sentiment_dataset(64, seed=0)), encode(make_sentiment_dataset(8, seed=3))
    probe = to_probe_records(make_sentiment_records(4, seed=9), tok)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cb = AttributionCallback(probe, methods=["saliency", "attention"], on_evaluate=True, on_save=False,
                             at_train_end=False, tracking_uri=uri, spool_dir=tmp_path / "spool", strict=True)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=6, per_device_train_batch_size=16,
                             eval_strategy="steps", eval_steps=3, save_strategy="no", report_to=[], use_cpu=True,
                             disable_tqdm=True, learning_rate=1e-3)
    weights = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=evald, processing_class=tok,
                      data_collator=DataCollatorWithPadding(tok), callbacks=[cb])
    trainer.train()
    assert cb.logged_steps == [3, 6]
    assert any(not torch.equal(a, b) for a, b in zip(weights, model.parameters()))  # it did train
    reader = AttributionReader(uri)
    assert reader.steps(cb.run_id) == [3, 6]
    stored = reader.load(cb.run_id, 6, method="saliency")
    assert [r.sample_id for r in stored] == [p["id"] for p in probe]
    for r, p in zip(stored, probe):
        assert r.target_tokens == [p["target"]] and r.source_tokens[0] == "[CLS]"
        assert r.info["task"] == "sequence_classification" and np.isfinite(r.matrix).all()
    metrics = MlflowClient(uri).get_run(cb.run_id).data.metrics
    assert {"attrib/saliency/hit_at_1", "attrib/attention/hit_at_1", "attrib/agreement/mean"} <= set(metrics)
