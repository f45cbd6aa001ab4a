"""The ``attrib-mlops`` command line.

Adding a command: write a thin function that parses arguments and calls library
code, decorate it with ``@app.command(...)`` and ``@cli_errors``, and import heavy
modules (torch, transformers, the job runner) inside the function so ``--help``
stays fast. Commands live in the modules of :mod:`attrib_mlops.cli` by topic (jobs,
check, demo, dashboard); a new module is imported in ``cli/__init__.py``. ``@cli_errors`` turns every :class:`~attrib_mlops.errors.AttribError`
and pydantic ``ValidationError`` into one red line on stderr and exit code 2
(``--verbose`` adds the traceback). Print results with :data:`console` and
messages with :data:`err_console`; :func:`metrics_table` renders mean metrics.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Annotated, Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import AttribError

__all__ = ["app", "console", "err_console", "cli_errors", "sigterm_as_interrupt", "fail", "metrics_table",
           "table_metrics", "EXIT_USER_ERROR", "VerboseOpt"]

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
                from ..options import format_validation_error

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


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` as Ctrl-C does (main thread only).

    So a job killed by ``kill``, a scheduler or a container stop ends its MLflow run ``KILLED``
    and keeps its cache, exactly as after Ctrl-C.

    Example:
        >>> with sigterm_as_interrupt():
        ...     pass
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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


def table_metrics() -> dict[str, str]:
    """Metric columns of :func:`metrics_table`: ``{name: short header}``, the registered metrics that
    declare a ``preferred`` position, kind by kind (token matrix, context sources, training data...)
    and in that order within a kind; a name two kinds share is one column
    (:mod:`attrib_mlops.analysis.registry`)."""
    from ..analysis.registry import TOKEN_MATRIX, kind_names, list_metrics

    out: dict[str, str] = {}
    for kind in sorted(kind_names(), key=lambda k: (k != TOKEN_MATRIX, k)):  # not the import order
        shown = sorted((m for m in list_metrics("sample", kind) if m.preferred is not None), key=lambda m: m.preferred)
        for m in shown:
            out.setdefault(m.name, m.label)
    return out


def metrics_table(rows: Sequence[dict[str, Any]], title: str | None = None) -> Table:
    """A rich table of rows ``{"model", "method", "computed"?, "cached"?, "metrics": {...}}``.

    Columns: model, method, ``new/cached`` (when counts are given) and the metrics of
    :func:`table_metrics` that any row has (means over samples; ``-`` = undefined); the full
    set is in summary.json.
    """
    columns = table_metrics()
    present = [m for m in columns if any(r.get("metrics", {}).get(m) is not None for r in rows)]
    counts = any("computed" in r for r in rows)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("model", no_wrap=True)
    table.add_column("method", no_wrap=True)
    if counts:
        table.add_column("new/cached", justify="right", min_width=10)
    for m in present:
        table.add_column(columns[m], justify="right")
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
