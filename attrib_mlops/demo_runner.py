"""The end-to-end demo: train two tiny models with the callback, log to a local MLflow store.

``attrib-mlops demo`` (or :func:`run_demo`) does, on a fresh machine without
network:

1. builds a tiny GPT-2 with a word-level tokenizer (``demo.tiny``),
2. fine-tunes it with the HF ``Trainer`` on the synthetic key-value task
   (``demo.tasks``) with :class:`~attrib_mlops.callbacks.AttributionCallback`
   attributing a fixed probe set every ``log_every`` steps; loss goes to the
   same MLflow run through transformers' own ``MLflowCallback``,
3. does it again for a second run that differs on purpose: its training data
   carries a spurious "hint" cue (the answer written next to the question), so
   the model learns to copy the hint instead of reading the asked key's value,
4. prints how to open the MLflow UI and the dashboard on the store.

Both runs see the same probe prompts (with the hint present and correct), so
their accuracy is comparable while their attribution is not: the clean run's
``ground-truth hit@1`` climbs, the shortcut run's does not. The clean run's
training data carries hints too, but uninformative ones (right only by chance),
so the cue exists in both runs and only its reliability differs.

The probe set also holds a few rows with multi-token targets (a second question
answered in the target, :func:`~attrib_mlops.demo.tasks.two_question_rows`), so the
explorer shows target colouring and row hover on real several-token targets.

Checkpoints are saved under ``<store>/checkpoints/<run>/checkpoint-<step>``
(usable with ``attrib-mlops backfill``); each is logged as an MLflow LoggedModel
``checkpoint-<step>`` linked to that step's attribution metrics (the dashboard's
New job tab lists them). Each run is tagged with its dashboard deep link
(``attrib_mlops.dashboard_url``, also in the run's description).

This module is an entry point (it uses the callbacks, the tracking layer and the
demo's tasks and models), next to the CLI that runs it; :mod:`attrib_mlops.demo`
itself holds only the synthetic tasks, the tiny models and the short training
loop, which lower layers (the built-in ``demo:`` sample sources) may use.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["DemoConfig", "run_demo", "train_data", "dashboard_url", "EXPERIMENT", "DASHBOARD_URL_TAG"]

EXPERIMENT = "attrib-mlops-demo"
#: Tag holding a run's deep link into the dashboard (served on its default address).
DASHBOARD_URL_TAG = "attrib_mlops.dashboard_url"
#: Multi-token probe rows added to the demo's probe set.
N_TWO_QUESTION_PROBES = 4


@dataclass
class DemoConfig:
    """Knobs of the demo (defaults: one to two minutes per run on 2 CPU cores)."""

    store: Path = Path("attrib-demo")
    max_steps: int = 800
    log_every: int = 50
    batch_size: int = 32
    lr: float = 3e-3
    n_probe: int = 16
    methods: tuple[str, ...] = ("saliency", "input_x_gradient", "attention")
    runs: tuple[str, ...] = ("clean", "shortcut")
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    #: log to this MLflow tracking URI instead of the store's own ``mlflow.db`` (checkpoints stay in ``store``)
    tracking_uri_override: str | None = None

    @property
    def tracking_uri(self) -> str:
        return self.tracking_uri_override or f"sqlite:///{self.store.resolve()}/mlflow.db"


def train_data(kind: str, cfg: DemoConfig):
    """Training rows of the demo run ``kind`` (``clean`` or ``shortcut``)."""
    from .demo.tasks import make_keyvalue_dataset

    n = cfg.max_steps * cfg.batch_size
    if kind == "clean":
        # the hint is there but right only by chance: the model must read the value
        return make_keyvalue_dataset(n, seed=cfg.seed, shortcut=True, hint_rate=1.0 / 16)
    if kind == "shortcut":
        return make_keyvalue_dataset(n, seed=cfg.seed, shortcut=True, hint_rate=1.0)
    raise ValueError(f"unknown demo run {kind!r}; choose clean or shortcut")


def dashboard_url(run_id: str, host: str = "127.0.0.1", port: int = 5006) -> str:
    """The dashboard's deep link to a run (``attrib-mlops dashboard`` serves 127.0.0.1:5006 by default).

    Example:
        >>> dashboard_url("abc")
        'http://127.0.0.1:5006/?tab=explorer&run=abc'
    """
    from urllib.parse import quote

    return f"http://{host}:{int(port)}/?tab=explorer&run={quote(str(run_id), safe='')}"


def run_demo(cfg: DemoConfig | None = None, progress: bool = True) -> dict[str, Any]:
    """Train the demo runs and return ``{"tracking_uri", "experiment_id", "runs": {name: run_id}, ...}``."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from .callbacks import AttributionCallback
    from datasets import concatenate_datasets

    from .demo.tasks import keyvalue_vocab, probe_set, two_question_rows
    from .demo.tiny import build_tiny_model
    from .demo.train import DEFAULT_MODEL, keyvalue_accuracy, train_keyvalue
    from .tracking.runs import get_or_create_experiment, get_or_create_run

    cfg = cfg or DemoConfig()
    cfg.store.mkdir(parents=True, exist_ok=True)
    uri = cfg.tracking_uri
    client = MlflowClient(tracking_uri=uri)
    # the local demo store keeps its artifacts in it; another tracking store places them as it does
    artifacts = None if cfg.tracking_uri_override else (cfg.store.resolve() / "artifacts").as_uri()
    exp_id = get_or_create_experiment(client, EXPERIMENT, artifact_location=artifacts)
    probe = probe_set(n=cfg.n_probe, shortcut=True)  # accuracy is measured on these single-token questions
    tracked = concatenate_datasets([probe, two_question_rows(probe, N_TWO_QUESTION_PROBES)])
    out: dict[str, Any] = {"tracking_uri": uri, "experiment_id": exp_id, "runs": {}, "accuracy": {}, "seconds": {}}
    old_uri = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        for kind in cfg.runs:
            model, tok = build_tiny_model(keyvalue_vocab(), **DEFAULT_MODEL)
            before = keyvalue_accuracy(model, tok, probe)
            run_name = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
            handle = get_or_create_run(client=client, experiment=EXPERIMENT, artifact_location=artifacts,
                                       run_name=run_name, context_tags=True)
            # active, so transformers' MLflowCallback logs the loss into the same run
            with mlflow.start_run(run_id=handle.run_id) as run:
                link = dashboard_url(run.info.run_id)
                mlflow.set_tags({"attrib_mlops.demo": kind, "attrib_mlops.demo.train_data": kind,
                                 DASHBOARD_URL_TAG: link,
                                 "mlflow.note.content": f"Attribution of this run in the dashboard: {link} "
                                                        f"(start it with `attrib-mlops dashboard --tracking-uri "
                                                        f"{uri}`)."})
                mlflow.log_params({"demo.run": kind, "demo.max_steps": cfg.max_steps, "demo.lr": cfg.lr})
                cb = AttributionCallback(
                    tracked,
                    methods=list(cfg.methods),
                    every_n_steps=cfg.log_every,
                    on_save=True,  # each checkpoint: a LoggedModel linked to its step's metrics
                    run_id=run.info.run_id,
                    tracking_uri=uri,
                    spool_dir=cfg.store / "spool",
                )
                t0 = time.perf_counter()
                if progress:
                    print(f"[{kind}] training {cfg.max_steps} steps; attribution every {cfg.log_every} steps")
                res = train_keyvalue(
                    model,
                    tok,
                    train_data(kind, cfg),
                    max_steps=cfg.max_steps,
                    batch_size=cfg.batch_size,
                    lr=cfg.lr,
                    seed=cfg.seed,
                    output_dir=str(cfg.store / "checkpoints" / run_name),
                    save_steps=cfg.log_every * 4,
                    num_threads=1,  # tiny model: one thread is fastest and leaves a core to the rest
                    logging_steps=max(10, cfg.log_every // 4),
                    callbacks=[cb],
                    report_to="mlflow",
                    progress=progress,
                )
                seconds = time.perf_counter() - t0
                acc = keyvalue_accuracy(model, tok, probe)
                client.log_metric(run.info.run_id, "probe_accuracy", acc, step=res["global_step"])
                attrib_cost = sum(cb.monitor.costs)
                client.log_metric(run.info.run_id, "attrib/overhead_fraction", attrib_cost / seconds)
                out["runs"][kind] = run.info.run_id
                out["accuracy"][kind] = {"before": before, "after": acc}
                out["seconds"][kind] = {"total": seconds, "attribution": attrib_cost}
                if progress:
                    print(
                        f"[{kind}] run {run.info.run_id}: probe accuracy {before:.2f} -> {acc:.2f}; "
                        f"{seconds:.0f}s, of which attribution {attrib_cost:.1f}s ({attrib_cost / seconds:.0%})"
                    )
    finally:
        mlflow.set_tracking_uri(old_uri)  # None: back to MLFLOW_TRACKING_URI / MLflow's default
    return out
