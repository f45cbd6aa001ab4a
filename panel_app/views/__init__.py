"""Presentation: one module per view, each a class with ``__panel__`` (widgets, layout, drawing; no MLflow calls).

Views read data only through :class:`~panel_app.store.DashboardStore` and keep the
selection in :mod:`panel_app.state` objects. Every data problem arrives as a
message (``Fetched.error``) and is shown in an alert above the view, which stays usable.
Each view joins the registry of :mod:`panel_app.views.base` (tab name, title, order,
how it is built); the app builds its tabs from :func:`view_specs`, so a new tab is one
new module in this package (found by listing it).

* :class:`OverviewView` - runs that carry attribution: filter, sort, live refresh; click opens the explorer.
* :class:`ExplorerView` - one run/step/model/sample: token view with hover, window, methods, heatmaps.
* :class:`CompareView` - two checkpoints / models / runs side by side, synchronised hover, ``A1 - A2``.
* :class:`EvolutionView` - metric curves over steps, checkpoint slider, samples that changed most.
* :class:`SourcesView` - which sources of a prompt a generation used: coloured prompt, target span, LDS, compare.
* :class:`EstimatorView` - AT2 estimators' layer x head weights across checkpoints, next to naive attention.
* :class:`NewJobView` - queue an attribution job (background worker process), progress, result in the overview.
* :class:`ExportView` - standalone HTML of the explorer / compare view, matrices as CSV / JSON.
"""

from __future__ import annotations

import importlib
import pkgutil

from panel_app.views.base import ViewSpec, register_view, view_specs

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if _info.name != "base" and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

from panel_app.views.at2 import EstimatorView  # noqa: E402
from panel_app.views.compare import CompareView  # noqa: E402
from panel_app.views.evolution import EvolutionView  # noqa: E402
from panel_app.views.explorer import ExplorerView  # noqa: E402
from panel_app.views.export import ExportView  # noqa: E402
from panel_app.views.new_job import NewJobView  # noqa: E402
from panel_app.views.overview import OverviewView  # noqa: E402
from panel_app.views.sources import SourcesView  # noqa: E402

__all__ = ["OverviewView", "ExplorerView", "CompareView", "EvolutionView", "SourcesView", "EstimatorView",
           "NewJobView", "ExportView",
           "ViewSpec", "register_view", "view_specs"]
