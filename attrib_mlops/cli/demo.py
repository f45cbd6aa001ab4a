"""The ``demo`` command: two tiny training runs with attribution tracked in MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from .app import VerboseOpt, app, cli_errors, console

@app.command("demo")
@cli_errors
def demo_cmd(
    store: Annotated[
        Path | None,
        typer.Option("--store", help="Folder for the local MLflow store (mlflow.db, artifacts) and checkpoints "
                     "[default: attrib-demo]."),
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option("--tracking-uri", help="Log to this MLflow tracking URI. Default: MLFLOW_TRACKING_URI when "
                     "set and --store is not given, else the local store in --store."),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=10, help="Training steps per run.")] = 800,
    log_every: Annotated[
        int, typer.Option("--log-every", min=1, help="Attribute the probe set every N steps.")
    ] = 50,
    quick: Annotated[bool, typer.Option("--quick", help="A 1-minute version (fewer steps).")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show training progress.")] = True,
    verbose: VerboseOpt = False,
) -> None:
    """Train two tiny models on a synthetic key-value task with attribution tracked in MLflow.

    Logs to --tracking-uri, else MLFLOW_TRACKING_URI (unless --store is given), else a local store in attrib-demo/. Everything runs locally (no network): a tiny GPT-2 is fine-tuned with the HF Trainer while the AttributionCallback attributes a fixed probe set every --log-every steps. The second run learns a shortcut (a spurious hint cue), so the two runs reach similar accuracy but attribute differently. Then prints how to open the MLflow UI and the dashboard.
    """  # noqa: E501
    from ..demo_runner import EXPERIMENT, DemoConfig, run_demo

    import os

    if tracking_uri is None and store is None:
        tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or None  # MLflow's own convention
    cfg = DemoConfig(store=store or Path("attrib-demo"), max_steps=steps, log_every=log_every,
                     tracking_uri_override=tracking_uri)
    if quick:
        cfg.max_steps, cfg.log_every = 240, 60
    out = run_demo(cfg, progress=progress)
    uri = out["tracking_uri"]
    console.print()
    console.print(f"[bold green]Demo done.[/bold green] MLflow store: {escape(uri)} (experiment {EXPERIMENT})",
                  soft_wrap=True)
    for kind, run_id in out["runs"].items():
        acc = out["accuracy"][kind]
        sec = out["seconds"][kind]
        console.print(
            f"  {kind:9s} run {run_id}: probe accuracy {acc['before']:.2f} -> {acc['after']:.2f}, "
            f"attribution {sec['attribution']:.1f}s of {sec['total']:.0f}s",
            soft_wrap=True,
        )
    console.print("\nOpen the MLflow UI (metrics attrib/... next to the loss; artifacts attribution/steps/*/view.html):")
    console.print(f"  mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000", soft_wrap=True)
    console.print("Open the attribution dashboard:")
    console.print(f"  attrib-mlops dashboard --tracking-uri {uri}", soft_wrap=True)
    runs = list(out["runs"].values())
    if len(runs) == 2:
        console.print("Check the shortcut run against the clean one (exit code 1 = attribution regression):")
        console.print(f"  attrib-mlops check --baseline runs:/{runs[0]}@latest --candidate runs:/{runs[1]}@latest "
                      f"--tracking-uri {uri}", soft_wrap=True)
