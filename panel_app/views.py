"""Presentation: one class per view, each with ``__panel__`` (widgets, layout, drawing; no MLflow calls).

Views read data only through :class:`~panel_app.store.DashboardStore` and keep the
selection in :mod:`panel_app.state` objects. Every data problem arrives as a
message (``Fetched.error``) and is shown in an alert above the view, which stays usable.

* :class:`OverviewView` - runs that carry attribution: filter, sort, live refresh; click opens the explorer.
* :class:`ExplorerView` - one run/step/model/sample: token view with hover, window, methods, heatmaps.
* :class:`CompareView` - two checkpoints / models / runs side by side, synchronised hover, ``A1 - A2``.
* :class:`EvolutionView` - metric curves over steps, checkpoint slider, samples that changed most.
* :class:`NewJobView` - queue an attribution job (background worker process), progress, result in the overview.
* :class:`ExportView` - standalone HTML of the explorer / compare view, matrices as CSV / JSON.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import panel as pn

from panel_app.export import matrix_csv, matrix_json, standalone_html
from panel_app.jobs import NATIVE_METHODS, JobRequest, JobRunner
from panel_app.payload import compare_payload, compare_results, explorer_payload
from panel_app.plots import difference_heatmap, heatmap, metric_lines
from panel_app.safe import Markup, SafeHTML, TextAlert, TextMultiChoice, html
from panel_app.state import COMPARE_KINDS, AppState
from panel_app.store import DashboardStore, Fetched, RunContents
from panel_app.tokens import TokenView

__all__ = ["OverviewView", "ExplorerView", "CompareView", "EvolutionView", "NewJobView", "ExportView"]

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


# =========================================================================== overview
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


# =========================================================================== explorer
class ExplorerView(pn.viewable.Viewer):
    """One run, one step, one model, one sample: token view, context window, method toggles, heatmaps."""

    def __init__(self, app_state: AppState, store: DashboardStore, **params):
        super().__init__(**params)
        self.app, self.state, self.store = app_state, app_state.explorer, store
        self._guard = _Guard()
        self._drawn: tuple | None = None
        self.contents: RunContents | None = None
        self.results: dict = {}
        self.payload: dict = {}
        self.alert = TextAlert("danger", "explorer-error")
        self.note = TextAlert("info", "explorer-note")
        self.run = pn.widgets.Select(label="Run", options={}, width=300, css_classes=["explorer-run"])
        self.step = pn.widgets.Select(label="Step", options=[], width=110, css_classes=["explorer-step"])
        self.model = pn.widgets.Select(label="Model", options=[], width=150, css_classes=["explorer-model"])
        self.sample = pn.widgets.Select(label="Sample", options={}, width=380, css_classes=["explorer-sample"])
        self.methods = pn.widgets.CheckButtonGroup(label="Methods", options=[], value=[],
                                                   css_classes=["explorer-methods"], align="end")
        self.window = pn.widgets.IntSlider(label="Context window c", start=0, end=self.state.param.window.bounds[1],
                                           value=self.state.window, width=200, css_classes=["explorer-window"])
        self.axis = pn.widgets.RadioButtonGroup(options={"window over source": "source",
                                                         "window over target": "target"},
                                                value=self.state.window_axis, css_classes=["explorer-axis"],
                                                align="end")
        self.combine = pn.widgets.RadioButtonGroup(options={"overlay methods": "overlay", "mean of methods": "mean"},
                                                   value=self.state.combine, css_classes=["explorer-combine"],
                                                   align="end")
        self.check = pn.widgets.Button(label="Check artifacts", align="end", css_classes=["explorer-check"])
        self.check.on_click(lambda _e: self.check_artifacts())
        self.tokens = TokenView(data={"empty": "Loading…"}, sizing_mode="stretch_width",
                                css_classes=["explorer-tokens"], margin=(5, 10))
        self.heatmaps = pn.Row(sizing_mode="stretch_width", css_classes=["explorer-heatmaps"])
        for w, p in ((self.run, "run_id"), (self.step, "step"), (self.model, "model"), (self.sample, "sample_id"),
                     (self.methods, "methods"), (self.window, "window"), (self.axis, "window_axis"),
                     (self.combine, "combine")):
            w.param.watch(lambda e, p=p: self._from_widget(p, e.new), "value")
        self.state.param.watch(lambda *_e: self.sync(), list(self.state.param)[1:])

    # ---------------------------------------------------------------- syncing
    def _from_widget(self, name: str, value: Any) -> None:
        if self._guard.on:
            return
        if name == "methods":
            value = list(value)
        setattr(self.state, name, value)

    def sync(self, refresh: bool = False) -> None:
        """Make the selection valid for what the run holds, update the widgets, draw if anything changed."""
        if self._guard.on:
            return
        with self._guard:
            error = self._normalise(refresh)
            self._update_widgets()
        if error:
            self._drawn = None
            self.alert.show(error)
            self.tokens.data = {"empty": "Nothing to show: see the message above."}
            self.heatmaps.objects = []
            return
        self.draw()

    def _normalise(self, refresh: bool) -> str | None:
        s = self.state
        if s.run_id is None:
            runs = [r for r in self.store.known_runs() if r.n_steps > 0] or self.store.known_runs()
            if not runs:
                self.contents = None
                return None
            s.run_id = runs[0].run_id
        got = self.store.contents(s.run_id, refresh=refresh)
        if not got.ok:
            self.contents = None
            return got.error
        c = self.contents = got.value
        self.note.show(got.note)
        if s.step not in c.steps:
            s.step = c.steps[-1] if c.steps else None
        models = c.models(s.step)
        if s.model not in models:
            s.model = models[0] if models else None
        avail = c.methods(s.step, s.model)
        kept = [m for m in s.methods if m in avail]
        if kept != list(s.methods) or not kept:
            s.methods = kept or avail[:1]
        ids = c.sample_ids()
        if s.sample_id not in ids:
            s.sample_id = ids[0] if ids else None
        return None

    def _update_widgets(self) -> None:
        s, c = self.state, self.contents
        runs = {_run_label(r): r.run_id for r in self.store.known_runs()}
        if s.run_id is not None and s.run_id not in runs.values():
            runs[s.run_id] = s.run_id
        _set_options(self.run, runs, s.run_id)
        if c is None:
            return
        _set_options(self.step, list(c.steps), s.step)
        _set_options(self.model, c.models(s.step), s.model)
        _set_options(self.methods, c.methods(s.step, s.model), list(s.methods))
        samples = {}
        for smp in c.samples:
            sid = str(smp["id"])
            text = (str(smp.get("prompt", "")) + " ⟶" + str(smp.get("target", ""))).strip()
            samples[f"{sid} · {text[:60]}{'…' if len(text) > 60 else ''}"] = sid
        _set_options(self.sample, samples, s.sample_id)
        self.window.value, self.axis.value, self.combine.value = s.window, s.window_axis, s.combine

    def refresh(self) -> None:
        """Live refresh: re-read the manifest of the shown run when it may have new steps."""
        s = self.state
        if s.run_id is None:
            if self.store.known_runs():
                self.sync()
            return
        row = self.store.run_row(s.run_id)
        stale = self.contents is None or (row is not None and (row.status == "RUNNING"
                                                                or row.n_steps != len(self.contents.steps)))
        if stale:
            self.sync(refresh=True)
        elif self.run.options != {_run_label(r): r.run_id for r in self.store.known_runs()}:
            with self._guard:
                self._update_widgets()

    # ----------------------------------------------------------------- drawing
    def _key(self) -> tuple:
        s = self.state
        return (s.run_id, s.step, s.model, tuple(s.methods), s.sample_id, s.window, s.window_axis, s.combine)

    def draw(self, force: bool = False) -> None:
        key = self._key()
        if key == self._drawn and not force:
            return
        s = self.state
        if self.contents is None or s.step is None or not s.methods or s.sample_id is None:
            self._drawn = None
            self.alert.show(None)
            self.tokens.data = {"empty": "No run with attribution selected yet." if self.contents is None
                                else "This run has no committed step / sample yet."}
            self.heatmaps.objects = []
            return
        got = self.store.samples(s.run_id, s.step, s.model, s.methods, s.sample_id)
        if not got.ok:
            self._drawn = None
            self.alert.show(got.error)
            self.tokens.data = {"empty": "Nothing to show: see the message above."}
            self.heatmaps.objects = []
            return
        try:
            payload = explorer_payload(got.value, window=s.window, axis=s.window_axis, combine=s.combine,
                                       title=f"step {s.step} · {s.model} · sample {s.sample_id}")
        except Exception as e:  # noqa: BLE001 - e.g. methods with different tokens
            from panel_app.store import explain_error

            self.alert.show(explain_error(e, self.store.tracking_uri, "preparing the view"))
            return
        payload["state"] = "|".join("" if v is None else (",".join(v) if isinstance(v, tuple) else str(v))
                                    for v in key)
        self.alert.show(None)
        self.results, self.payload, self._drawn = got.value, payload, key
        self.tokens.data = payload
        self.heatmaps.objects = [pn.pane.Bokeh(f) for f in self.figures()]

    def figures(self) -> list:
        """One heatmap per shown method (or one of the mean), from the displayed matrices."""
        if not self.payload:
            return []
        side = self.payload["sides"][0]
        suffix = f" · window c={self.state.window} over {self.state.window_axis}" if self.state.window else ""
        return [heatmap(_matrix(m["matrix"]), side["source"], side["target"], title=f"{m['name']}{suffix}",
                        color=m["color"], name=f"heatmap-{k}") for k, m in enumerate(side["methods"])]

    def check_artifacts(self) -> None:
        if not self.state.run_id:
            return
        got = self.store.problems(self.state.run_id)
        if not got.ok:
            self.alert.show(got.error)
        elif got.value:
            self.alert.show("Problems in this run's attribution artifacts:\n\n" +
                  "\n".join(f"- {p}" for p in got.value))
        else:
            self.note.show("No problems found in this run's attribution artifacts.")

    # ------------------------------------------------------------------ export
    def primary_matrix(self) -> tuple[np.ndarray, list[str], list[str], dict] | None:
        if not self.payload:
            return None
        side = self.payload["sides"][0]
        m = side["methods"][0]
        meta = dict(self.state.selection(), method=m["name"], tracking_uri=self.store.tracking_uri)
        return _matrix(m["matrix"]), side["source"], side["target"], meta

    def export_html(self) -> str | None:
        if not self.payload:
            return None
        meta = {k: v for k, v in self.state.selection().items()}
        return standalone_html(self.payload, self.figures(), title="attrib-mlops · explorer", meta=meta)

    def __panel__(self) -> pn.viewable.Viewable:
        row1 = pn.Row(self.run, self.step, self.model, self.sample, sizing_mode="stretch_width")
        row2 = pn.Row(self.methods, self.combine, self.window, self.axis, self.check, sizing_mode="stretch_width")
        return pn.Column(row1, row2, self.alert, self.note, self.tokens, self.heatmaps,
                         sizing_mode="stretch_width", css_classes=["view-explorer"])


# =========================================================================== compare
class CompareView(pn.viewable.Viewer):
    """Two sides on the same sample: synchronised token views and the difference ``A1 - A2``."""

    def __init__(self, app_state: AppState, store: DashboardStore, **params):
        super().__init__(**params)
        self.app, self.state, self.store = app_state, app_state.compare, store
        self._guard = _Guard()
        self._drawn: tuple | None = None
        self._kind: str | None = None
        self.comparison = None
        self.payload: dict = {}
        self.alert = TextAlert("danger", "compare-error")
        self.mismatch = TextAlert("warning", "compare-mismatch")
        self.kind = pn.widgets.RadioButtonGroup(options={v: k for k, v in COMPARE_KINDS.items()},
                                                value=self.state.kind, css_classes=["compare-kind"])
        self.widgets: dict[str, dict[str, pn.widgets.Select]] = {}
        for side in ("left", "right"):
            self.widgets[side] = {
                "run_id": pn.widgets.Select(label=f"{side} run", options={}, width=260,
                                            css_classes=[f"compare-{side}-run"]),
                "step": pn.widgets.Select(label=f"{side} step", options=[], width=110,
                                          css_classes=[f"compare-{side}-step"]),
                "model": pn.widgets.Select(label=f"{side} model", options=[], width=140,
                                           css_classes=[f"compare-{side}-model"]),
            }
            for p, w in self.widgets[side].items():
                w.param.watch(lambda e, side=side, p=p: self._from_widget(side, p, e.new), "value")
        self.method = pn.widgets.Select(label="Method", options=[], width=160, css_classes=["compare-method"])
        self.sample = pn.widgets.Select(label="Sample", options={}, width=340, css_classes=["compare-sample"])
        self._lock_right()
        self.kind.param.watch(lambda e: self._from_widget(None, "kind", e.new), "value")
        self.method.param.watch(lambda e: self._from_widget(None, "method", e.new), "value")
        self.sample.param.watch(lambda e: self._from_widget(None, "sample_id", e.new), "value")
        self.tokens = TokenView(data={"empty": "Open this tab after selecting a run."}, sizing_mode="stretch_width",
                                css_classes=["compare-tokens"], margin=(5, 10))
        self.heatmaps = pn.Row(sizing_mode="stretch_width", css_classes=["compare-heatmaps"])
        self.state.param.watch(lambda *_e: self.sync(), ["kind", "method", "sample_id"])
        for side in (self.state.left, self.state.right):
            side.param.watch(lambda *_e: self.sync(), ["run_id", "step", "model"])

    def _from_widget(self, side: str | None, name: str, value: Any) -> None:
        if self._guard.on:
            return
        target = self.state if side is None else getattr(self.state, side)
        setattr(target, name, value)

    def active(self) -> bool:
        return self.app.tab == "compare"

    def sync(self, force: bool = False) -> None:
        if self._guard.on or not (force or self.active()):
            return
        with self._guard:
            error = self._normalise()
            self._update_widgets()
        if error:
            self._drawn = None
            self.alert.show(error)
            self.mismatch.show(None)
            self.tokens.data = {"empty": "Nothing to compare: see the message above."}
            self.heatmaps.objects = []
            return
        self.draw()

    def _contents(self, run_id: str | None) -> Fetched[RunContents]:
        return self.store.contents(run_id) if run_id else Fetched(None, "No run with attribution to compare yet.")

    def _normalise(self) -> str | None:
        s, L, R = self.state, self.state.left, self.state.right
        if s.kind != self._kind:  # another kind of comparison: the right side starts from its defaults
            self._kind = s.kind
            R.param.update(step=None, model=None)
        runs = [r for r in self.store.known_runs() if r.n_steps > 0]
        if L.run_id is None:
            L.run_id = self.app.explorer.run_id or (runs[0].run_id if runs else None)
        lc = self._contents(L.run_id)
        if not lc.ok:
            return lc.error
        lc = lc.value
        if not lc.steps:
            return f"Run {L.run_id} has no committed attribution step yet."
        if s.kind == "runs":
            if R.run_id is None or R.run_id == L.run_id:
                others = [r.run_id for r in runs if r.run_id != L.run_id]
                R.run_id = others[0] if others else L.run_id
        else:
            R.run_id = L.run_id
        rc = self._contents(R.run_id)
        if not rc.ok:
            return rc.error
        rc = rc.value
        if not rc.steps:
            return f"Run {R.run_id} has no committed attribution step yet."
        if L.step not in lc.steps:
            L.step = self.app.explorer.step if self.app.explorer.step in lc.steps else lc.steps[-1]
        if s.kind == "models" and len(lc.models(L.step)) < 2:
            multi = [st for st in lc.steps if len(lc.models(st)) > 1]
            if not multi:
                return (f"Run {L.run_id} logged a single model ({', '.join(lc.models())}) at every step; there "
                        "are no two models to compare. Compare two checkpoints or two runs instead.")
            L.step = multi[-1]
        if s.kind == "models":
            R.step = L.step
        elif s.kind == "checkpoints":
            if R.step not in rc.steps or R.step == L.step:  # two different checkpoints whenever there are two
                others = [st for st in rc.steps if st != L.step]
                R.step = others[0] if others else L.step
        elif R.step not in rc.steps:  # two runs: the same checkpoint when both have it
            R.step = L.step if L.step in rc.steps else rc.steps[-1]
        if L.model not in lc.models(L.step):
            L.model = lc.models(L.step)[0]
        if s.kind == "checkpoints":
            R.model = L.model if L.model in rc.models(R.step) else rc.models(R.step)[0]
        elif R.model not in rc.models(R.step) or (s.kind == "models" and R.model == L.model):
            others = [m for m in rc.models(R.step) if m != L.model]
            if s.kind == "models":
                R.model = others[0] if others else L.model
            else:
                R.model = L.model if L.model in rc.models(R.step) else rc.models(R.step)[0]
        methods = [m for m in lc.methods(L.step, L.model) if m in rc.methods(R.step, R.model)]
        if not methods:
            return (f"The two sides share no attribution method (left: {lc.methods(L.step, L.model)}, right: "
                    f"{rc.methods(R.step, R.model)}).")
        if s.method not in methods:
            pref = [m for m in self.app.explorer.methods if m in methods]
            s.method = pref[0] if pref else methods[0]
        ids = [i for i in lc.sample_ids() if i in set(rc.sample_ids())]
        if not ids:
            return "The two runs have no probe sample id in common; there is nothing to compare."
        if s.sample_id not in ids:
            s.sample_id = self.app.explorer.sample_id if self.app.explorer.sample_id in ids else ids[0]
        self._methods, self._ids, self._lc, self._rc = methods, ids, lc, rc
        return None

    def _update_widgets(self) -> None:
        s = self.state
        runs = {_run_label(r): r.run_id for r in self.store.known_runs()}
        for side_name in ("left", "right"):
            side, w = getattr(s, side_name), self.widgets[side_name]
            opts = dict(runs)
            if side.run_id and side.run_id not in opts.values():
                opts[side.run_id] = side.run_id
            _set_options(w["run_id"], opts, side.run_id)
            c = self.store.contents(side.run_id).value if side.run_id else None
            if c is not None:
                _set_options(w["step"], list(c.steps), side.step)
                _set_options(w["model"], c.models(side.step), side.model)
        self._lock_right()
        self.kind.value = s.kind
        if getattr(self, "_methods", None):
            _set_options(self.method, self._methods, s.method)
            _set_options(self.sample, {self._lc.sample_label(i): i for i in self._ids[:2000]}, s.sample_id)

    def _lock_right(self) -> None:
        """What the kind of comparison fixes on the right side cannot be chosen (changed only when needed)."""
        kind, right = self.state.kind, self.widgets["right"]
        for name, locked in (("run_id", kind != "runs"), ("model", kind == "checkpoints"), ("step", kind == "models")):
            if right[name].disabled != locked:
                right[name].disabled = locked

    def _key(self) -> tuple:
        s = self.state
        return (s.kind, s.left.key(), s.right.key(), s.method, s.sample_id)

    def draw(self) -> None:
        key = self._key()
        if key == self._drawn:
            return
        s, L, R = self.state, self.state.left, self.state.right
        a = self.store.sample(L.run_id, L.step, L.model, s.method, s.sample_id)
        b = self.store.sample(R.run_id, R.step, R.model, s.method, s.sample_id)
        error = a.error or b.error
        if error:
            self._drawn = None
            self.alert.show(error)
            self.tokens.data = {"empty": "Nothing to compare: see the message above."}
            self.heatmaps.objects = []
            return
        cmp = compare_results(a.value, b.value)
        self.comparison, self._drawn = cmp, key
        self.payload = compare_payload(cmp, left_title=f"A1 · {self._side_title(L)}",
                                       right_title=f"A2 · {self._side_title(R)}", method=s.method)
        self.payload["state"] = "|".join(str(x) for x in (s.kind, *L.key(), *R.key(), s.method, s.sample_id))
        self.alert.show(None)
        self.mismatch.show(cmp.message)
        self.tokens.data = self.payload
        self.heatmaps.objects = [pn.pane.Bokeh(f) for f in self.figures()]

    def _side_title(self, side: Any) -> str:
        row = self.store.run_row(side.run_id)
        name = row.name if row else (side.run_id or "")[:8]
        return f"{name} · step {side.step} · {side.model}"

    def figures(self) -> list:
        cmp = self.comparison
        if cmp is None or cmp.diff.size == 0:
            return []
        return [difference_heatmap(cmp.diff, cmp.left_matrix, cmp.right_matrix, cmp.left.source_tokens,
                                   cmp.left.target_tokens, title=f"A1 − A2 ({self.state.method})")]

    def export_html(self) -> str | None:
        if not self.payload:
            return None
        s = self.state
        meta = {"kind": s.kind, "left": s.left.key(), "right": s.right.key(), "method": s.method,
                "sample_id": s.sample_id}
        return standalone_html(self.payload, self.figures(), title="attrib-mlops · compare", meta=meta,
                               message=self.comparison.message if self.comparison else None)

    def difference(self) -> tuple[np.ndarray, list[str], list[str], dict] | None:
        cmp = self.comparison
        if cmp is None:
            return None
        s = self.state
        meta = {"kind": s.kind, "left": list(s.left.key()), "right": list(s.right.key()), "method": s.method,
                "sample_id": s.sample_id, "note": cmp.message, "values": "A1 - A2 on the common token prefix"}
        return (cmp.diff, list(cmp.left.source_tokens[: cmp.n_source]), list(cmp.left.target_tokens[: cmp.n_target]),
                meta)

    def __panel__(self) -> pn.viewable.Viewable:
        left = pn.Row(*self.widgets["left"].values())
        right = pn.Row(*self.widgets["right"].values())
        return pn.Column(
            self.kind, pn.Row(pn.pane.Markdown("**A1**", width=30), left, sizing_mode="stretch_width"),
            pn.Row(pn.pane.Markdown("**A2**", width=30), right, sizing_mode="stretch_width"),
            pn.Row(self.method, self.sample), self.alert, self.mismatch, self.tokens, self.heatmaps,
            sizing_mode="stretch_width", css_classes=["view-compare"],
        )


# =========================================================================== evolution
class EvolutionView(pn.viewable.Viewer):
    """Attribution metrics and loss over steps; checkpoint slider; samples that changed most between two steps."""

    def __init__(self, app_state: AppState, store: DashboardStore, open_sample: Callable[[str, int], None],
                 **params):
        super().__init__(**params)
        self.app, self.state, self.store, self._open_sample = app_state, app_state.evolution, store, open_sample
        self._guard = _Guard()
        self.alert = TextAlert("danger", "evolution-error")
        self.runs = TextMultiChoice(label="Runs", options={}, width=420, css_classes=["evolution-runs"])
        self.metrics = TextMultiChoice(label="Attribution metrics", options=[], width=520,
                                              css_classes=["evolution-metrics"])
        self.runs.param.watch(lambda e: self._set("run_ids", list(e.new)), "value")
        self.metrics.param.watch(lambda e: self._set("metric_keys", list(e.new)), "value")
        self.metric_plot = pn.Column(sizing_mode="stretch_width", css_classes=["evolution-metric-plot"])
        self.loss_plot = pn.Column(sizing_mode="stretch_width", css_classes=["evolution-loss-plot"])
        self.checkpoint = pn.widgets.DiscreteSlider(label="Checkpoint (explorer step)", options=[0], value=0,
                                                    width=400, css_classes=["evolution-checkpoint"])
        self.checkpoint.param.watch(self._checkpoint_moved, "value")
        self.heat = pn.Row(css_classes=["evolution-heatmap"])
        self.step_a = pn.widgets.Select(label="From step", options=[], width=110, css_classes=["evolution-step-a"])
        self.step_b = pn.widgets.Select(label="To step", options=[], width=110, css_classes=["evolution-step-b"])
        self.step_a.param.watch(lambda e: self._set("step_a", e.new), "value")
        self.step_b.param.watch(lambda e: self._set("step_b", e.new), "value")
        import pandas as pd

        self.changes = pn.widgets.Tabulator(pd.DataFrame(), disabled=True, show_index=False, selectable=False,
                                            height=300, sizing_mode="stretch_width",
                                            css_classes=["evolution-changes"], layout="fit_data_stretch")
        self.changes.on_click(self._change_clicked)
        self._change_rows: list[dict] = []
        self.state.param.watch(lambda *_e: self.update(), ["run_ids", "metric_keys", "step_a", "step_b"])
        ex = self.app.explorer
        ex.param.watch(lambda *_e: self.update_heatmap(), ["run_id", "step", "model", "methods", "sample_id"])

    def _set(self, name: str, value: Any) -> None:
        if not self._guard.on:
            setattr(self.state, name, value)

    def active(self) -> bool:
        return self.app.tab == "evolution"

    def update(self, force: bool = False) -> None:
        if self._guard.on or not (force or self.active()):
            return
        ex = self.app.explorer
        with self._guard:
            runs = {_run_label(r): r.run_id for r in self.store.known_runs()}
            if not self.state.run_ids and ex.run_id:
                self.state.run_ids = [ex.run_id]
            self.state.run_ids = [r for r in self.state.run_ids if r in runs.values()] or self.state.run_ids
            _set_options(self.runs, runs, list(self.state.run_ids))
            errors, attrib_keys, loss_keys = [], [], []
            for rid in self.state.run_ids:
                got = self.store.metric_keys(rid)
                if not got.ok:
                    errors.append(got.error)
                    continue
                attrib_keys += [k for k in got.value["attribution"] if k not in attrib_keys]
                loss_keys += [k for k in got.value["loss"] if k not in loss_keys]
            keep = [k for k in self.state.metric_keys if k in attrib_keys]
            if not keep:
                pref = [k for k in attrib_keys if k.endswith("/topk_mass") or k.endswith("/hit_at_1")]
                keep = (pref or attrib_keys)[:3]
            self.state.metric_keys = keep
            _set_options(self.metrics, attrib_keys, keep)
            contents = self.store.contents(ex.run_id).value if ex.run_id else None
            steps = list(contents.steps) if contents else []
            if steps:
                if self.state.step_a not in steps:
                    self.state.step_a = steps[0]
                if self.state.step_b not in steps:
                    self.state.step_b = steps[-1]
                _set_options(self.step_a, steps, self.state.step_a)
                _set_options(self.step_b, steps, self.state.step_b)
                self.checkpoint.options = steps
                if ex.step in steps:
                    self.checkpoint.value = ex.step
        names = {r.run_id: r.name for r in self.store.known_runs()}
        series, losses = {}, {}
        for rid in self.state.run_ids:
            for key in self.state.metric_keys:
                got = self.store.metric_history(rid, key)
                if got.ok and got.value:
                    series[f"{names.get(rid, rid[:8])} · {key}"] = got.value
            for key in loss_keys:
                got = self.store.metric_history(rid, key)
                if got.ok and got.value:
                    losses[f"{names.get(rid, rid[:8])} · {key}"] = got.value
        self.metric_plot.objects = [pn.pane.Bokeh(metric_lines(
            series, title="attribution metrics over steps", name="evolution-metrics", marker_step=ex.step),
            sizing_mode="stretch_width")] if series else [pn.pane.Markdown(
                "*No attribution metric logged for the selected runs / keys.*")]
        self.loss_plot.objects = [pn.pane.Bokeh(metric_lines(
            losses, title="loss", name="evolution-loss", marker_step=ex.step), sizing_mode="stretch_width")] \
            if losses else [pn.pane.Markdown("*No loss metric (a key containing 'loss') logged by these runs.*")]
        self.alert.show("\n\n".join(errors) if errors else None)
        self.update_changes()
        self.update_heatmap(force=True)

    def _checkpoint_moved(self, event: Any) -> None:
        if self._guard.on or event.new is None:
            return
        if event.new != self.app.explorer.step:
            self.app.explorer.step = int(event.new)

    def update_heatmap(self, force: bool = False) -> None:
        if not (force or self.active()):
            return
        ex = self.app.explorer
        if ex.step is not None and self.checkpoint.options and ex.step in self.checkpoint.options:
            with self._guard:
                self.checkpoint.value = ex.step
        if not ex.methods or ex.sample_id is None or ex.step is None:
            self.heat.objects = []
            return
        got = self.store.sample(ex.run_id, ex.step, ex.model, ex.methods[0], ex.sample_id)
        if not got.ok:
            alert = TextAlert("danger", "evolution-heatmap-error")
            alert.show(got.error)
            self.heat.objects = [alert]
            return
        r = got.value
        fig = heatmap(r.matrix, r.source_tokens, r.target_tokens, color=(220, 30, 30),
                      title=f"{ex.methods[0]} · sample {ex.sample_id} · step {ex.step}", name="evolution-heatmap")
        self.heat.objects = [pn.pane.Bokeh(fig)]

    def update_changes(self) -> None:
        import pandas as pd

        ex = self.app.explorer
        if not (ex.run_id and ex.model and ex.methods and self.state.step_a is not None
                and self.state.step_b is not None):
            return
        got = self.store.changed_most(ex.run_id, ex.model, ex.methods[0], self.state.step_a, self.state.step_b)
        if not got.ok:
            self.alert.show(got.error)
            self._change_rows = []
            self.changes.value = pd.DataFrame()
            return
        self._change_rows = got.value
        df = pd.DataFrame(got.value)
        if not df.empty:
            df["change (JS)"] = df["change (JS)"].map(lambda x: round(x, 4) if math.isfinite(x) else None)
            df["spearman"] = df["spearman"].map(lambda x: round(x, 3) if math.isfinite(x) else None)
        self.changes.value = df

    def _change_clicked(self, event: Any) -> None:
        if event.row is None or event.row >= len(self._change_rows):
            return
        self._open_sample(self._change_rows[event.row]["sample"], int(self.state.step_b))

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(self.runs, self.metrics, sizing_mode="stretch_width"), self.alert,
            pn.Row(self.metric_plot, self.loss_plot, sizing_mode="stretch_width"),
            pn.pane.Markdown("### Checkpoints of the explorer's sample"), self.checkpoint, self.heat,
            pn.pane.Markdown("### Samples whose attribution changed most (explorer's model and primary method); "
                             "click one to open it in the explorer"),
            pn.Row(self.step_a, self.step_b), self.changes,
            sizing_mode="stretch_width", css_classes=["view-evolution"],
        )


# =========================================================================== new job
class NewJobView(pn.viewable.Viewer):
    """Queue an attribution job; it runs in the background and shows up in the overview when done."""

    def __init__(self, app_state: AppState, store: DashboardStore, runner: JobRunner,
                 on_finished: Callable[[], None], **params):
        super().__init__(**params)
        self.app, self.form, self.store, self.runner = app_state, app_state.job_form, store, runner
        self._on_finished = on_finished
        self._seen: dict[int, str] = {}
        f = self.form
        self.job_name = pn.widgets.TextInput(label="Job (run) name", value=f.job_name, width=220,
                                             css_classes=["job-name"])
        self.experiment = pn.widgets.TextInput(label="Experiment", value=f.experiment, width=220,
                                               css_classes=["job-experiment"])
        self.models = pn.widgets.TextAreaInput(
            label="Models: one per line, [name=]local folder, runs:/<run_id>/<path> or models:/...",
            value=f.models, height=80, sizing_mode="stretch_width", css_classes=["job-models"])
        self.logged = pn.widgets.Select(label="Add a logged checkpoint", options=[], width=320,
                                        css_classes=["job-logged"])
        self.add_logged = pn.widgets.Button(label="Add", align="end", width=60)
        self.add_logged.on_click(self._add_logged)
        self.methods = pn.widgets.CheckButtonGroup(label="Methods", options=list(NATIVE_METHODS),
                                                   value=list(f.methods), css_classes=["job-methods"])
        self.source = pn.widgets.RadioButtonGroup(options=list(f.param.source.objects), value=f.source,
                                                  css_classes=["job-source"])
        self.text = pn.widgets.TextAreaInput(
            label="Input: one sample per line, prompt ||| target (no target: generated)", value=f.text,
            height=100, sizing_mode="stretch_width", css_classes=["job-text"])
        self.probe_run = pn.widgets.Select(label="Probe set of run", options={}, width=320,
                                           css_classes=["job-probe-run"])
        self.batch_size = pn.widgets.IntInput(label="Batch size", value=f.batch_size, start=1, width=110)
        self.max_new = pn.widgets.IntInput(label="Max new tokens", value=f.max_new_tokens, start=1, width=130)
        self.submit = pn.widgets.Button(label="Queue job", color="primary", css_classes=["job-submit"])
        self.submit.on_click(lambda _e: self.queue())
        for w, p in ((self.job_name, "job_name"), (self.experiment, "experiment"), (self.models, "models"),
                     (self.methods, "methods"), (self.source, "source"), (self.text, "text"),
                     (self.probe_run, "probe_run"), (self.batch_size, "batch_size"),
                     (self.max_new, "max_new_tokens")):
            w.param.watch(lambda e, p=p: setattr(self.form, p, list(e.new) if p == "methods" else e.new), "value")
        self.source.param.watch(lambda *_e: self._toggle_source(), "value")
        self._toggle_source()
        self.alert = TextAlert("danger", "job-error")
        self.note = TextAlert("success", "job-note")
        self.table = SafeHTML(sizing_mode="stretch_width", css_classes=["job-table"])
        self.safety = pn.pane.Markdown(
            "Models load only from local folders or the tracking store, with `trust_remote_code` off; "
            "nothing is downloaded from the hub. The job runs in a background worker process and is logged as "
            "step 0 of a "
            "new MLflow run.", css_classes=["job-safety"])

    def _toggle_source(self) -> None:
        text = self.source.value == "text"
        self.text.visible, self.probe_run.visible = text, not text

    def prepare(self) -> None:
        """Fill the choices that come from the store (called when the tab opens)."""
        runs = {_run_label(r): r.run_id for r in self.store.known_runs() if r.n_probe}
        _set_options(self.probe_run, runs, self.form.probe_run if self.form.probe_run in runs.values()
                     else next(iter(runs.values()), None))
        got = self.store.logged_models()
        self.logged.options = got.value if got.ok else []

    def _add_logged(self, _event: Any) -> None:
        if self.logged.value:
            self.models.value = (self.models.value.rstrip() + "\n" + self.logged.value).strip()

    def queue(self) -> Any:
        f = self.form
        probe = None
        try:
            if f.source != "text":
                if not f.probe_run:
                    raise ValueError("pick a run whose probe set to use")
                got = self.store.contents(f.probe_run)
                if not got.ok:
                    raise ValueError(got.error)
                probe = list(got.value.samples)
            req = JobRequest.from_form(name=f.job_name, experiment=f.experiment, models=f.models, methods=f.methods,
                                       text=f.text, probe=probe, batch_size=f.batch_size,
                                       max_new_tokens=f.max_new_tokens)
        except Exception as e:  # noqa: BLE001 - shown to the user
            self.note.show(None)
            self.alert.show(f"The job was not queued: {e}")
            return None
        handle = self.runner.submit(req)
        self.alert.show(None)
        self.note.show(f"Queued job #{handle.id} ({req.name}): {len(req.models)} model(s) x "
                         f"{len(req.methods)} method(s) x {len(req.prompts)} sample(s).")
        self.refresh()
        return handle

    def refresh(self) -> None:
        """Poll the runner: progress table; a job that just finished refreshes the overview."""
        rows, finished = [], False
        for j in reversed(self.runner.jobs()):
            s = j.snapshot()
            if self._seen.get(s["id"]) != s["status"] and s["status"] == "finished":
                finished = True
            self._seen[s["id"]] = s["status"]
            pct = int(round(100 * s["progress"]))
            rows.append(html(
                '<tr data-job="{id}" data-status="{status}" data-run="{run}"><td>#{id}</td><td>{name}</td>'
                '<td class="job-status">{status}</td><td><progress max="100" value="{pct}"></progress> {pct}%</td>'
                '<td>{message}</td><td><code>{run}</code></td></tr>', id=s["id"], status=s["status"],
                run=s["run_id"] or "", name=s["name"], pct=pct, message=s["message"] or ""))
        self.table.object = html(
            '<table class="jobs"><thead><tr><th></th><th>job</th><th>status</th><th>progress</th><th>message</th>'
            '<th>run</th></tr></thead><tbody>{}</tbody></table>', Markup("").join(rows)) if rows else \
            html("<i>No job queued in this session yet.</i>")
        if finished:
            self._on_finished()

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(self.job_name, self.experiment), self.models, pn.Row(self.logged, self.add_logged), self.methods,
            self.source, self.text, self.probe_run, pn.Row(self.batch_size, self.max_new), self.safety,
            self.submit, self.alert, self.note, pn.pane.Markdown("### Jobs of this session"), self.table,
            sizing_mode="stretch_width", css_classes=["view-jobs"],
        )


# =========================================================================== export
class ExportView(pn.viewable.Viewer):
    """Downloads of the current explorer / compare view (standalone HTML) and matrices (CSV / JSON)."""

    def __init__(self, explorer: ExplorerView, compare: CompareView, **params):
        super().__init__(**params)
        self.explorer, self.compare = explorer, compare
        self.alert = TextAlert("warning", "export-error")

        def dl(label: str, filename: str, fn: Callable[[], str | None], css: str) -> pn.widgets.FileDownload:
            def cb() -> io.BytesIO:
                text = fn()
                if text is None:
                    self.alert.show(f"Nothing to export for “{label}” yet: open the view and pick a sample first.")
                    text = ""
                else:
                    self.alert.show(None)
                return io.BytesIO(text.encode("utf-8"))

            return pn.widgets.FileDownload(callback=cb, filename=filename, label=label, color="default",
                                           css_classes=[css], width=300)

        def explorer_matrix(kind: str) -> Callable[[], str | None]:
            def fn() -> str | None:
                got = self.explorer.primary_matrix()
                if got is None:
                    return None
                m, src, tgt, meta = got
                return matrix_csv(m, src, tgt) if kind == "csv" else matrix_json(m, src, tgt, meta)
            return fn

        def compare_html() -> str | None:
            self.compare.sync(force=True)
            return self.compare.export_html()

        def compare_matrix(kind: str) -> Callable[[], str | None]:
            def fn() -> str | None:
                self.compare.sync(force=True)
                got = self.compare.difference()
                if got is None:
                    return None
                m, src, tgt, meta = got
                return matrix_csv(m, src, tgt) if kind == "csv" else matrix_json(m, src, tgt, meta)
            return fn

        self.buttons = [
            dl("Explorer view (standalone HTML)", "attrib-explorer.html", self.explorer.export_html,
               "export-explorer-html"),
            dl("Explorer matrix (CSV)", "attrib-matrix.csv", explorer_matrix("csv"), "export-explorer-csv"),
            dl("Explorer matrix (JSON)", "attrib-matrix.json", explorer_matrix("json"), "export-explorer-json"),
            dl("Compare view (standalone HTML)", "attrib-compare.html", compare_html, "export-compare-html"),
            dl("Difference matrix A1 − A2 (CSV)", "attrib-difference.csv", compare_matrix("csv"), "export-compare-csv"),
            dl("Difference matrix A1 − A2 (JSON)", "attrib-difference.json", compare_matrix("json"),
               "export-compare-json"),
        ]

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.pane.Markdown("Exports use the current selection of the Explorer and Compare tabs. The HTML files "
                             "are standalone (Bokeh inlined): they open offline and keep hover and tooltips."),
            self.alert, pn.Row(pn.Column(*self.buttons[:3]), pn.Column(*self.buttons[3:])),
            sizing_mode="stretch_width", css_classes=["view-export"],
        )

