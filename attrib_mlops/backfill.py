"""Backfill: attribute saved ``checkpoint-*`` folders into an MLflow run.

``backfill(checkpoints_dir, run_id=...)`` finds every ``checkpoint-<step>``
folder (the HF Trainer layout), and for each step not yet listed in the run's
attribution manifest loads the checkpoint, attributes the probe set and logs it
at that step. Steps already logged are skipped, so an interrupted backfill can
be re-run: it loses nothing (each finished step is committed on its own) and
duplicates nothing (a committed step is never logged again).

The probe set is the run's own (from its manifest) when it has one, so the
backfilled steps are comparable with what the training callback logged; a new
run needs one (``probe=``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["find_checkpoints", "backfill"]

_CKPT = re.compile(r"^checkpoint-(\d+)$")


def find_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every ``checkpoint-<step>`` folder under ``root``, by step."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"checkpoints folder {str(root)!r} does not exist or is not a folder")
    found = []
    for p in root.iterdir():
        m = _CKPT.match(p.name)
        if m and p.is_dir() and (p / "config.json").exists():
            found.append((int(m.group(1)), p))
    return sorted(found)


def backfill(
    checkpoints_dir: str | Path,
    *,
    run_id: str | None = None,
    tracking_uri: str | None = None,
    experiment: str = "attrib-mlops-backfill",
    probe: Any = None,
    methods: Sequence[str] = ("saliency",),
    engine: str = "auto",
    options: dict | None = None,
    tokenizer: Any = None,
    model_name: str = "model",
    progress: bool = True,
    spool_dir: Any = None,
) -> dict[str, Any]:
    """Attribute every not-yet-logged checkpoint into ``run_id`` (or a new run).

    Returns ``{"run_id", "logged": [steps], "skipped": [steps]}``.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    from .api import attribute
    from .callbacks.base import normalize_probe
    from .engines.prep import load_model_and_tokenizer
    from .options import parse_options
    from .tracking import AttributionReader, AttributionWriter, TrackingError

    ckpts = find_checkpoints(checkpoints_dir)
    if not ckpts:
        raise InputError(f"no checkpoint-<step> folders with a config.json under {str(checkpoints_dir)!r}")
    uri = tracking_uri or mlflow.get_tracking_uri()
    client = MlflowClient(tracking_uri=uri)
    reader = AttributionReader(uri)
    done: set[int] = set()
    run_probe = None
    if run_id is not None:
        try:
            client.get_run(run_id)
        except Exception as e:  # noqa: BLE001
            raise InputError(f"MLflow run {run_id!r} not found at {uri}: {e}") from None
        try:
            done = set(reader.steps(run_id))
            run_probe = reader.probe(run_id)
        except TrackingError:
            done, run_probe = set(), None  # a run without attribution yet
    else:
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
        run_id = client.create_run(exp_id, tags={"mlflow.runName": f"backfill-{Path(checkpoints_dir).name}"}).info.run_id
    if probe is None:
        if not run_probe:
            raise InputError("the run has no probe set yet; pass one (probe= or --probe)")
        probe_set = normalize_probe(run_probe)
    else:
        probe_set = normalize_probe(probe)
    opts = parse_options(options or {})
    writer = AttributionWriter(client, run_id=run_id, spool_dir=spool_dir)
    writer.log_probe_set(probe_set.to_records())
    targets = probe_set.targets
    targets = list(targets) if all(t is not None for t in targets) else None
    todo = [(s, p) for s, p in ckpts if s not in done]
    skipped = sorted(s for s, _ in ckpts if s in done)
    if skipped:
        logger.info("backfill: steps %s are already logged in run %s; skipping them", skipped, run_id)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="backfill", unit="checkpoint")
    logged = []
    for step, path in todo:
        model, tok, _ = load_model_and_tokenizer(str(path), tokenizer, opts)
        results = attribute(
            model, tok, probe_set.prompts, targets, methods=list(methods), engine=engine,
            sample_ids=probe_set.ids, options=opts,
        )
        writer.log_step(step, results, model=model_name)
        logged.append(step)
        if bar is not None:
            bar.update(1)
        del model
    if bar is not None:
        bar.close()
    writer.flush()
    return {"run_id": run_id, "logged": logged, "skipped": skipped}
