"""Get or create the MLflow experiment and run that attribution is logged to.

Every entry point that opens a run (the training callback, ``backfill``, the job
sink, the demo, the dashboard's New job, the recipes) goes through
:func:`get_or_create_run`, so they agree on how a run is found:

1. an explicit ``run_id`` is used as given (a resumed training, a run owned by
   someone else); ``verify=True`` checks first that it exists;
2. with ``use_active_run=True``, the fluent active run (e.g. the one transformers'
   ``MLflowCallback`` opened) when it lives on the same tracking URI;
3. else a new run in the experiment ``experiment`` (default:
   ``MLFLOW_EXPERIMENT_NAME``, else ``attrib-mlops``), which is created when missing.

Runs are created through an ``MlflowClient`` (never by starting a fluent run), so
the helper can run beside another integration that owns the active run. A
caller that needs the run active (e.g. for transformers' ``MLflowCallback``)
resumes it with ``mlflow.start_run(run_id=handle.run_id)``.

Example:
    >>> from attrib_mlops.tracking.runs import get_or_create_run
    >>> h = get_or_create_run(tracking_uri="sqlite:///mlflow.db", experiment="demo",  # doctest: +SKIP
    ...                       run_name="try-1", tags={"team": "nlp"})
    >>> h.created, h.run_id                                                          # doctest: +SKIP
    (True, '3f2a...')
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attrib_mlops.errors import InputError

__all__ = ["RunHandle", "DEFAULT_EXPERIMENT", "resolve_tracking_uri", "sqlite_artifact_location",
           "get_or_create_experiment", "get_or_create_run"]

#: Experiment of a run created without an experiment name (and no ``MLFLOW_EXPERIMENT_NAME``).
DEFAULT_EXPERIMENT = "attrib-mlops"


@dataclass(frozen=True)
class RunHandle:
    """The run :func:`get_or_create_run` found or created.

    Attributes:
        client: the ``MlflowClient`` bound to ``tracking_uri``.
        run_id: the run.
        tracking_uri: where the run lives.
        experiment_id: the run's experiment when this call created it, else None.
        created: True when this call created the run (the caller owns it and ends it).
    """

    client: Any
    run_id: str
    tracking_uri: str
    experiment_id: str | None = None
    created: bool = False


def resolve_tracking_uri(tracking_uri: str | None = None, client: Any = None) -> str:
    """``tracking_uri``, else the client's, else MLflow's current one (``MLFLOW_TRACKING_URI`` or default)."""
    if tracking_uri:
        return str(tracking_uri)
    if client is not None and getattr(client, "tracking_uri", None):
        return str(client.tracking_uri)
    import mlflow

    return mlflow.get_tracking_uri()


def sqlite_artifact_location(tracking_uri: str | None, experiment: str) -> str | None:
    """``<folder of the database>/mlartifacts/<experiment>`` for a ``sqlite:///`` file URI, else None.

    Example:
        >>> sqlite_artifact_location("sqlite:////data/mlflow.db", "demo")
        '/data/mlartifacts/demo'
        >>> sqlite_artifact_location("http://127.0.0.1:5000", "demo") is None
        True
    """
    if not tracking_uri or not str(tracking_uri).startswith("sqlite:///"):
        return None
    db = str(tracking_uri)[len("sqlite:///"):].split("?", 1)[0]
    if not db or db.startswith(":memory:"):
        return None
    folder = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._") or "experiment"
    if folder != experiment:  # keep names that differ only in replaced characters apart
        folder = f"{folder}-{hashlib.sha256(experiment.encode('utf-8')).hexdigest()[:8]}"
    return str(Path(db).resolve().parent / "mlartifacts" / folder)


def get_or_create_experiment(client: Any, name: str, *, artifact_location: str | None = None) -> str:
    """Id of the experiment ``name``, created (with ``artifact_location`` if given) when missing.

    On a SQLite store, an experiment created without ``artifact_location`` keeps its artifacts
    beside the database file (:func:`sqlite_artifact_location`), not in ``./mlruns`` of
    whatever folder the process started in, so the store stays self-contained.

    A concurrent creation by another process is tolerated (the existing experiment is returned).
    """
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    if artifact_location is None:
        artifact_location = sqlite_artifact_location(getattr(client, "tracking_uri", None), name)
    try:
        if artifact_location is not None:
            return client.create_experiment(name, artifact_location=artifact_location)
        return client.create_experiment(name)
    except MlflowException as e:
        if getattr(e, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def get_or_create_run(
    *,
    client: Any = None,
    tracking_uri: str | None = None,
    run_id: str | None = None,
    verify: bool = False,
    use_active_run: bool = False,
    experiment: str | None = None,
    artifact_location: str | None = None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    context_tags: bool = False,
) -> RunHandle:
    """Find or create the MLflow run to log attribution to (see the module docstring for the order).

    Args:
        client: an ``MlflowClient``; built for the tracking URI when None.
        tracking_uri: tracking URI (default: the client's, else MLflow's current one).
        run_id: use this run (resume or log into a run owned by someone else).
        verify: with ``run_id``, check the run exists first (:class:`InputError` when not).
        use_active_run: without ``run_id``, use the fluent active run when it lives on
            the same tracking URI.
        experiment: experiment of a new run (default ``MLFLOW_EXPERIMENT_NAME``, else
            :data:`DEFAULT_EXPERIMENT`); created when missing.
        artifact_location: artifact location of an experiment this call creates.
        run_name: name of a new run.
        tags: tags of a new run.
        context_tags: add MLflow's context tags (user, source name and type, git commit)
            to a new run, as ``mlflow.start_run`` does.

    Returns:
        :class:`RunHandle`; ``created`` tells whether the caller owns the run.

    Raises:
        InputError: ``verify=True`` and ``run_id`` is not a run of this tracking server.
    """
    uri = resolve_tracking_uri(tracking_uri, client)
    if client is None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
    if run_id is not None:
        if verify:
            try:
                client.get_run(run_id)
            except Exception as e:  # noqa: BLE001 - MlflowException or a network error: say which run
                raise InputError(f"MLflow run {run_id!r} not found at {uri}: {e}") from None
        return RunHandle(client, run_id, uri)
    if use_active_run:
        import mlflow

        active = mlflow.active_run()
        if active is not None and mlflow.get_tracking_uri() == uri:
            return RunHandle(client, active.info.run_id, uri)
    name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    exp_id = get_or_create_experiment(client, name, artifact_location=artifact_location)
    run_tags = dict(tags or {})
    if context_tags:
        from mlflow.tracking.context import registry as context_registry

        if run_name:
            run_tags.setdefault("mlflow.runName", run_name)
        run_tags = context_registry.resolve_tags(run_tags)
    run = client.create_run(exp_id, run_name=run_name, tags=run_tags)
    return RunHandle(client, run.info.run_id, uri, experiment_id=exp_id, created=True)
