"""OverviewView: runs that carry attribution: filter, sort, live refresh; click opens the explorer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import panel as pn

from panel_app.safe import SafeHTML, TextAlert, html
from panel_app.state import AppState
from panel_app.store import DashboardStore, Fetched
from panel_app.views.base import _STATUSES, register_view

__all__ = ["OverviewView"]


@register_view("overview", "Runs", 10, build=lambda app: OverviewView(app.state, app.store, open_run=app.open_run))
class OverviewView(pn.viewable.Viewer):
    """Experiments and runs that carry attribution, with status, steps, methods, models, probe size, last update."""

    def __init__(self, app_state: AppState, store: DashboardStore, open_run: Callable[[str], None], **params):
        super().__init__(**params)
        self.app, self.state, self.store, self._open_run = app_state, app_state.overview, store, open_run
        self._rows: list = []
        self._records: list[dict] | None = None
        self.alert = TextAlert("danger", "overview-error")
        self.note = TextAlert("info", "overview-note")
        self.text = pn.widgets.TextInput(label="Filter", placeholder="name, id, experiment, method, model",
                                         value=self.state.text, width=280, css_classes=["overview-filter"])
        self.statuses = pn.widgets.CheckButtonGroup(label="Status", options=list(_STATUSES),
                                                    value=list(self.state.statuses),
                                                    css_classes=["overview-status"])
        self.sort = pn.widgets.Select(label="Sort by", options=self.state.param.sort_by.objects,
                                      value=self.state.sort_by, width=140)
        self.desc = pn.widgets.Checkbox(label="descending", value=self.state.descending, align="end")
        self.live = pn.widgets.Checkbox(label="live refresh", value=self.state.live, align="end",
                                        css_classes=["overview-live"])
        self.refresh_button = pn.widgets.Button(label="Refresh", color="primary", align="end",
                                                css_classes=["overview-refresh"])
        self.refresh_button.on_click(lambda _e: self.refresh())
        for w, p in ((self.text, "text"), (self.statuses, "statuses"), (self.sort, "sort_by"),
                     (self.desc, "descending"), (self.live, "live")):
            w.param.watch(lambda e, p=p: setattr(self.state, p, e.new), "value_input" if w is self.text else "value")
        self.state.param.watch(lambda *_e: self._render(), ["text", "statuses", "sort_by", "descending"])
        import pandas as pd

        self.table = pn.widgets.Tabulator(
            pd.DataFrame(columns=self._columns()), disabled=True, show_index=False, selectable=False,
            sizing_mode="stretch_width", height=420, css_classes=["overview-table"], layout="fit_data_stretch",
            hidden_columns=["run_id"], sortable=True,
        )
        self.table.on_click(self._clicked)
        self.summary = SafeHTML(css_classes=["overview-summary"], margin=(0, 10))

    @staticmethod
    def _columns() -> list[str]:
        return ["experiment", "run", "status", "steps", "last step", "methods", "models", "probe", "last update",
                "run_id"]

    def refresh(self) -> Fetched:
        """Re-list runs (what the live refresh polls); keeps the last rows when the store fails."""
        got = self.store.runs()
        self.alert.show(got.error)
        self.note.show(got.note)
        if got.ok:
            self._rows = list(got.value)
            self._render()
        return got

    def _filtered(self) -> list:
        rows = [r for r in self._rows if r.matches(self.state.text)
                and (not self.state.statuses or r.status in self.state.statuses)]
        key = {
            "last update": lambda r: r.last_update or 0,
            "name": lambda r: r.name.lower(),
            "steps": lambda r: r.n_steps,
            "status": lambda r: r.status,
        }[self.state.sort_by]
        return sorted(rows, key=key, reverse=self.state.descending)

    def _render(self) -> None:
        import pandas as pd

        rows = self._filtered()
        records = [r.record() for r in rows]
        if records != self._records:
            self._records = records
            self.table.value = pd.DataFrame(records, columns=self._columns())
        n_exp = len({r.experiment_id for r in self._rows})
        self.summary.object = html("<p>{} of {} runs with attribution in {} experiment(s). Click a run to open it in "
                                   "the explorer.</p>", len(rows), len(self._rows), n_exp)

    def _clicked(self, event: Any) -> None:
        if self._records is None or event.row is None or event.row >= len(self._records):
            return
        self._open_run(self._records[event.row]["run_id"])

    def __panel__(self) -> pn.viewable.Viewable:
        controls = pn.Row(self.text, self.statuses, self.sort, self.desc, self.live, self.refresh_button,
                          sizing_mode="stretch_width")
        return pn.Column(controls, self.alert, self.note, self.summary, self.table, sizing_mode="stretch_width",
                         css_classes=["view-overview"])
