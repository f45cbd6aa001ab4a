"""Run the job service with uvicorn (what ``attrib-mlops serve`` calls).

:func:`serve` checks everything before it binds: the token rule (no non-loopback
address without a token), the extra's packages, the tracking store, and with the Ray
executor the cluster (a wrong address fails fast). Jobs a previous service left
queued or running are resumed. Ctrl+C (or SIGTERM) stops it; a running job goes back
to QUEUED after its unit in flight and resumes at the next start.

Example:
    $ export ATTRIB_MLOPS_SERVICE_TOKEN=$(python -c "import secrets; print(secrets.token_urlsafe(32))")
    $ attrib-mlops serve --tracking-uri sqlite:///mlflow.db --port 8000
    $ curl -H "Authorization: Bearer $ATTRIB_MLOPS_SERVICE_TOKEN" localhost:8000/api/jobs
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import AttribError
from .auth import TOKEN_ENV, check_bind

__all__ = ["serve", "SERVICE_EXTRA"]

SERVICE_EXTRA = "pip install 'attrib-mlops[service]'"


def serve(*, address: str = "127.0.0.1", port: int = 8000, tracking_uri: str | None = None,
          token: str | None = None, workdir: str | Path = ".attrib-service", experiment: str = "attrib-mlops-service",
          executor: Any = None, allow_remote_code: bool = False, verbose: bool = False,
          say: Callable[[str], None] = print, warn: Callable[[str], None] = print) -> None:
    """Serve the job service until interrupted (see the module docstring).

    Args:
        address, port: where to listen (a non-loopback address needs ``token``).
        tracking_uri: MLflow store of the job records (default: MLflow's current one).
        token: bearer token of every ``/api`` request (None: none, loopback only).
        workdir: the service's folder (cache, spool, downloads).
        experiment: MLflow experiment of the jobs.
        executor: an :class:`~attrib_mlops.jobs.executor_choice.ExecutorChoice` (default local).
        allow_remote_code: accept specs with ``trust_remote_code``.
        verbose: uvicorn's access log and INFO messages.
        say, warn: where messages go.

    Raises:
        InputError: a public address without a token, a short token; AttribError: the
            ``[service]`` extra missing, a Ray cluster that does not answer.
    """
    check_bind(address, token)
    try:
        import fastapi  # noqa: F401
        import fastapi_offline  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise AttribError(f"the job service needs {e.name}, which is not installed: {SERVICE_EXTRA}") from None
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from ..jobs.executor_choice import ExecutorChoice
    from ..tracking.runs import resolve_tracking_uri
    from .app import create_app
    from .registry import JobRegistry

    choice = executor or ExecutorChoice()
    uri = resolve_tracking_uri(tracking_uri)
    registry = JobRegistry(tracking_uri=uri, workdir=workdir, experiment=experiment, executor=choice,
                           allow_remote_code=allow_remote_code)
    resumed = registry.start()
    try:
        app = create_app(registry, token)
        if resumed:
            say(f"resuming {len(resumed)} unfinished job(s)")
        if token is None:
            warn(f"no token: any local user or process can submit jobs; set {TOKEN_ENV}")
        say(f"job service at http://{address}:{port}/ (docs at /docs; jobs in {uri}, experiment {experiment}; "
            f"executor {choice.describe()}). Ctrl+C to stop.")
        uvicorn.run(app, host=address, port=port, log_level="info" if verbose else "warning",
                    ws="websockets-sansio", server_header=False)
    finally:
        registry.stop()
