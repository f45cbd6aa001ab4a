"""Which executor computes a job: ``local`` (this process, the default) or ``ray`` (a Ray actor pool).

One small object, :class:`ExecutorChoice`, carries what ``attrib-mlops run``,
``backfill`` and ``serve`` take on the command line (``--executor``,
``--ray-address``, ``--ray-workers``, ``--cpus-per-worker``, ``--gpus-per-worker``);
:func:`open_executor` turns it into an executor and closes it afterwards. Ray is
imported only for ``ray``.

Example:
    >>> choice = ExecutorChoice()                    # local
    >>> with open_executor(choice) as ex:
    ...     type(ex).__name__
    'LocalExecutor'
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from .cache import ResultCache
from .executor import Executor, LocalExecutor, ModelLoader

__all__ = ["EXECUTORS", "ExecutorChoice", "open_executor"]

#: Executor names.
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class ExecutorChoice:
    """An executor and its Ray settings.

    Attributes:
        name: ``local`` or ``ray``.
        address: Ray cluster address (``host:port``, ``ray://host:port``, ``auto``); None
            starts a private Ray on 127.0.0.1.
        workers: Ray actors (default: what the cluster's CPUs or GPUs allow).
        cpus_per_worker, gpus_per_worker: resources per actor (fractions allowed).
    """

    name: str = "local"
    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in EXECUTORS:
            raise InputError(f"unknown executor {self.name!r}; valid: {', '.join(EXECUTORS)}")
        if self.name == "local" and (self.address or self.workers is not None or self.gpus_per_worker):
            raise InputError("--ray-address, --ray-workers and --gpus-per-worker need --executor ray")
        if self.workers is not None and self.workers < 1:
            raise InputError(f"--ray-workers must be at least 1, got {self.workers}")
        if self.cpus_per_worker < 0 or self.gpus_per_worker < 0:
            raise InputError("--cpus-per-worker and --gpus-per-worker must not be negative")

    def describe(self) -> str:
        """``local`` or ``ray at <address>`` (for messages)."""
        if self.name == "local":
            return "local"
        return f"ray at {self.address}" if self.address else "ray (private local instance)"


@contextlib.contextmanager
def open_executor(choice: ExecutorChoice, cache: ResultCache | None = None,
                  loader: ModelLoader | None = None, **ray_options: Any) -> Iterator[Executor]:
    """The chosen executor, closed on exit (a Ray executor connects at once, so a bad address fails here).

    Args:
        choice: the executor and its settings.
        cache: where model fingerprints are memoized (the job's result cache).
        loader: how models are loaded (see :class:`~attrib_mlops.jobs.executor.LocalExecutor`).
        ray_options: further :class:`~attrib_mlops.jobs.ray_executor.RayExecutor` arguments.
    """
    if choice.name == "local":
        yield LocalExecutor(cache, loader)
        return
    from .ray_executor import RayExecutor

    ex = RayExecutor(choice.address, workers=choice.workers, cpus_per_worker=choice.cpus_per_worker,
                     gpus_per_worker=choice.gpus_per_worker, cache=cache, loader=loader, **ray_options)
    try:
        yield ex
    finally:
        ex.close()
