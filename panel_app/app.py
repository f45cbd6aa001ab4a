"""Composition of the dashboard: state + store + views + job runner, one set per browser session.

Launch with the CLI (binds 127.0.0.1 by default)::

    attrib-mlops dashboard --tracking-uri sqlite:///mlflow.db --port 5006

or with Panel directly::

    panel serve panel_app/app.py --address 127.0.0.1 --port 5006 --args --tracking-uri sqlite:///mlflow.db

URL query parameters open a view directly, e.g. ``/?tab=explorer&run=<run_id>&step=100&sample=s3``.

Example:
    >>> app = create_app("sqlite:///mlflow.db")            # doctest: +SKIP
    >>> app.servable()                                      # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

import panel as pn

from panel_app.jobs import JobRunner
from panel_app.safe import SafeHTML, html
from panel_app.state import AppState
from panel_app.store import DashboardStore, Fetched
from panel_app.views import view_specs

__all__ = ["DashboardApp", "create_app", "serve", "check_store", "DEFAULT_REFRESH_SECONDS"]

logger = logging.getLogger(__name__)

#: How often an open page polls the tracking store (runs, new steps) and the job queue.
DEFAULT_REFRESH_SECONDS = 5.0

_HEADER_CSS = """
:host { width: 100%; }
.attrib-header { display: flex; align-items: baseline; gap: 16px; padding: 8px 12px; border-bottom: 1px solid #e5e5e5; }
.attrib-header .title { font-size: 18px; font-weight: 700; }
.attrib-header .uri { font-size: 12px; color: #666; font-family: monospace; }
"""


class DashboardApp(pn.viewable.Viewer):
    """The whole dashboard for one browser session.

    Args:
        tracking_uri: MLflow tracking URI to read (and to log queued jobs to).
        refresh_seconds: polling period of the live refresh (runs, new steps, job progress).
        store: a :class:`DashboardStore` to use (tests); built from ``tracking_uri`` otherwise.
        runner: a :class:`JobRunner` (tests); built from ``tracking_uri`` otherwise.
    """

    def __init__(self, tracking_uri: str | None = None, *, refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
                 store: DashboardStore | None = None, runner: JobRunner | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.tracking_uri = tracking_uri
        self.refresh_seconds = float(refresh_seconds)
        self.state = AppState()
        self.store = store or DashboardStore(tracking_uri)
        self.runner = runner or JobRunner(tracking_uri)
        specs = view_specs()  # every registered view, in tab order (panel_app/views/)
        self.tab_names = tuple(s.tab for s in specs)
        views = {}
        for spec in specs:  # built in order: a view may use those before it (export uses explorer, compare)
            views[spec.tab] = spec.build(self)
            setattr(self, spec.attr, views[spec.tab])
        self.tabs = pn.Tabs(*[(s.title, views[s.tab]) for s in specs], dynamic=True,
                            sizing_mode="stretch_width", css_classes=["attrib-tabs"])
        self.tabs.param.watch(lambda e: setattr(self.state, "tab", self.tab_names[e.new]), "active")
        self.state.param.watch(self._tab_changed, "tab")
        self.header = SafeHTML(
            html('<div class="attrib-header"><span class="title">attrib-mlops</span>'
                 '<span class="uri">tracking: {}</span></div>', tracking_uri or "MLflow default"),
            sizing_mode="stretch_width", stylesheets=[_HEADER_CSS], margin=0)
        self.layout = pn.Column(self.header, self.tabs, sizing_mode="stretch_width", css_classes=["attrib-app"])
        self._periodic = None

    # ------------------------------------------------------------ navigation
    def open_run(self, run_id: str) -> None:
        """Show a run in the explorer (from a click in the overview)."""
        self.state.explorer.run_id = run_id
        self.state.tab = "explorer"

    def open_sample(self, sample_id: str, step: int) -> None:
        """Show a sample at a step in the explorer (from the evolution table)."""
        ex = self.state.explorer
        ex.param.update(step=int(step), sample_id=str(sample_id))
        self.state.tab = "explorer"

    def _tab_changed(self, event: Any) -> None:
        idx = self.tab_names.index(event.new)
        if self.tabs.active != idx:
            self.tabs.active = idx
        self._activate(event.new)

    def _activate(self, tab: str) -> None:
        if tab == "compare":
            self.compare.sync(force=True)
        elif tab == "evolution":
            self.evolution.update(force=True)
        elif tab == "jobs":
            self.jobs.prepare()
            self.jobs.refresh()
        elif tab == "explorer":
            self.explorer.sync()
        elif tab == "export":
            self.export.activate()

    # --------------------------------------------------------------- loading
    def load(self) -> None:
        """First data load: the explorer's sample first (when deep-linked), then the runs list."""
        self.overview.refresh()
        self.explorer.sync()
        if self.state.tab not in ("overview", "explorer"):
            self._activate(self.state.tab)

    def tick(self) -> None:
        """One live-refresh round (what the periodic callback runs)."""
        try:
            if self.state.overview.live:
                self.overview.refresh()
                self.explorer.refresh()
            self.jobs.refresh()
        except Exception:  # noqa: BLE001 - a refresh must never kill the periodic callback
            logger.exception("dashboard refresh failed")

    def start(self) -> None:
        """Hook into the current Panel session: URL sync, first load after the page renders, live refresh."""
        if pn.state.location is not None:
            pn.state.location.sync(self.state, {"tab": "tab"})
            self.explorer.expect_link(pn.state.location.search)  # read before the sync makes it valid
            pn.state.location.sync(self.state.explorer, {"run_id": "run", "step": "step", "model": "model",
                                                         "sample_id": "sample"}, on_error=self._url_values)
            if self.state.tab != "overview":
                self.tabs.active = self.tab_names.index(self.state.tab)
            if self.state.tab == "explorer" and self.state.explorer.run_id:
                # a deep link: draw the sample into the first page (one round trip less than onload)
                self.explorer.sync()
        pn.state.onload(self._loaded)
        pn.state.on_session_destroyed(lambda _ctx: self.close())

    def _loaded(self) -> None:
        """The page has rendered: first load, then the live refresh.

        The refresh starts only now: an update pushed while the browser is still building the page
        reaches widget views Bokeh has not rendered yet, which then throw ("Cannot read properties of
        undefined (reading 'firstChild')").
        """
        self.load()
        if self.refresh_seconds > 0 and self._periodic is None:
            self._periodic = pn.state.add_periodic_callback(self.tick, period=int(self.refresh_seconds * 1000))

    def close(self) -> None:
        """End of the session: no new jobs (running ones finish and stay logged), caches removed."""
        if self._periodic is not None:
            try:
                self._periodic.stop()
            except Exception:  # noqa: BLE001 - the session's document may already be gone
                pass
        self.runner.shutdown(wait=False)
        self.store.close()

    def _url_values(self, _mapped: dict) -> None:
        """Query values Panel parsed as numbers (a run id of digits): take them verbatim from the URL."""
        from urllib.parse import parse_qs

        raw = {k: v[-1] for k, v in parse_qs((pn.state.location.search or "").lstrip("?")).items()}
        fixed: dict[str, Any] = {name: raw[key] for name, key in (("run_id", "run"), ("model", "model"),
                                                                  ("sample_id", "sample")) if key in raw}
        if raw.get("step", "").isdigit():
            fixed["step"] = int(raw["step"])
        self.state.explorer.param.update(**fixed)

    def __panel__(self) -> pn.viewable.Viewable:
        return self.layout


def create_app(tracking_uri: str | None = None, *, refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
               **kwargs: Any) -> DashboardApp:
    """A new :class:`DashboardApp` (call once per session); inside a Panel server session it is started.

    Outside a server (tests, notebooks) call ``app.load()`` to read the store.
    """
    app = DashboardApp(tracking_uri, refresh_seconds=refresh_seconds, **kwargs)
    if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
        app.start()
    return app


def serve(tracking_uri: str | None = None, *, port: int = 5006, address: str = "127.0.0.1",
          allow_websocket_origin: list[str] | None = None, show: bool = False,
          refresh_seconds: float = DEFAULT_REFRESH_SECONDS, threaded: bool = False, start: bool = True,
          warm_up: bool = True, **kwargs: Any) -> Any:
    """Serve the dashboard with ``pn.serve`` (one app per session).

    Args:
        tracking_uri: MLflow tracking URI.
        port: TCP port.
        address: interface to bind; ``127.0.0.1`` keeps the dashboard local (see docs/dashboard.md
            before exposing it: put it behind Panel's basic auth or OAuth).
        allow_websocket_origin: allowed browser origins (default ``<address>:<port>``, plus localhost).
        show: open a browser.
        refresh_seconds: live-refresh period of each page.
        threaded: run the server in a background thread (returns a ``StoppableThread``).
        start: start the IO loop (blocks unless ``threaded``).
        warm_up: read the store once before serving (first page opens faster; an unreachable store is
            logged as a warning, the dashboard still starts and says so on the page).
        **kwargs: passed to ``pn.serve`` (e.g. ``basic_auth``, ``cookie_secret``, ``oauth_provider``).
    """
    if warm_up:
        check = check_store(tracking_uri)
        if not check.ok:
            logger.warning("%s", check.error)
    if kwargs.get("basic_auth") and not kwargs.get("login_template"):
        kwargs["login_template"] = _login_template_file()
    origins = list(allow_websocket_origin or [])
    if not origins:
        origins = [f"{address}:{port}"]
        if address in ("127.0.0.1", "localhost"):
            origins.append(f"localhost:{port}")

    def session() -> DashboardApp:  # a plain function: pn.serve calls it once per browser session
        return create_app(tracking_uri, refresh_seconds=refresh_seconds)

    return pn.serve(
        session, port=port, address=address,
        websocket_origin=origins, show=show, title="attrib-mlops dashboard", threaded=threaded, start=start,
        **kwargs,
    )


def _login_template_file() -> str:
    """A self-contained login page for basic auth, written to a temporary file (Panel takes a path)."""
    import tempfile

    from panel_app.assets import LOGIN_HTML

    fd, path = tempfile.mkstemp(prefix="attrib-mlops-login-", suffix=".html")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(LOGIN_HTML)
    return path


def check_store(tracking_uri: str | None) -> Fetched:
    """List the runs once (opens the store, e.g. creates/migrates a SQLite DB); an error says what is wrong."""
    return DashboardStore(tracking_uri).runs()


def _cli_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="panel serve panel_app/app.py --args")
    p.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    p.add_argument("--refresh", type=float, default=DEFAULT_REFRESH_SECONDS)
    return p.parse_known_args(argv)[0]


if __name__.startswith("bokeh"):  # `panel serve panel_app/app.py --args --tracking-uri ...`
    _args = _cli_args(sys.argv[1:])
    create_app(_args.tracking_uri, refresh_seconds=_args.refresh).servable(title="attrib-mlops dashboard")
