"""The ``serve`` command: the job service (:mod:`attrib_mlops.service`), REST + WebSocket over the job runner."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..service.auth import TOKEN_ENV
from .app import VerboseOpt, app, cli_errors, console, err_console
from .executor_options import (
    CpusPerWorkerOpt,
    ExecutorOpt,
    GpusPerWorkerOpt,
    RayAddressOpt,
    RayWorkersOpt,
    executor_choice,
)


@app.command("serve")
@cli_errors
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
    verbose: VerboseOpt = False,
) -> None:
    """Serve the job service (FastAPI): POST/GET/DELETE /api/jobs, WS /api/ws/jobs/{id}, docs at /docs.

    Every job is an MLflow run (status QUEUED/RUNNING/FINISHED/FAILED/KILLED, params, results), so a restarted service lists its jobs and resumes unfinished ones from the cache. Binds 127.0.0.1 by default; another address needs a bearer token.
    """  # noqa: E501
    from ..service.serve import serve

    choice = executor_choice(executor, ray_address, ray_workers, cpus_per_worker, gpus_per_worker)
    serve(address=address, port=port, tracking_uri=tracking_uri, token=token, workdir=workdir, experiment=experiment,
          executor=choice, allow_remote_code=allow_remote_code, verbose=verbose,
          say=lambda m: console.print(escape(m), soft_wrap=True),
          warn=lambda m: err_console.print(f"[yellow]warning:[/yellow] {escape(m)}", soft_wrap=True))
