"""``attrib-mlops serve``: run the job service with uvicorn.

The command checks everything before it binds: the token rule (no non-loopback
address without a token), the tracking store, and with ``--executor ray`` the
cluster (a wrong address fails fast). Jobs a previous service left queued or
running are resumed. Ctrl+C (or SIGTERM) stops it; a running job goes back to
QUEUED after its unit in flight and resumes at the next start.

Example:
    $ export ATTRIB_MLOPS_SERVICE_TOKEN=$(python -c "import secrets; print(secrets.token_urlsafe(32))")
    $ attrib-mlops serve --tracking-uri sqlite:///mlflow.db --port 8000
    $ curl -H "Authorization: Bearer $ATTRIB_MLOPS_SERVICE_TOKEN" localhost:8000/api/jobs
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..cli_executor import CpusPerWorkerOpt, ExecutorOpt, GpusPerWorkerOpt, RayAddressOpt, RayWorkersOpt
from .auth import TOKEN_ENV

__all__ = ["serve_cmd", "SERVICE_EXTRA"]

SERVICE_EXTRA = "pip install 'attrib-mlops[service]'"


def serve_cmd(
    address: Annotated[str, typer.Option("--address", help="Interface to bind. Anything but loopback needs a "
                                         "token (see docs/scale.md).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="TCP port.")] = 8000,
    tracking_uri: Annotated[
        str | None, typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI",
                                 help="MLflow store holding the job records (default: MLFLOW_TRACKING_URI, else "
                                      "MLflow's default).")] = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar=TOKEN_ENV, show_default=False,
                                 help=f"Bearer token every /api request must carry (prefer the {TOKEN_ENV} "
                                      "environment variable: a command line is visible to other users).")] = None,
    workdir: Annotated[Path, typer.Option("--workdir", help="Service folder: result cache, spool, downloads.")]
    = Path(".attrib-service"),
    experiment: Annotated[str, typer.Option("--experiment", help="MLflow experiment of the jobs.")]
    = "attrib-mlops-service",
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_workers: RayWorkersOpt = None,
    cpus_per_worker: CpusPerWorkerOpt = 1.0,
    gpus_per_worker: GpusPerWorkerOpt = 0.0,
    allow_remote_code: Annotated[
        bool, typer.Option("--allow-remote-code", help="Accept jobs with trust_remote_code (runs code shipped "
                           "with models; off by default).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Tracebacks and INFO logs.")] = False,
) -> None:
    """Serve the job service (FastAPI): POST/GET/DELETE /api/jobs, WS /api/ws/jobs/{id}, docs at /docs.

    Every job is an MLflow run (status QUEUED/RUNNING/FINISHED/FAILED/KILLED, params, results), so a restarted service lists its jobs and resumes unfinished ones from the cache. Binds 127.0.0.1 by default; another address needs a bearer token.
    """  # noqa: E501
    from ..cli import console, err_console
    from ..cli_executor import executor_choice
    from ..errors import AttribError
    from .auth import check_bind

    check_bind(address, token)
    choice = executor_choice(executor, ray_address, ray_workers, cpus_per_worker, gpus_per_worker)
    try:
        import fastapi  # noqa: F401
        import fastapi_offline  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise AttribError(f"the job service needs {e.name}, which is not installed: {SERVICE_EXTRA}") from None
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from ..tracking.runs import resolve_tracking_uri
    from .app import create_app
    from .registry import JobRegistry

    uri = resolve_tracking_uri(tracking_uri)
    registry = JobRegistry(tracking_uri=uri, workdir=workdir, experiment=experiment, executor=choice,
                           allow_remote_code=allow_remote_code)
    resumed = registry.start()
    try:
        app = create_app(registry, token)
        if resumed:
            console.print(f"resuming {len(resumed)} unfinished job(s)")
        if token is None:
            err_console.print("[yellow]warning:[/yellow] no token: any local user or process can submit jobs; "
                              f"set {TOKEN_ENV}", soft_wrap=True)
        console.print(f"job service at http://{address}:{port}/ (docs at /docs; jobs in {uri}, experiment "
                      f"{experiment}; executor {choice.describe()}). Ctrl+C to stop.", soft_wrap=True)
        uvicorn.run(app, host=address, port=port, log_level="info" if verbose else "warning",
                    ws="websockets-sansio", server_header=False)
    finally:
        registry.stop()
