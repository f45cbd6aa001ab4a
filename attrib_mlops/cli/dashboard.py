"""The ``dashboard`` command: serve the Panel dashboard (:mod:`panel_app`)."""

from __future__ import annotations

import errno
import socket
from typing import Annotated, Any

import typer
from rich.markup import escape

from .app import VerboseOpt, app, cli_errors, console, err_console, fail

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
    in_use = f"port {port} on {address} is already in use (another dashboard?); pick a free one with --port"
    if not _port_free(address, port):
        raise fail(in_use)
    console.print(f"dashboard at http://{escape(address)}:{port}/ (Ctrl+C to stop)", soft_wrap=True)
    auth: dict[str, Any] = {"basic_auth": basic_auth, "cookie_secret": cookie_secret} if basic_auth else {}
    try:
        serve(tracking_uri, port=port, address=address, allow_websocket_origin=allow_websocket_origin or None,
              show=show, refresh_seconds=refresh, warm_up=False, verbose=False, **auth)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:  # taken between the check and the bind
            raise fail(in_use) from None
        raise


def _port_free(address: str, port: int) -> bool:
    """True when ``address:port`` can be bound now (as the server will, with SO_REUSEADDR)."""
    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    except OSError:
        return True  # let the server report an unknown address itself
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(sockaddr)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    return False
    return True
