"""The ``check`` command: the attribution regression gate.

Exit codes: 0 pass, 1 regression (``typer.Exit(1)``), 2 cannot compare (``CannotCompare`` is an
:class:`~attrib_mlops.errors.AttribError`, which ``@cli_errors`` turns into exit code 2, like every
other user error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from .app import VerboseOpt, app, cli_errors, console, err_console, fail

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

    Per method it computes how well the token importances correlate, the share of samples whose top-k source tokens changed (the baseline's most important token left the candidate's top-k), ground-truth hit@k and the target probability, and checks them against the policy's thresholds (defaults and YAML format: docs/regression-checks.md). Samples whose tokens differ are skipped and counted, never compared cell by cell. Context-source and training-data results are compared by their own metrics (top source changed; overlap of the top training examples, with the opt-in rule min_mean_top_overlap).

    Exit code 0 = pass, 1 = regression, 2 = cannot compare (unknown run, step not logged, method missing on one side, no shared or comparable samples, bad policy), always with a message saying why.
    """  # noqa: E501
    from ..check import compare, load_policy, log_verdict

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
