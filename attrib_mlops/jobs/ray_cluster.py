"""A loopback-only Ray head node in a subprocess: for tests, benchmarks and trying the Ray executor.

:class:`LocalRayCluster` runs ``ray start --head --block`` bound to 127.0.0.1 with
free ports, its own temporary folder, no dashboard and no usage statistics, and
stops exactly the processes it started (``SIGTERM`` to the ``ray start`` process,
which drains and stops its node; ``SIGKILL`` by process id for whatever is left).
It never calls ``ray stop``, which would stop every Ray node of the user on the
machine.

The node uses Ray's token authentication with a random token of its own
(:attr:`LocalRayCluster.auth_env`: ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN``), so
nothing is written to ``~/.ray`` and another local user cannot submit work to it; a
driver sets the same two variables before it connects (:meth:`LocalRayCluster.driver_env`).

Ray (2.x) turns ``--node-ip-address 127.0.0.1`` into the machine's routable address
and lets its servers listen on every interface unless
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set; :func:`loopback_env` sets it, so
the node (and a driver that connects to it) stays on loopback. A driver process
must have it in its environment *before* it imports Ray (the executor does this).

Example:
    >>> with LocalRayCluster(num_cpus=2) as cluster:          # doctest: +SKIP
    ...     run_job(spec, executor=RayExecutor(address=cluster.address))
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["LocalRayCluster", "loopback_env", "free_port"]

#: Environment that keeps a single-node Ray on loopback (see the module docstring).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def loopback_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default ``os.environ``) plus the variables that keep Ray on 127.0.0.1 and silent."""
    env = dict(os.environ if base is None else base)
    env.update(LOOPBACK_ENV)
    return env


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_cli() -> list[str]:
    exe = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
    if exe is None:
        from ..errors import AttribError

        raise AttribError("the 'ray' command is not installed; install the extra: pip install 'attrib-mlops[ray]'")
    return [exe]


class LocalRayCluster:
    """A Ray head node on 127.0.0.1, started in a subprocess and stopped by process id.

    Args:
        num_cpus: CPUs the node offers (actors may ask for fractions).
        num_gpus: GPUs the node offers (default: none, even on a GPU machine).
        object_store_memory: bytes of shared memory for the object store.
        start_timeout: seconds to wait for the node to answer.

    Attributes:
        address: ``127.0.0.1:<port>`` to pass to ``ray.init`` or ``--ray-address``.
        temp_dir: the node's session folder (logs under ``session_*/logs``).
    """

    def __init__(self, num_cpus: float = 2, num_gpus: int = 0, object_store_memory: int = 150_000_000,
                 start_timeout: float = 90.0):
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.object_store_memory = object_store_memory
        self.start_timeout = start_timeout
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # unix socket paths must stay short (< 108 bytes): a short folder under /tmp
        self.temp_dir = tempfile.mkdtemp(prefix="rayc-", dir="/tmp" if os.path.isdir("/tmp") else None)
        self._proc: subprocess.Popen | None = None
        self._log = Path(self.temp_dir) / "ray-start.log"
        #: What a driver needs to be let in (Ray's token authentication).
        self.auth_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}

    def driver_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a process that connects to this node: loopback settings and the token."""
        env = loopback_env(base)
        env.update(self.auth_env)
        return env

    def start(self) -> LocalRayCluster:
        """Start the node and wait until it accepts connections; raises ``RuntimeError`` with its log if not."""
        env = self.driver_env()
        env["AUTOSCALER_METRIC_PORT"] = str(free_port())
        env["DASHBOARD_METRIC_PORT"] = str(free_port())
        cmd = _ray_cli() + [
            "start", "--head", "--block", "--disable-usage-stats", "--include-dashboard=false",
            "--node-ip-address", "127.0.0.1", "--port", str(self.port),
            "--num-cpus", str(self.num_cpus), "--num-gpus", str(self.num_gpus),
            "--object-store-memory", str(int(self.object_store_memory)), "--temp-dir", self.temp_dir,
            "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
            "--dashboard-agent-grpc-port", str(free_port()), "--metrics-export-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()), "--dashboard-port", str(free_port()),
        ]
        log = self._log.open("wb")
        self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if b"block forever" in self._log.read_bytes():  # printed once every process is up
                return self
            time.sleep(0.3)
        text = self._log.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"ray start did not come up within {self.start_timeout:.0f}s:\n{text}")

    def pids(self) -> list[int]:
        """Process ids of this node's processes (the ``ray start`` process and everything under its session)."""
        import psutil

        out = []
        if self._proc is not None and self._proc.poll() is None:
            out.append(self._proc.pid)
        for p in psutil.process_iter(["pid", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                cmd = " ".join(p.info["cmdline"] or [])
                if self.temp_dir in cmd and p.info["pid"] not in out:
                    out.append(p.info["pid"])
                    out += [c.pid for c in p.children(recursive=True) if c.pid not in out]
        return out

    def stop(self, timeout: float = 40.0) -> None:
        """Stop the node: SIGTERM to ``ray start`` (it drains and stops its processes), then SIGKILL leftovers."""
        import psutil

        procs = []
        for pid in self.pids():
            with contextlib.suppress(psutil.Error):
                procs.append(psutil.Process(pid))
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout)
        _gone, alive = psutil.wait_procs(procs, timeout=5)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(alive, timeout=5)
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.wait(5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
