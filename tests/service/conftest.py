"""A real job service (``attrib-mlops serve`` under uvicorn) in a subprocess on a free loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789abcdef"


class ServiceProcess:
    """``python -m attrib_mlops.cli serve`` on 127.0.0.1:<free port>, stopped by its process id."""

    def __init__(self, root: Path, *, token: str | None = TOKEN, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None):
        from attrib_mlops.jobs.ray_cluster import free_port

        self.root, self.token, self.args = root, token, args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tracking_uri = f"sqlite:///{root}/mlflow.db"
        self.workdir = root / "work"
        self.env = dict(env or os.environ)
        self.env["PYTHONPATH"] = str(REPO) + os.pathsep + self.env.get("PYTHONPATH", "")
        self.env.pop("ATTRIB_MLOPS_SERVICE_TOKEN", None)
        if token:
            self.env["ATTRIB_MLOPS_SERVICE_TOKEN"] = token
        self.proc: subprocess.Popen | None = None
        self.log = root / "service.log"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def start(self, timeout: float = 240.0) -> ServiceProcess:
        import httpx

        cmd = [sys.executable, "-m", "attrib_mlops.cli", "serve", "--port", str(self.port), "--tracking-uri",
               self.tracking_uri, "--workdir", str(self.workdir), *self.args]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env, cwd=self.root)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/api/health", timeout=5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.kill()
        raise RuntimeError(f"the service did not answer within {timeout:.0f}s:\n{self.log.read_text()[-3000:]}")

    def stop(self, timeout: float = 90.0) -> int | None:
        """SIGTERM (graceful: uvicorn shuts down, the registry stops), SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        """SIGKILL: a crash (nothing gets to clean up)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    svc = ServiceProcess(root).start()
    yield svc
    svc.stop()


@pytest.fixture
def service_process():
    """The :class:`ServiceProcess` class, to start services of one's own (stopped by the caller)."""
    return ServiceProcess
