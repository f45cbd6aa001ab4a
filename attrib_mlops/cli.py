"""The ``attrib-mlops`` command line.

Adding a command: write a thin function that parses arguments and calls library
code, decorate it with ``@app.command(...)`` and ``@cli_errors``, and import heavy
modules (torch, transformers, the job runner) inside the function so ``--help``
stays fast. ``@cli_errors`` turns every :class:`~attrib_mlops.errors.AttribError`
and pydantic ``ValidationError`` into one red line on stderr and exit code 2
(``--verbose`` adds the traceback). Print results with :data:`console` and
messages with :data:`err_console`; :func:`metrics_table` renders mean metrics.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import AttribError

__all__ = ["app", "console", "err_console", "cli_errors", "fail", "metrics_table", "EXIT_USER_ERROR"]

#: Exit code of a user-actionable error (bad spec, bad input, unloadable model).
EXIT_USER_ERROR = 2

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

app = typer.Typer(
    name="attrib-mlops",
    help=(
        "Token attribution of language models as a tracked signal: which input tokens drove each "
        "output token. Run attribution jobs (models x methods x samples), cache their results and "
        "compare models."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _State:
    verbose = False


STATE = _State()

VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show full tracebacks on errors and INFO logs.")
]

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = EXIT_USER_ERROR) -> typer.Exit:
    """Print ``error: <message>`` as one red line on stderr; return the ``typer.Exit`` to raise."""
    one_line = " ".join(str(message).splitlines())
    err_console.print(f"[bold red]error:[/bold red] [red]{escape(one_line)}[/red]", soft_wrap=True)
    return typer.Exit(code)


def cli_errors(fn: F) -> F:
    """Decorator for commands: user errors -> one red line + exit 2; tracebacks only with ``--verbose``.

    A command's own ``verbose`` parameter (see :data:`VerboseOpt`) and the global
    ``attrib-mlops --verbose`` both switch tracebacks on.
    """
    from pydantic import ValidationError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verbose = bool(kwargs.get("verbose")) or STATE.verbose
        if verbose:
            _setup_logging(True)
        try:
            return fn(*args, **kwargs)
        except (AttribError, ValidationError) as e:
            if verbose:
                err_console.print_exception()
            if isinstance(e, ValidationError):
                from .options import format_validation_error

                msg = format_validation_error(e, "input")
            else:
                msg = str(e)
            raise fail(msg) from None
        except KeyboardInterrupt:
            raise fail("interrupted; results computed so far are cached, run the same command again to resume",
                       130) from None

    return wrapper  # type: ignore[return-value]


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (it may be replaced, e.g. by test runners)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _setup_logging(verbose: bool) -> None:
    """With ``--verbose``, INFO logs of attrib_mlops go to stderr (the root logger is left alone)."""
    if not verbose:
        return
    log = logging.getLogger("attrib_mlops")
    log.setLevel(logging.INFO)
    if not any(getattr(h, "_attrib_cli", False) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._attrib_cli = True  # type: ignore[attr-defined]
        log.addHandler(handler)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


#: Metric columns shown by ``run`` (those present in the results), in this order, with short headers.
TABLE_METRICS = {
    "hit_at_1": "hit@1",
    "mean_rank": "rank",
    "topk_mass": "top-k",
    "concentration_entropy": "entropy",
    "mean_probability": "p(tgt)",
}


def metrics_table(rows: Sequence[dict[str, Any]], title: str | None = None) -> Table:
    """A rich table of rows ``{"model", "method", "computed"?, "cached"?, "metrics": {...}}``.

    Columns: model, method, ``new/cached`` (when counts are given) and the metrics of
    :data:`TABLE_METRICS` that any row has (means over samples; ``-`` = undefined); the full
    set is in summary.json.
    """
    present = [m for m in TABLE_METRICS if any(r.get("metrics", {}).get(m) is not None for r in rows)]
    counts = any("computed" in r for r in rows)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("model", no_wrap=True)
    table.add_column("method", no_wrap=True)
    if counts:
        table.add_column("new/cached", justify="right", min_width=10)
    for m in present:
        table.add_column(TABLE_METRICS[m], justify="right")
    for r in rows:
        cells = [str(r["model"]), str(r["method"])]
        if counts:
            cells.append(f"{r.get('computed', 0)}/{r.get('cached', 0)}")
        cells += [_fmt(r.get("metrics", {}).get(m)) for m in present]
        table.add_row(*cells)
    return table


@app.callback()
def _main(verbose: VerboseOpt = False) -> None:
    STATE.verbose = verbose
    _setup_logging(verbose)


# =========================================================================== commands
@app.command("run")
@cli_errors
def run_cmd(
    job: Annotated[
        Path,
        typer.Argument(
            help="Job spec (.yaml or .json): models, methods, samples, targets, options. "
            "See recipes/job_keyvalue.yaml.",
            show_default=False,
        ),
    ],
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", "-o", help="Write results here instead of the spec's output_dir "
                     "(default attrib-results/<name>)."),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Result cache folder instead of the spec's cache_dir "
                     "(default .attrib-cache). Results found there are not recomputed."),
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar per (model, method) pair.")
    ] = True,
    mlflow_log: Annotated[
        bool,
        typer.Option("--mlflow/--no-mlflow", help="Also log the job as one MLflow run (tracking URI from "
                     "--tracking-uri or MLFLOW_TRACKING_URI, else MLflow's local default)."),
    ] = True,
    tracking_uri: Annotated[
        str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (e.g. sqlite:///mlflow.db).")
    ] = None,
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="MLflow experiment name (default: the job name).")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run an attribution job: every model x method over every sample.

    Finished results are cached (content-keyed), so an interrupted run resumes where it stopped and an unchanged re-run computes nothing. Writes manifest.json, results/<model>/<method>.jsonl and summary.json to the output folder, logs one MLflow run per job (status RUNNING/FINISHED/FAILED; with two or more models on the same targets also their difference summaries) and prints the mean metrics per (model, method).
    """  # noqa: E501
    from .job import load_job, run_job

    spec = load_job(job)
    update: dict[str, Any] = {}
    if output_dir is not None:
        update["output_dir"] = str(output_dir)
    if cache_dir is not None:
        update["cache_dir"] = str(cache_dir)
    if update:
        spec = spec.model_copy(update=update)
    from .job import LocalFolderSink

    sinks: list[Any] = [LocalFolderSink(spec.output_dir)]
    mlflow_sink = None
    if mlflow_log:
        from .tracking.job_sink import MlflowJobSink

        mlflow_sink = MlflowJobSink(tracking_uri=tracking_uri, experiment=experiment)
        sinks.append(mlflow_sink)
    outcome = run_job(spec, sinks=sinks, progress=progress)
    rows = [
        {"model": p.model, "method": p.method, "computed": p.computed, "cached": p.cached, "metrics": p.metrics}
        for p in outcome.pairs
    ]
    console.print(metrics_table(rows, title=f"job {outcome.name}: {outcome.n_samples} samples (means)"))
    console.print(
        f"{outcome.computed} results computed, {outcome.cached} from cache. "
        f"Results in [bold]{escape(str(outcome.output_dir))}[/bold]",
        soft_wrap=True,
    )
    if mlflow_sink is not None:
        console.print(f"MLflow run [bold]{mlflow_sink.run_id}[/bold] at {escape(mlflow_sink.tracking_uri)}", soft_wrap=True)


@app.command("methods")
@cli_errors
def methods_cmd(verbose: VerboseOpt = False) -> None:
    """List the attribution methods and which engine implements each.

    engine: auto in a job picks native when it supports the method (batched, fast), else inseq (the full catalogue).
    """  # noqa: E501
    from .api import list_methods, resolve_engine

    table_data = list_methods()
    engines = sorted(table_data)
    methods = sorted(set().union(*table_data.values()))
    table = Table(title="attribution methods", title_justify="left")
    table.add_column("method")
    for e in engines:
        table.add_column(e, justify="center")
    table.add_column("auto uses")
    for m in methods:
        auto = resolve_engine(m)
        table.add_row(m, *["yes" if m in table_data[e] else "" for e in engines], auto)
    console.print(table)


@app.command("version")
@cli_errors
def version_cmd(verbose: VerboseOpt = False) -> None:
    """Print the attrib-mlops version and the versions of the libraries that shape results."""
    from .api import library_versions

    for name, v in library_versions().items():
        console.print(f"{name} {v}")


@app.command("make-tiny-model")
@cli_errors
def make_tiny_model_cmd(
    directory: Annotated[
        Path, typer.Argument(help="Folder to write the model and tokenizer to (safetensors).", show_default=False)
    ],
    n_layer: Annotated[int, typer.Option(min=1, help="Transformer layers.")] = 2,
    n_embd: Annotated[int, typer.Option(min=8, help="Hidden size (a multiple of --n-head).")] = 64,
    n_head: Annotated[int, typer.Option(min=1, help="Attention heads.")] = 4,
    n_keys: Annotated[int, typer.Option(min=1, help="Number of key words k0.. in the vocabulary.")] = 16,
    n_values: Annotated[int, typer.Option(min=1, help="Number of value words v0.. in the vocabulary.")] = 16,
    seed: Annotated[int, typer.Option(help="Seed of the random initialisation.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Write into DIRECTORY even if it is not empty.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Build the demo's tiny GPT-2 over the key-value vocabulary and save it to DIRECTORY.

    The weights are random (untrained) and nothing is downloaded, so a job such as recipes/job_keyvalue.yaml runs end-to-end on a fresh machine. Train it with attrib_mlops.demo.train for meaningful attributions.
    """  # noqa: E501
    from .errors import InputError

    if n_embd % n_head:
        raise InputError(f"--n-embd ({n_embd}) must be a multiple of --n-head ({n_head})")
    if directory.exists() and not directory.is_dir():
        raise InputError(f"'{directory}' exists and is not a folder")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise InputError(f"'{directory}' is not empty; pass --force to write into it anyway")
    from .demo.tasks import keyvalue_vocab
    from .demo.tiny import build_tiny_model, save_tiny

    model, tok = build_tiny_model(
        keyvalue_vocab(n_keys, n_values), n_layer=n_layer, n_embd=n_embd, n_head=n_head, seed=seed
    )
    path = save_tiny(model, tok, directory)
    n_params = sum(p.numel() for p in model.parameters())
    console.print(f"saved a tiny GPT-2 ({n_params:,} parameters, {len(tok)} tokens) to {escape(str(path))}",
                  soft_wrap=True)


# ----------------------------------------------------------------------------- backfill
@app.command("backfill")
@cli_errors
def backfill_cmd(
    checkpoints: Annotated[
        Path, typer.Option("--checkpoints", help="Folder holding checkpoint-<step> folders (HF Trainer layout).")
    ],
    run_id: Annotated[
        str | None,
        typer.Option("--run-id", help="MLflow run to add the steps to (its probe set is reused). "
                     "Default: a new run."),
    ] = None,
    probe: Annotated[
        str | None,
        typer.Option("--probe", help="Probe samples for a run without one: a .json/.jsonl/.csv file or a "
                     "built-in source such as demo:keyvalue."),
    ] = None,
    method: Annotated[
        list[str] | None, typer.Option("--method", "-m", help="Attribution method (repeatable). Default: saliency.")
    ] = None,
    engine: Annotated[str, typer.Option("--engine", help="auto, native or inseq.")] = "auto",
    tracking_uri: Annotated[
        str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (default MLFLOW_TRACKING_URI).")
    ] = None,
    experiment: Annotated[
        str, typer.Option("--experiment", help="Experiment of a new run.")
    ] = "attrib-mlops-backfill",
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    verbose: VerboseOpt = False,
) -> None:
    """Attribute every saved checkpoint-<step> folder at its step into an MLflow run.

    Steps the run already lists are skipped, so an interrupted backfill can simply be re-run: it loses nothing and duplicates nothing.
    """  # noqa: E501
    from .backfill import backfill
    from .samples import ProbeSet

    probe_set = ProbeSet.from_spec(probe) if probe else None
    out = backfill(
        checkpoints,
        run_id=run_id,
        tracking_uri=tracking_uri,
        experiment=experiment,
        probe=probe_set,
        methods=method or ["saliency"],
        engine=engine,
        progress=progress,
    )
    console.print(
        f"run [bold]{out['run_id']}[/bold]: logged steps {out['logged'] or 'none'}; "
        f"already there: {out['skipped'] or 'none'}",
        soft_wrap=True,
    )


# --------------------------------------------------------------------------------- demo
@app.command("demo")
@cli_errors
def demo_cmd(
    store: Annotated[
        Path, typer.Option("--store", help="Folder for the MLflow store (mlflow.db, artifacts) and checkpoints.")
    ] = Path("attrib-demo"),
    steps: Annotated[int, typer.Option("--steps", min=10, help="Training steps per run.")] = 800,
    log_every: Annotated[
        int, typer.Option("--log-every", min=1, help="Attribute the probe set every N steps.")
    ] = 50,
    quick: Annotated[bool, typer.Option("--quick", help="A 1-minute version (fewer steps).")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show training progress.")] = True,
    verbose: VerboseOpt = False,
) -> None:
    """Train two tiny models on a synthetic key-value task with attribution tracked in MLflow.

    Everything runs locally (no network): a tiny GPT-2 is fine-tuned with the HF Trainer while the AttributionCallback attributes a fixed probe set every --log-every steps. The second run learns a shortcut (a spurious hint cue), so the two runs reach similar accuracy but attribute differently. Then prints how to open the MLflow UI and the dashboard.
    """  # noqa: E501
    from .demo.run import EXPERIMENT, DemoConfig, run_demo

    cfg = DemoConfig(store=store, max_steps=steps, log_every=log_every)
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


# ============================================================ check (regression gate) BEGIN
# Exit codes: 0 pass, 1 regression (typer.Exit(1)), 2 cannot compare (CannotCompare is an
# AttribError, which @cli_errors turns into exit code 2, like every other user error).
@app.command("check")
@cli_errors
def check_cmd(
    baseline: Annotated[
        str,
        typer.Option("--baseline", "-b", show_default=False,
                     help="Reference attribution: runs:/<run_id>\\[@<step>|@latest]\\[#<model>] (no @ = latest "
                     "step) or a results folder of 'attrib-mlops run' \\[@<model>]."),
    ],
    candidate: Annotated[
        str,
        typer.Option("--candidate", "-c", show_default=False,
                     help="Attribution to check, same forms as --baseline."),
    ],
    method: Annotated[
        list[str] | None,
        typer.Option("--method", "-m", help="Compare only this method (repeat for several). Default: every "
                     "method; a method present on one side only cannot be compared."),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option("--policy", "-p", help="YAML policy file with thresholds (per metric, per method); "
                     "unknown keys and wrong types are errors. Default policy: see docs/regression-checks.md."),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json-out", help="Write the JSON report here.")] = None,
    junit_out: Annotated[
        Path | None, typer.Option("--junit-out", help="Write a JUnit XML report here (one test case per rule).")
    ] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI",
                     help="MLflow tracking URI for runs:/ references (default: MLFLOW_TRACKING_URI or MLflow's)."),
    ] = None,
    log: Annotated[
        bool, typer.Option("--log/--no-log", help="Log the verdict (tags) and the reports (artifacts under "
                           "attribution/checks/) back to the candidate run when it is an MLflow run.")
    ] = True,
    verbose: VerboseOpt = False,
) -> None:
    """Regression check: compare the candidate's attribution to the baseline's on their shared probe samples.

    Per method it computes how well the token importances correlate, the share of samples whose top-k source tokens changed (the baseline's most important token left the candidate's top-k), ground-truth hit@k and the target probability, and checks them against the policy's thresholds (defaults and YAML format: docs/regression-checks.md). Samples whose tokens differ are skipped and counted, never compared cell by cell.

    Exit code 0 = pass, 1 = regression, 2 = cannot compare (unknown run, step not logged, method missing on one side, no shared or comparable samples, bad policy), always with a message saying why.
    """  # noqa: E501
    from .check import compare, load_policy, log_verdict

    pol = load_policy(policy) if policy is not None else None
    result = compare(baseline, candidate, pol, method or None, tracking_uri=tracking_uri)
    unwritten = []
    for path, text in ((json_out, result.to_json), (junit_out, result.to_junit_xml)):
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text(), encoding="utf-8")
            except OSError as e:
                unwritten.append(f"cannot write the report '{path}': {e.strerror or e}")
    if log and result.candidate.get("run_id"):
        try:
            folder = log_verdict(result, result.candidate["run_id"], tracking_uri)
            err_console.print(f"verdict logged to run {result.candidate['run_id']} ({escape(folder)})",
                              soft_wrap=True)
        except Exception as e:  # noqa: BLE001 - the verdict stands even if it cannot be logged back
            err_console.print(f"[yellow]warning:[/yellow] could not log the verdict back to the candidate run: "
                              f"{escape(str(e)[:300])}", soft_wrap=True)
    console.print(escape(result.summary_text()), soft_wrap=True)
    if unwritten:  # CI would miss the report it asked for: a user error, like a bad path anywhere else
        raise fail("; ".join(unwritten), code=2)
    if result.verdict == "cannot_compare":
        raise fail(result.message(), code=2)
    if result.verdict == "regression":
        err_console.print(f"[bold red]{escape(result.message())}[/bold red]", soft_wrap=True)
        raise typer.Exit(1)


# ============================================================== check (regression gate) END


# ============================================================== dashboard (panel_app/) BEGIN
@app.command("dashboard")
@cli_errors
def dashboard_cmd(
    tracking_uri: Annotated[
        str | None,
        typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI",
                     help="MLflow tracking URI to read (default: MLFLOW_TRACKING_URI or MLflow's default)."),
    ] = None,
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="TCP port.")] = 5006,
    address: Annotated[
        str, typer.Option("--address", help="Interface to bind. The default keeps the dashboard on this machine; "
                          "see docs/dashboard.md before exposing it.")
    ] = "127.0.0.1",
    allow_websocket_origin: Annotated[
        list[str] | None,
        typer.Option("--allow-websocket-origin", help="Browser origin allowed to connect (host:port); repeatable. "
                     "Default: the address and port served."),
    ] = None,
    refresh: Annotated[
        float, typer.Option("--refresh", min=0.0, help="Seconds between live refreshes of an open page (0 = off).")
    ] = 5.0,
    basic_auth: Annotated[
        str | None,
        typer.Option("--basic-auth", help="Password, or a JSON file of {user: password}, required to open the "
                     "page (Panel's basic auth; use with --cookie-secret)."),
    ] = None,
    cookie_secret: Annotated[
        str | None, typer.Option("--cookie-secret", envvar="ATTRIB_MLOPS_COOKIE_SECRET",
                                 help="Secret that signs the login cookie (needed with --basic-auth).")
    ] = None,
    show: Annotated[bool, typer.Option("--show/--no-show", help="Open a browser tab.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the dashboard: runs overview, explorer, compare, evolution, new job, export.

    Reads attribution only through the tracking reader. Binds 127.0.0.1 by default; to expose it, bind another address and protect it with --basic-auth/--cookie-secret or Panel's OAuth (see docs/dashboard.md). Ctrl+C stops it.
    """  # noqa: E501
    import os

    # an unreachable tracking server must not stall a page for minutes: fail fast unless the user chose otherwise
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from panel_app.app import check_store, serve

    if address not in ("127.0.0.1", "localhost", "::1") and not basic_auth:
        err_console.print(f"[yellow]warning:[/yellow] serving on {escape(address)} without authentication: anyone "
                          "who can reach this port can read the runs and queue jobs; use --basic-auth or OAuth "
                          "(docs/dashboard.md)", soft_wrap=True)
    if basic_auth and not cookie_secret:
        raise fail("--basic-auth needs --cookie-secret (or ATTRIB_MLOPS_COOKIE_SECRET) to sign the login cookie")
    check = check_store(tracking_uri)
    if check.ok:
        n = len(check.value or [])
        console.print(f"{n} run{'' if n == 1 else 's'} with attribution in "
                      f"{escape(tracking_uri or 'the default tracking store')}", soft_wrap=True)
    else:
        err_console.print(f"[yellow]warning:[/yellow] {escape(check.error)}", soft_wrap=True)
    console.print(f"dashboard at http://{escape(address)}:{port}/ (Ctrl+C to stop)", soft_wrap=True)
    auth: dict[str, Any] = {"basic_auth": basic_auth, "cookie_secret": cookie_secret} if basic_auth else {}
    serve(tracking_uri, port=port, address=address, allow_websocket_origin=allow_websocket_origin or None,
          show=show, refresh_seconds=refresh, warm_up=False, verbose=False, **auth)


# ============================================================== dashboard (panel_app/) END


if __name__ == "__main__":  # pragma: no cover
    app()
