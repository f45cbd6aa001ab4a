"""Command-line options that choose the executor (``run``, ``backfill``, ``serve``): local or Ray.

Typer option types shared by the commands, and :func:`executor_choice` that turns
their values into an :class:`~attrib_mlops.jobs.executor_choice.ExecutorChoice`
(nothing heavy is imported here: Ray only loads when ``--executor ray`` runs).

Example:
    >>> executor_choice("ray", "127.0.0.1:6379", 2, 1.0, 0.0).describe()
    'ray at 127.0.0.1:6379'
"""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["ExecutorOpt", "RayAddressOpt", "RayWorkersOpt", "CpusPerWorkerOpt", "GpusPerWorkerOpt", "executor_choice"]

ExecutorOpt = Annotated[
    str, typer.Option("--executor", help="Where work units run: local (this process) or ray (a Ray actor pool; "
                      "needs the \\[ray] extra).")
]
RayAddressOpt = Annotated[
    str | None, typer.Option("--ray-address", help="Ray cluster (host:port of the head node, ray://host:port, or "
                             "auto). Default with --executor ray: a private Ray on 127.0.0.1.")
]
RayWorkersOpt = Annotated[
    int | None, typer.Option("--ray-workers", min=1, help="Ray actors (each loads the models once). Default: "
                             "what the cluster's CPUs (or GPUs with --gpus-per-worker) allow.")
]
CpusPerWorkerOpt = Annotated[
    float, typer.Option("--cpus-per-worker", min=0.0, help="CPUs each Ray actor asks for (fractions allowed).")
]
GpusPerWorkerOpt = Annotated[
    float, typer.Option("--gpus-per-worker", min=0.0, help="GPU share of each Ray actor (e.g. 0.25: four actors "
                        "per GPU); models then run on cuda.")
]


def executor_choice(executor: str, ray_address: str | None, ray_workers: int | None, cpus_per_worker: float,
                    gpus_per_worker: float):
    """The :class:`~attrib_mlops.jobs.executor_choice.ExecutorChoice` of the options (InputError if inconsistent)."""
    from ..jobs.executor_choice import ExecutorChoice

    return ExecutorChoice(executor, ray_address, ray_workers, cpus_per_worker, gpus_per_worker)
