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

__all__ = ["find_checkpoints", "backfill", "BACKFILL_TAG"]

#: Tag of a run ``backfill`` created.
BACKFILL_TAG = "attrib_mlops.backfill"

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
    executor: Any = None,
) -> dict[str, Any]:
    """Attribute every not-yet-logged checkpoint into ``run_id`` (or a new run).

    Runs through the job runner (:func:`~attrib_mlops.jobs.run_job`): one job model per
    checkpoint, written by a :class:`~attrib_mlops.jobs.StepSink` at the checkpoint's step
    (all methods of a checkpoint in one commit). Nothing is cached: every checkpoint not
    yet logged is attributed.

    ``executor`` computes the work (default: a local executor); e.g. a
    :class:`~attrib_mlops.jobs.ray_executor.RayExecutor` spreads each checkpoint's
    batches over a Ray actor pool.

    Everything is validated before a run is created (a missing probe set leaves no empty
    run behind). A run this call creates ends ``FINISHED``, ``FAILED`` (an error) or
    ``KILLED`` (interrupted); a given ``run_id`` keeps its status.

    Returns ``{"run_id", "logged": [steps], "skipped": [steps]}``.

    Example:
        >>> backfill("out/", run_id="0a1b...", tracking_uri="sqlite:///mlflow.db")   # doctest: +SKIP
        {'run_id': '0a1b...', 'logged': [20, 30], 'skipped': [10]}
    """
    from .samples import ProbeSet
    from .tracking import AttributionReader, TrackingError
    from .tracking.runs import get_or_create_run, resolve_tracking_uri

    ckpts = find_checkpoints(checkpoints_dir)
    if not ckpts:
        raise InputError(f"no checkpoint-<step> folders with a config.json under {str(checkpoints_dir)!r}")
    # validate before any run is created: a bad call leaves nothing behind in the store
    given = None if probe is None else ProbeSet.coerce(probe)
    if given is None and run_id is None:
        raise InputError("a new run has no probe set yet; pass one (probe= or --probe)")
    handle = None
    if run_id is not None:
        handle = get_or_create_run(tracking_uri=tracking_uri, run_id=run_id, verify=True)
    reader = AttributionReader(resolve_tracking_uri(tracking_uri))
    done: set[int] = set()
    run_probe = None
    if handle is not None:
        try:
            done = set(reader.steps(handle.run_id))
            run_probe = reader.probe(handle.run_id)
        except TrackingError:
            done, run_probe = set(), None  # a run without attribution yet
        if given is None and not run_probe:
            raise InputError(f"run {handle.run_id} has no probe set yet; pass one (probe= or --probe)")
    probe_set = given if given is not None else ProbeSet.coerce(run_probe)
    if handle is None:
        handle = get_or_create_run(tracking_uri=tracking_uri, experiment=experiment,
                                   run_name=f"backfill-{Path(checkpoints_dir).name}",
                                   tags={BACKFILL_TAG: "true"})
    status = "FAILED"
    try:
        out = _backfill_into(handle, ckpts, done, probe_set, checkpoints_dir=checkpoints_dir, methods=methods,
                             engine=engine, options=options, tokenizer=tokenizer, model_name=model_name,
                             progress=progress, spool_dir=spool_dir, executor=executor)
        status = "FINISHED"
        return out
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if handle.created:  # a run this call created ends with its outcome; a given run keeps its status
            handle.client.set_terminated(handle.run_id, status)


def _backfill_into(handle: Any, ckpts: list[tuple[int, Path]], done: set[int], probe_set: Any, *,
                   checkpoints_dir: str | Path, methods: Sequence[str], engine: str, options: dict | None,
                   tokenizer: Any, model_name: str, progress: bool, spool_dir: Any,
                   executor: Any = None) -> dict[str, Any]:
    """Attribute the checkpoints not in ``done`` into the run of ``handle``."""
    from .jobs import JobSpec, LocalExecutor, StepSink, run_job
    from .jobs.executor import ModelLoader

    todo = [(s, p) for s, p in ckpts if s not in done]
    skipped = sorted(s for s, _ in ckpts if s in done)
    if skipped:
        logger.info("backfill: steps %s are already logged in run %s; skipping them", skipped, handle.run_id)
    if not todo:
        return {"run_id": handle.run_id, "logged": [], "skipped": skipped}
    spec = JobSpec(
        name="backfill", models=[{"name": f"checkpoint-{s}", "ref": str(p)} for s, p in todo],
        methods=list(methods), engine=engine, samples={"source": probe_set.source},
        targets="given" if all(t is not None for t in probe_set.targets) else "generate",
        options=dict(options or {}), cache_dir=None,
    )
    sink = StepSink(run_id=handle.run_id, tracking_uri=handle.tracking_uri, spool_dir=spool_dir,
                    steps={f"checkpoint-{s}": s for s, _ in todo}, model_label=model_name, terminate=False)
    loader: ModelLoader | None = None
    if tokenizer is not None:
        from .model_refs import load_model

        def with_tokenizer(m: Any, opts: Any) -> tuple[Any, Any]:  # the given tokenizer for every checkpoint
            model, tok, _ = load_model(m.ref, tokenizer, opts)
            return model, tok

        loader = with_tokenizer
    bar = _CheckpointBar(len(todo), progress)
    try:
        if executor is not None and loader is not None:
            raise InputError("tokenizer= cannot be combined with executor=; give the executor a loader instead")
        run_job(spec, sinks=[sink], progress=False, executor=executor or LocalExecutor(loader=loader),
                on_event=bar.update, probe=probe_set)
    finally:
        bar.close()
    return {"run_id": handle.run_id, "logged": sink.logged_steps, "skipped": skipped}


class _CheckpointBar:
    """One tqdm bar over the checkpoints (advanced as the runner reports each finished model)."""

    def __init__(self, total: int, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="backfill", unit="checkpoint", disable=not enabled)
        self.total = total

    def update(self, event: Any) -> None:
        done = int(event.progress * self.total + 1e-9)
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()
