"""The ``attrib-mlops`` command line (typer): the app in :mod:`.app`, commands by topic in the other modules.

Example:
    >>> from typer.testing import CliRunner
    >>> CliRunner().invoke(app, ["methods"]).exit_code                     # doctest: +SKIP
    0
"""

from __future__ import annotations

from .app import EXIT_USER_ERROR, app, cli_errors, console, err_console, fail, metrics_table, table_metrics

# each module registers its commands on the app; this order is the order of ``--help``
from . import jobs  # noqa: E402, F401, I001
from . import demo  # noqa: E402, F401
from . import check  # noqa: E402, F401
from . import dashboard  # noqa: E402, F401
from . import serve  # noqa: E402, F401
from . import tda  # noqa: E402, F401
from . import sync  # noqa: E402, F401

__all__ = ["app", "console", "err_console", "cli_errors", "fail", "metrics_table", "table_metrics", "EXIT_USER_ERROR"]
