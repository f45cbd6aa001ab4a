"""The ``sync`` command: upload the attribution steps a training left in its local spool.

A training whose tracking server was down at its end (see ``flush_timeout_s`` of the
callbacks) leaves the steps it could not upload in the spool; its last log line names
this command. Each entry is committed as the writer would have: files, then the
manifest, then the metrics, exactly once (entries already committed are skipped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..errors import InputError
from .app import VerboseOpt, app, cli_errors, console, err_console, fail


@app.command("sync")
@cli_errors
def sync_cmd(
    spool_dir: Annotated[
        Path | None,
        typer.Argument(show_default=False, help="Spool directory the training used (its spool_dir) "
                       "\\[default: ~/.cache/attrib-mlops/spool]."),
    ] = None,
    run_id: Annotated[
        list[str] | None,
        typer.Option("--run-id", "-r", help="Upload only this run's steps (repeat for several). Default: every "
                     "run in the spool."),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI",
                     help="The MLflow tracking URI the training logged to (default: MLFLOW_TRACKING_URI or "
                     "MLflow's)."),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Upload attribution steps left in a local spool (tracking server down at the end of training) to MLflow.

    Every pending step of each run in SPOOL_DIR (or only --run-id) is uploaded to --tracking-uri in step order: its files, then the manifest entry, then its metrics; a step already uploaded is not uploaded twice. Entries stay in the spool until they are committed, so running the command again after a failure is safe. Exit code 0 = everything uploaded (or nothing to do), 2 = bad input or the server still unreachable.
    """  # noqa: E501
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from ..tracking import AttributionWriter
    from ..tracking.errors import TrackingError, is_unreachable
    from ..tracking.spool import Spool, default_spool_dir

    root = Path(spool_dir) if spool_dir is not None else default_spool_dir()
    if not root.is_dir():
        raise InputError(f"spool directory '{root}' does not exist; give the spool_dir the training used")
    runs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and p.name != "unassigned" and Spool(root, p.name).pending())
    if run_id:
        missing = [r for r in run_id if r not in runs]
        if missing:
            raise InputError(f"nothing spooled for run {', '.join(missing)} in '{root}'; runs with pending steps: "
                             f"{', '.join(runs) or 'none'}")
        runs = list(dict.fromkeys(run_id))
    if not runs:
        console.print(f"nothing to upload in {escape(str(root))}", soft_wrap=True)
        return
    client = MlflowClient(tracking_uri=tracking_uri)
    uri = client.tracking_uri
    for rid in runs:
        try:
            client.get_run(rid)
        except MlflowException as e:
            if is_unreachable(e):
                raise fail(f"tracking server unreachable at {uri}; nothing uploaded, run the command again later")
            raise fail(f"run {rid} is not in the tracking store {uri}: give the --tracking-uri the training "
                       "logged to") from None
        writer = AttributionWriter(client, rid, spool_dir=root, strict=True)
        n = len(writer.spool.entries())
        with err_console.status(f"run {rid}: uploading {n} spooled step entr{'y' if n == 1 else 'ies'}"):
            try:
                writer.flush()
            except TrackingError as e:
                left = len(writer.spool.entries())
                raise fail(f"run {rid}: {left} of {n} spooled entries not uploaded ({str(e)[:200]}); they stay in "
                           f"{writer.spool_dir}, run the command again") from None
        console.print(f"run {escape(rid)}: uploaded {n} spooled step entr{'y' if n == 1 else 'ies'} to {escape(uri)}",
                      soft_wrap=True)
