"""The Ray executor: a job's work units computed by a pool of Ray actors, each loading its models once.

The runner (:mod:`attrib_mlops.jobs.runner`) stays where it is, on the driver: it
plans the work, reads and writes the content-keyed cache, feeds the sinks (the
driver alone writes to MLflow) and reports progress. :class:`RayExecutor` only
computes the units the cache does not hold:

* a pool of ``workers`` actors (:class:`_ModelWorker`), each asking Ray for
  ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs (fractions allowed: four
  actors with 0.25 share one GPU); with a GPU share and no ``device`` in the job,
  models go to ``cuda``;
* a unit is one (model, method, batch of samples); each actor loads a model the
  first time it gets one of its units and keeps it until the runner releases the
  model, so a model is loaded at most once per actor;
* units go to the least busy actor, at most ``depth`` per actor at a time, and come
  back in completion order; the runner caches each one as it arrives;
* results are the local executor's, bit for bit, when the workers run the same
  hardware and the same number of torch threads as the driver (Ray gives an actor
  ``max(1, cpus_per_worker)`` threads; ``threads_per_worker`` sets it); with another
  thread count, float32 sums are ordered differently and cells may differ in the
  last bits (about 1e-8 on the tiny model), which the content-keyed cache ignores;
* a worker process that dies mid-job is restarted by Ray (``max_restarts``) and the
  units it held are retried (``max_task_retries``); every other unit is untouched,
  and every unit already returned is in the cache. Model fingerprints (cache keys)
  are computed on a worker and memoized on the driver like the local executor's,
  so both executors read and write the same cache entries.

Without ``address`` a private Ray instance starts in this process's session on
127.0.0.1 only, with no dashboard, no usage statistics and Ray's token
authentication with a random token held in this process's environment (nothing is
written to ``~/.ray``), and stops on :meth:`RayExecutor.close`. A cluster that uses
token authentication needs ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN`` (or
``~/.ray/auth_token``) in the driver's environment, as Ray documents. With an ``address`` (``host:port`` of a head node,
``ray://host:port`` for Ray Client, or ``auto``) the executor first checks within
``connect_timeout`` seconds that something speaking gRPC answers there, so a
wrong address fails fast with a clear error before anything is written.

Model references must resolve on every node: a folder on a shared file system, an
MLflow URI (the driver's ``MLFLOW_TRACKING_URI`` is passed on) or a hub id.

Example:
    >>> from attrib_mlops.jobs import load_job, run_job                          # doctest: +SKIP
    >>> with RayExecutor(workers=2, cpus_per_worker=1) as ex:                    # doctest: +SKIP
    ...     run_job(load_job("recipes/job_keyvalue.yaml"), executor=ex).status
    'FINISHED'
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .._util import content_hash
from ..errors import AttribError
from ..options import AttributeOptions
from .cache import ResultCache, model_fingerprint, tokenizer_fingerprint
from .executor import ModelLoader, WorkUnit, _default_loader, _ModelHandle
from .kinds import run_unit
from .ray_cluster import LOOPBACK_ENV
from .spec import ModelSpec

logger = logging.getLogger(__name__)

__all__ = ["RayExecutor", "ExecutorError", "import_ray", "check_ray_address"]

#: Environment variables of the driver passed on to the workers (when set): model lookup and offline mode.
FORWARDED_ENV = ("MLFLOW_TRACKING_URI", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE",
                 "TOKENIZERS_PARALLELISM")
_RAY_EXTRA = "pip install 'attrib-mlops[ray]'"


class ExecutorError(AttribError):
    """The executor cannot run: Ray missing, a cluster that does not answer, workers lost for good."""


def import_ray(loopback: bool = True) -> Any:
    """Import Ray, or raise :class:`ExecutorError` naming the ``[ray]`` extra.

    With ``loopback`` (a local instance or a head node on 127.0.0.1), the variables
    that keep Ray on loopback are set first; they only take effect if Ray was not
    imported yet in this process. Usage statistics are always off unless the
    environment says otherwise.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if loopback:
        for k, v in LOOPBACK_ENV.items():
            os.environ.setdefault(k, v)
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"the Ray executor needs Ray, which is not installed: {_RAY_EXTRA}") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``host:port`` or ``ray://host:port``; None for ``auto``/``local``."""
    if address in ("auto", "local"):
        return None
    parsed = urlparse(address if "://" in address else f"gcs://{address}")
    if not parsed.hostname or parsed.port is None:
        raise ExecutorError(f"Ray address {address!r} is not host:port, ray://host:port or auto")
    return parsed.hostname, int(parsed.port)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return False


def check_ray_address(address: str, timeout: float = 10.0) -> None:
    """Raise :class:`ExecutorError` unless a gRPC server (a Ray head) answers at ``address`` within ``timeout``.

    Ray itself retries a silent address for minutes; this check opens a TCP connection and
    sends the HTTP/2 preface, which a Ray head node answers at once with its settings.
    """
    hp = _host_port(address)
    if hp is None:
        return
    host, port = hp
    what = f"no Ray cluster answers at {address}"
    hint = ("check the address (the head node's GCS port, `ray start --head --port ...`), that the cluster is "
            "running and that this machine can reach it; nothing was computed or written")
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(9 - 5) + b"\x04" + bytes(4))
            head = b""
            deadline = time.monotonic() + timeout
            while len(head) < 9 and time.monotonic() < deadline:
                chunk = s.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except OSError as e:
        raise ExecutorError(f"{what} ({e.strerror or type(e).__name__} within {timeout:g}s); {hint}") from None
    if len(head) < 4 or head[3] != 0x04:  # an HTTP/2 SETTINGS frame starts a gRPC server's answer
        raise ExecutorError(f"{what}: the port answers but does not speak Ray's protocol; {hint}")


class _ModelWorker:
    """A Ray actor: loads models on first use (once per actor), attributes, generates, fingerprints."""

    def __init__(self, loader: ModelLoader | None = None, threads: int | None = None):
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        self._loader = loader or _default_loader
        self._models: dict[str, tuple[str, Any, Any]] = {}
        self.units_done = 0
        self.loads = 0

    def pid(self) -> int:
        """Process id of this worker."""
        return os.getpid()

    def stats(self) -> dict[str, Any]:
        """Process id, units computed and model loads since this process started, models held."""
        return {"pid": os.getpid(), "units_done": self.units_done, "loads": self.loads,
                "models": sorted(self._models)}

    def _get(self, spec: ModelSpec, options: AttributeOptions) -> tuple[Any, Any]:
        key = content_hash({"spec": spec.model_dump(mode="json"), "options": options.model_dump(mode="json")})
        cur = self._models.get(spec.name)
        if cur is None or cur[0] != key:
            self._models.pop(spec.name, None)
            model, tok = self._loader(spec, options)
            self.loads += 1
            cur = self._models[spec.name] = (key, model, tok)
        return cur[1], cur[2]

    def fingerprints(self, spec: ModelSpec, options: AttributeOptions) -> tuple[str, str]:
        model, tok = self._get(spec, options)
        return model_fingerprint(model), tokenizer_fingerprint(tok)

    def model_kind(self, spec: ModelSpec, options: AttributeOptions) -> str:
        from ..engines.classifier_prep import model_kind

        return model_kind(self._get(spec, options)[0])

    def generate(self, spec: ModelSpec, options: AttributeOptions, prompt: str, max_new_tokens: int) -> str:
        from ..engines.prep import context_limit, generate_targets

        model, tok = self._get(spec, options)
        return generate_targets(model, tok, [prompt], max_new_tokens, context_limit(model))[0]

    def attribute(self, spec: ModelSpec, options: AttributeOptions, unit: WorkUnit) -> list[Any]:
        model, tok = self._get(spec, options)
        out = run_unit(model, tok, unit)
        if len(out) != len(unit.indices):
            raise RuntimeError(f"attribute returned {len(out)} results for a batch of {len(unit.indices)}")
        self.units_done += 1
        return out

    def release(self, name: str) -> None:
        if self._models.pop(name, None) is not None:
            gc.collect()


class _RemoteHandle(_ModelHandle):
    """The driver's view of a model: fingerprint memo as in the local executor, hashing done on a worker."""

    def __init__(self, spec: ModelSpec, options: AttributeOptions, cache: ResultCache | None, executor: RayExecutor):
        super().__init__(spec, options, cache, loader=_default_loader)
        self._executor = executor

    def get(self) -> tuple[Any, Any]:  # pragma: no cover - the driver never loads a model
        raise RuntimeError("the Ray executor loads models on its workers only")

    def model_kind(self) -> str:
        actor = self._executor._pool()[0]
        return self._executor._wait(actor.model_kind.remote(self.spec, self.options))

    def _compute_fingerprints(self) -> tuple[str, str]:
        actor = self._executor._pool()[0]
        return self._executor._wait(actor.fingerprints.remote(self.spec, self.options))


class RayExecutor:
    """Computes work units on a pool of Ray actors (see the module docstring).

    Args:
        address: Ray cluster address (``host:port``, ``ray://host:port``, ``auto``); None
            starts a private local Ray on 127.0.0.1 (no dashboard, no usage statistics).
        workers: actors in the pool (default: as many as the cluster's CPUs, or GPUs when
            ``gpus_per_worker`` is set, allow).
        cpus_per_worker, gpus_per_worker: resources each actor asks for (fractions allowed).
        cache: where model fingerprints of local folders are memoized (as the local executor).
        loader: how a worker loads a model (default: from ``spec.ref``); must be picklable.
        max_restarts: times Ray restarts a dead actor; max_task_retries: times a unit held by
            a dead actor is retried.
        depth: units in flight per actor (2 keeps each actor busy while results travel).
        threads_per_worker: torch threads of each actor (default: Ray's, ``max(1, cpus_per_worker)``).
        connect_timeout: seconds to wait for a cluster at ``address`` to answer.
        num_cpus: CPUs of a private local Ray (default: all).

    Raises:
        ExecutorError: Ray not installed (names the ``[ray]`` extra), or no cluster answers.
    """

    def __init__(self, address: str | None = None, *, workers: int | None = None, cpus_per_worker: float = 1.0,
                 gpus_per_worker: float = 0.0, cache: ResultCache | None = None, loader: ModelLoader | None = None,
                 max_restarts: int = 3, max_task_retries: int = 3, depth: int = 2, connect_timeout: float = 10.0,
                 num_cpus: int | None = None, threads_per_worker: int | None = None):
        if workers is not None and workers < 1:
            raise ExecutorError(f"workers must be at least 1, got {workers}")
        if cpus_per_worker < 0 or gpus_per_worker < 0:
            raise ExecutorError("cpus_per_worker and gpus_per_worker must not be negative")
        hp = _host_port(address) if address else None
        if address is None and "ray" not in sys.modules and not os.environ.get("RAY_AUTH_MODE"):
            # a private instance gets a private token, kept in the environment (nothing written to ~/.ray);
            # Ray reads the mode when it is imported, so this must come first
            os.environ["RAY_AUTH_MODE"] = "token"
            os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))
        self.ray = import_ray(loopback=address is None or (hp is not None and _is_loopback(hp[0])))
        self.address, self.workers, self.depth = address, workers, max(1, int(depth))
        self.cpus_per_worker, self.gpus_per_worker = float(cpus_per_worker), float(gpus_per_worker)
        self.cache, self.loader, self.threads_per_worker = cache, loader, threads_per_worker
        self.max_restarts, self.max_task_retries = int(max_restarts), int(max_task_retries)
        self._actors: list[Any] = []
        self._handles: dict[str, _RemoteHandle] = {}
        self._owns_ray = False
        self._releases: list[Any] = []
        self._rr = 0
        self._connect(connect_timeout, num_cpus)

    # ------------------------------------------------------------------ connection
    def _connect(self, timeout: float, num_cpus: int | None) -> None:
        ray = self.ray
        if self.address is not None:
            check_ray_address(self.address, timeout)
        if ray.is_initialized():
            return  # the caller's Ray session; it stays theirs
        kw: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING,
                              "configure_logging": False}
        if self.address is None:
            ray.init(address="local", include_dashboard=False, num_cpus=num_cpus, **kw)
            self._owns_ray = True
            ip = ray.util.get_node_ip_address()
            if not _is_loopback(ip):
                ray.shutdown()
                raise ExecutorError(
                    f"the local Ray instance would listen on {ip}, not on 127.0.0.1, because Ray was imported "
                    "before the executor could configure it; set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in the "
                    "environment, or start a cluster and pass its address")
            return
        try:
            ray.init(address=self.address, **kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            auth = "" if os.environ.get("RAY_AUTH_MODE") else (
                " (if the cluster uses token authentication, set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN)")
            raise ExecutorError(f"cannot connect to the Ray cluster at {self.address}: {str(e)[:300]}{auth}; "
                                "nothing was computed or written") from None
        self._owns_ray = True
        logger.info("connected to the Ray cluster at %s", self.address)

    def _pool_size(self) -> int:
        if self.workers is not None:
            return self.workers
        res = self.ray.cluster_resources()
        if self.gpus_per_worker > 0:
            n = res.get("GPU", 0) / self.gpus_per_worker
        elif self.cpus_per_worker > 0:
            n = res.get("CPU", 1) / self.cpus_per_worker
        else:
            n = res.get("CPU", 1)
        return max(1, int(n + 1e-9))

    def _pool(self) -> list[Any]:
        """The actors, created on first use (kept until :meth:`close`)."""
        if not self._actors:
            ray = self.ray
            env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
            if "MLFLOW_TRACKING_URI" not in env:
                with contextlib.suppress(Exception):
                    import mlflow

                    env["MLFLOW_TRACKING_URI"] = mlflow.get_tracking_uri()
            cls = ray.remote(_ModelWorker).options(
                num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker, max_restarts=self.max_restarts,
                max_task_retries=self.max_task_retries, runtime_env={"env_vars": env} if env else None)
            n = self._pool_size()
            self._actors = [cls.remote(self.loader, self.threads_per_worker) for _ in range(n)]
            logger.info("Ray executor: %d workers (%g CPU, %g GPU each)", n, self.cpus_per_worker,
                        self.gpus_per_worker)
        return self._actors

    def _wait(self, ref: Any) -> Any:
        """``ray.get`` with the worker's own error re-raised (an AttribError stays one), or an ExecutorError."""
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise
        except ray.exceptions.RayActorError as e:
            raise ExecutorError(
                f"a Ray worker died more often than it may be restarted ({self.max_restarts}): "
                f"{str(e).splitlines()[0][:200]}; the units finished so far are cached, run the job again to "
                "resume") from None
        except ray.exceptions.RaySystemError as e:
            raise ExecutorError(f"lost the Ray cluster: {str(e)[:200]}; the units finished so far are cached, "
                                "run the job again to resume") from None

    def worker_pids(self) -> list[int]:
        """Process ids of the pool's actors (in pool order)."""
        return [self._wait(a.pid.remote()) for a in self._pool()]

    def worker_stats(self) -> list[dict[str, Any]]:
        """Per actor: process id, units computed and model loads since it (re)started, models it holds."""
        return [self._wait(a.stats.remote()) for a in self._pool()]

    # ------------------------------------------------------------------ Executor protocol
    def _model_options(self, options: AttributeOptions) -> AttributeOptions:
        if self.gpus_per_worker > 0 and not options.device:
            return options.model_copy(update={"device": "cuda"})
        return options

    @staticmethod
    def _portable(spec: ModelSpec) -> ModelSpec:
        """Local relative paths made absolute (a worker's working directory may differ)."""
        upd = {}
        for key in ("ref", "tokenizer"):
            ref = getattr(spec, key)
            if ref and not os.path.isabs(ref) and Path(ref).exists():
                upd[key] = str(Path(ref).resolve())
        return spec.model_copy(update=upd) if upd else spec

    def open(self, model: ModelSpec, options: AttributeOptions) -> None:
        self._handles[model.name] = _RemoteHandle(self._portable(model), self._model_options(options), self.cache,
                                                  self)

    def fingerprints(self, model: str) -> tuple[str, str]:
        return self._handles[model].fingerprints()

    def model_kind(self, model: str) -> str:
        return self._handles[model].model_kind()

    def generate(self, model: str, prompt: str, max_new_tokens: int) -> str:
        h = self._handles[model]
        actors = self._pool()
        actor = actors[self._rr % len(actors)]
        self._rr += 1
        return self._wait(actor.generate.remote(h.spec, h.options, prompt, max_new_tokens))

    def map(self, units: Iterable[WorkUnit]) -> Iterator[tuple[WorkUnit, list[Any]]]:
        ray = self.ray
        actors = self._pool()
        busy = [0] * len(actors)
        inflight: dict[Any, tuple[WorkUnit, int]] = {}
        todo = iter(units)
        more = True
        try:
            while True:
                while more and len(inflight) < self.depth * len(actors):
                    unit = next(todo, None)
                    if unit is None:
                        more = False
                        break
                    i = min(range(len(actors)), key=busy.__getitem__)
                    h = self._handles[unit.model]
                    opts = self._model_options(unit.options)
                    inflight[actors[i].attribute.remote(h.spec, h.options, _with_options(unit, opts))] = (unit, i)
                    busy[i] += 1
                if not inflight:
                    return
                ready, _ = ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    unit, i = inflight.pop(ref)
                    busy[i] -= 1
                    yield unit, self._wait(ref)
        finally:
            for ref in inflight:  # the consumer stopped (error, cancel): drop what is queued
                with contextlib.suppress(Exception):
                    ray.cancel(ref)

    def release(self, model: str) -> None:
        if self._handles.pop(model, None) is not None:
            self._releases = [a.release.remote(model) for a in self._actors]

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Stop the actors; shut Ray down when this executor started or connected it."""
        ray = self.ray
        if self._releases:  # let queued releases finish rather than die with their actor
            with contextlib.suppress(Exception):
                ray.wait(self._releases, num_returns=len(self._releases), timeout=10)
            self._releases = []
        for a in self._actors:
            with contextlib.suppress(Exception):
                ray.kill(a)
        self._actors = []
        self._handles.clear()
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _with_options(unit: WorkUnit, options: AttributeOptions) -> WorkUnit:
    if options is unit.options:
        return unit
    import dataclasses

    return dataclasses.replace(unit, options=options)
