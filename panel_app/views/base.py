"""What every dashboard view shares: the view registry and small widget helpers.

A view is one class in one module of :mod:`panel_app.views`, decorated with
:func:`register_view`: it declares its tab name, its title and its order, and
builds itself from the :class:`~panel_app.app.DashboardApp` (what it reads: the
app's state, store, runner or other views). :mod:`panel_app.app` builds the tabs
from :func:`view_specs`; adding a tab is adding one module here.

Example:
    >>> from panel_app.views import view_specs
    >>> [s.tab for s in view_specs()][:2]
    ['overview', 'explorer']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ViewSpec", "register_view", "view_specs"]


@dataclass(frozen=True)
class ViewSpec:
    """A registered view: ``tab`` (state and URL name), ``title`` (tab label), ``attr`` (app attribute)."""

    tab: str
    title: str
    order: int
    attr: str
    cls: type
    build: Callable[[Any], Any]


_VIEWS: dict[str, ViewSpec] = {}


def register_view(tab: str, title: str, order: int, attr: str | None = None,
                  build: Callable[[Any], Any] | None = None) -> Callable[[type], type]:
    """Class decorator: add a view to the dashboard's tabs.

    Args:
        tab: the tab's name in the app state and deep links (``?tab=...``).
        title: the label shown on the tab.
        order: position among the tabs (views are also built in this order, so a view
            may use the views before it).
        attr: the attribute of the app that holds the view (default: ``tab``).
        build: ``build(app) -> view``; default ``cls(app.state, app.store)``.
    """

    def deco(cls: type) -> type:
        _VIEWS[tab] = ViewSpec(tab, title, order, attr or tab, cls,
                               build or (lambda app: cls(app.state, app.store)))
        return cls

    return deco


def view_specs() -> list[ViewSpec]:
    """The registered views in tab order (importing :mod:`panel_app.views` registers the built-in ones)."""
    return sorted(_VIEWS.values(), key=lambda s: s.order)


_STATUSES = ("RUNNING", "FINISHED", "FAILED", "KILLED", "SCHEDULED")


def _matrix(rows: list[list[float | None]]) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64).reshape(
        len(rows), len(rows[0]) if rows else 0)


def _set_options(widget: Any, options: Any, value: Any) -> None:
    """Set options and value together (value first falls back to something in options)."""
    if widget.options != options:
        widget.options = options
    if widget.value != value:
        widget.value = value


def _run_label(row: Any) -> str:
    return f"{row.name} · {row.experiment} · {row.run_id[:8]}"


class _Guard:
    """Re-entrancy flag: widget events caused by the view's own updates are ignored."""

    def __init__(self) -> None:
        self.on = False

    def __enter__(self) -> _Guard:
        self.on = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self.on = False
