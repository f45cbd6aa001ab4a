"""Commands about attribution jobs: ``run``, ``methods``, ``version``, ``make-tiny-model``, ``backfill``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from .app import VerboseOpt, app, cli_errors, console, metrics_table, sigterm_as_interrupt
from .executor_options import (
    CpusPerWorkerOpt,
    ExecutorOpt,
    GpusPerWorkerOpt,
    RayAddressOpt,
    RayWorkersOpt,
    executor_choice,
)

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
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_workers: RayWorkersOpt = None,
    cpus_per_worker: CpusPerWorkerOpt = 1.0,
    gpus_per_worker: GpusPerWorkerOpt = 0.0,
    verbose: VerboseOpt = False,
) -> None:
    """Run an attribution job: every model x method over every sample.

    Finished results are cached (content-keyed), so an interrupted run resumes where it stopped and an unchanged re-run computes nothing. Writes manifest.json, results/<model>/<method>.jsonl and summary.json to the output folder, logs one MLflow run per job (status RUNNING/FINISHED/FAILED; with two or more models on the same targets also their difference summaries) and prints the mean metrics per (model, method).
    """  # noqa: E501
    from ..jobs import LocalFolderSink, load_job, run_job

    spec = load_job(job)
    update: dict[str, Any] = {}
    if output_dir is not None:
        update["output_dir"] = str(output_dir)
    if cache_dir is not None:
        update["cache_dir"] = str(cache_dir)
    if update:
        spec = spec.model_copy(update=update)
    sinks: list[Any] = [LocalFolderSink(spec.output_dir)]
    mlflow_sink = None
    if mlflow_log:
        from ..tracking.job_sink import MlflowJobSink

        mlflow_sink = MlflowJobSink(tracking_uri=tracking_uri, experiment=experiment)
        sinks.append(mlflow_sink)
    from ..jobs import ResultCache
    from ..jobs.executor_choice import open_executor

    choice = executor_choice(executor, ray_address, ray_workers, cpus_per_worker, gpus_per_worker)
    with sigterm_as_interrupt(), open_executor(choice, ResultCache(spec.cache_dir) if spec.cache_dir else None) as ex:
        outcome = run_job(spec, sinks=sinks, progress=progress, executor=ex if choice.name != "local" else None)
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
    from ..api import list_methods, resolve_engine
    from ..engines.registry import CAUSAL_LM, method_classes

    table_data = list_methods()
    kinds: dict[str, set[str]] = {}
    for c in method_classes():
        kinds.setdefault(c.name, set()).update(c.model_kinds)
    engines = sorted(table_data)
    methods = sorted(set().union(*table_data.values()))
    table = Table(title="attribution methods", title_justify="left")
    table.add_column("method")
    for e in engines:
        table.add_column(e, justify="center")
    table.add_column("auto uses")
    table.add_column("models")
    for m in methods:
        models = ", ".join(sorted(kinds.get(m, {CAUSAL_LM})))  # Inseq's methods: causal LMs
        table.add_row(m, *["yes" if m in table_data[e] else "" for e in engines], resolve_engine(m), models)
    console.print(table)


@app.command("version")
@cli_errors
def version_cmd(verbose: VerboseOpt = False) -> None:
    """Print the attrib-mlops version and the versions of the libraries that shape results."""
    from ..api import library_versions

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
    from ..errors import InputError

    if n_embd % n_head:
        raise InputError(f"--n-embd ({n_embd}) must be a multiple of --n-head ({n_head})")
    if directory.exists() and not directory.is_dir():
        raise InputError(f"'{directory}' exists and is not a folder")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise InputError(f"'{directory}' is not empty; pass --force to write into it anyway")
    from ..demo.tasks import keyvalue_vocab
    from ..demo.tiny import build_tiny_model, save_tiny

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
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_workers: RayWorkersOpt = None,
    cpus_per_worker: CpusPerWorkerOpt = 1.0,
    gpus_per_worker: GpusPerWorkerOpt = 0.0,
    verbose: VerboseOpt = False,
) -> None:
    """Attribute every saved checkpoint-<step> folder at its step into an MLflow run.

    Steps the run already lists are skipped, so an interrupted backfill can simply be re-run: it loses nothing and duplicates nothing.
    """  # noqa: E501
    from ..backfill import backfill
    from ..samples import ProbeSet

    from ..jobs.executor_choice import open_executor

    probe_set = ProbeSet.from_spec(probe) if probe else None
    choice = executor_choice(executor, ray_address, ray_workers, cpus_per_worker, gpus_per_worker)
    with sigterm_as_interrupt(), open_executor(choice) as ex:  # Ray is reached before any run is created
        out = backfill(
            checkpoints,
            run_id=run_id,
            tracking_uri=tracking_uri,
            experiment=experiment,
            probe=probe_set,
            methods=method or ["saliency"],
            engine=engine,
            progress=progress,
            executor=ex if choice.name != "local" else None,
        )
    console.print(
        f"run [bold]{out['run_id']}[/bold]: logged steps {out['logged'] or 'none'}; "
        f"already there: {out['skipped'] or 'none'}",
        soft_wrap=True,
    )
