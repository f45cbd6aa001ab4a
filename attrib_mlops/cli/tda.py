"""``attrib-mlops tda``: build a training-data index and query it from the command line.

Mounted on the main CLI as ``attrib-mlops tda``. Every
user error (an :class:`~attrib_mlops.errors.AttribError`, a pydantic
``ValidationError``) is one red line on stderr and exit code 2; ``--verbose``
adds the traceback. Heavy modules are imported inside the commands so
``--help`` stays fast. """

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..errors import AttribError
from .app import app, cli_errors, console

__all__ = ["tda_app"]

tda_app = typer.Typer(
    name="tda",
    help="Training-data attribution: which training examples drove an output (TracIn-CP, grad-cos, DataInf).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")]
TrackingUri = Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (default: MLflow's).")]


def _options(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are parsed as JSON when they can be (numbers, true/false, lists)."""
    out: dict[str, Any] = {}
    for p in pairs:
        if "=" not in p:
            raise AttribError(f"--option {p!r} must be key=value (e.g. --option per_layer=always)")
        k, v = p.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


@tda_app.command("index")
@cli_errors
def index_cmd(
    checkpoints: Annotated[list[str], typer.Option("--checkpoints", "-c", help="A checkpoint folder, a folder of "
                                                   "checkpoint-<step> folders, or an MLflow model URI (repeatable).")],
    train_data: Annotated[Path, typer.Option("--train-data", "-d", help="Training examples: .jsonl, .json, .csv, "
                                             ".parquet or a datasets.save_to_disk folder.")],
    run: Annotated[str | None, typer.Option("--run", help="Log the index as an artifact of this MLflow run.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Index folder (with --run and no --out: a "
                                             "temporary folder, removed once uploaded).")] = None,
    learning_rate: Annotated[list[float] | None, typer.Option("--learning-rate", "--lr", help="Learning rate per "
                             "checkpoint (repeat, or give one for all); default: read trainer_state.json.")] = None,
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="Tokenizer reference (default: the "
                                                  "first checkpoint's).")] = None,
    projection_dim: Annotated[int, typer.Option("--projection-dim", help="Random projection dimension.")] = 1024,
    seed: Annotated[int, typer.Option("--seed", help="Projection seed.")] = 0,
    params: Annotated[list[str] | None, typer.Option("--param", help="Parameter name or glob (repeatable; default: "
                                                     "last block + output head, or LoRA adapters).")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", help="Any index option as key=value "
                                                     "(see docs/training-data.md).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar.")] = True,
    tracking_uri: TrackingUri = None,
    verbose: Verbose = False,
) -> None:
    """Per-example gradients of the training set at each checkpoint, stored as an index (and logged to --run)."""
    if run is None and out is None:
        raise AttribError("give --out DIR (where the index goes), --run RUN (log it to that run), or both")
    from attrib_mlops.tda_api import build_training_index

    opts = _options(option or [])
    opts.update({"projection_dim": projection_dim, "projection_seed": seed, "show_progress": progress})
    if params:
        opts["params"] = params
    if out is not None:
        opts["out_dir"] = str(out)
    lrs = list(learning_rate) if learning_rate else None
    index = build_training_index(checkpoints, tokenizer, train_data, lrs, **opts)
    size = index.size_bytes()
    where = str(index.path)
    if run is not None:
        from attrib_mlops.tracking.training_index import log_training_index

        path = log_training_index(index, run, tracking_uri=tracking_uri)
        where = f"run {run}, artifact {path}/"
        if out is None:  # the temporary folder has been uploaded
            import shutil

            shutil.rmtree(index.path, ignore_errors=True)
    console.print(f"indexed {index.n_examples} examples x {len(index.checkpoints)} checkpoints "
                  f"({index.dim} dims, {size['total'] / 1e6:.1f} MB) -> {escape(where)}", soft_wrap=True)


def _table(res: Any, k: int) -> Table:
    table = Table(title=f"{res.method}: top training examples for {res.target!r}", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col, just in (("", "left"), ("rank", "right"), ("score", "right"), ("rel", "right"), ("id", "left"),
                      ("text", "left")):
        table.add_column(col, justify=just, no_wrap=col != "text")
    top = res.top(k)
    for side, mark in (("positive", "+"), ("negative", "-")):
        for it in top[side]:
            table.add_row(mark, str(it["rank"]), f"{it['score']:.4g}", f"{it['relative']:+.3f}", Text(str(it["id"])),
                          Text(str(it["text"])))
    return table


@tda_app.command("query")
@cli_errors
def query_cmd(
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The prompt.")],
    run: Annotated[str | None, typer.Option("--run", help="MLflow run whose logged index to use.")] = None,
    index: Annotated[Path | None, typer.Option("--index", "-i", help="Index folder (instead of --run).")] = None,
    target: Annotated[str | None, typer.Option("--target", "-t", help="Continuation to attribute (default: the "
                                               "model's greedy generation).")] = None,
    target_tokens: Annotated[str | None, typer.Option("--target-tokens", help="Comma-separated 0-based target "
                                                      "token positions (default: all).")] = None,
    method: Annotated[str, typer.Option("--method", "-m", help="tracin, grad_cos or datainf.")] = "tracin",
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Examples listed per side.")] = 10,
    model: Annotated[str | None, typer.Option("--model", help="Model reference (default: the index's last "
                                              "checkpoint).")] = None,
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="Tokenizer reference.")] = None,
    checkpoints: Annotated[list[str] | None, typer.Option("--checkpoints", help="Current locations of the indexed "
                                                          "checkpoints, in order (if they moved).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON (top-k only).")] = False,
    tracking_uri: TrackingUri = None,
    verbose: Verbose = False,
) -> None:
    """A table of the training examples that most support (+) and oppose (-) the target."""
    if (run is None) == (index is None):
        raise AttribError("give exactly one of --run RUN and --index DIR")
    sel = None
    if target_tokens:
        try:
            sel = [int(x) for x in target_tokens.split(",") if x.strip()]
        except ValueError:
            raise AttribError(f"--target-tokens {target_tokens!r} must be comma-separated integers") from None
    from attrib_mlops.tda_api import attribute_training_data

    opts: dict[str, Any] = {"tracking_uri": tracking_uri}
    if checkpoints:
        opts["checkpoints"] = list(checkpoints)
    ref = run if run is not None else str(index)
    if run is None and not Path(ref).is_dir():
        from attrib_mlops.training_data.errors import NoTrainingIndexError

        raise NoTrainingIndexError(f"no index folder at '{ref}'")
    res = attribute_training_data(ref, model, tokenizer, prompt, target, sel, method, top_k, **opts)
    if as_json:
        out = res.to_dict(include_scores=False)
        out.pop("texts", None)
        out.pop("ids", None)
        out["top"] = res.top(top_k)
        console.print_json(json.dumps(out))
        return
    console.print(_table(res, top_k))


app.add_typer(tda_app, name="tda")
