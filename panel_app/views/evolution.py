"""EvolutionView: metric curves over steps, checkpoint slider, samples that changed most."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import panel as pn

from attrib_mlops.analysis.registry import list_metrics
from panel_app.plots import heatmap, metric_lines, set_marker
from panel_app.safe import TextAlert, TextMultiChoice
from panel_app.state import AppState
from panel_app.store import DashboardStore
from panel_app.views.base import _Guard, _run_label, _set_options, register_view

__all__ = ["EvolutionView"]



def default_metric_keys(keys: list[str], n: int = 3) -> list[str]:
    """The metric curves Evolution shows first: logged keys of the registry's preferred metrics.

    A key ``attrib/.../<name>`` ranks by the ``preferred`` position its metric declares in
    :mod:`attrib_mlops.analysis.registry` (the CLI table's order); keys of metrics without one
    follow. Nothing here lists metric names.

    Example:
        >>> default_metric_keys(["attrib/saliency/concentration_entropy", "attrib/saliency/hit_at_1"], n=1)
        ['attrib/saliency/hit_at_1']
    """
    rank: dict[str, int] = {}
    for m in list_metrics(kind=None):
        if m.preferred is not None:
            for name in (m.name, m.summary_name):
                if name:
                    rank.setdefault(name, m.preferred)
    preferred = [k for k in keys if k.rsplit("/", 1)[-1] in rank]
    preferred.sort(key=lambda k: rank[k.rsplit("/", 1)[-1]])
    return (preferred or list(keys))[:n]

@register_view("evolution", "Evolution", 40, build=lambda app: EvolutionView(app.state, app.store, open_sample=app.open_sample))
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
        self._curves: list = []  # the metric and loss figures (their step markers follow the explorer's step)
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
                keep = default_metric_keys(attrib_keys)
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
        self._curves = []
        if series:
            self._curves.append(metric_lines(series, title="attribution metrics over steps", name="evolution-metrics",
                                             marker_step=ex.step))
        self.metric_plot.objects = [pn.pane.Bokeh(self._curves[-1], sizing_mode="stretch_width")] if series else [
            pn.pane.Markdown("*No attribution metric logged for the selected runs / keys.*")]
        if losses:
            self._curves.append(metric_lines(losses, title="loss", name="evolution-loss", marker_step=ex.step))
        self.loss_plot.objects = [pn.pane.Bokeh(self._curves[-1], sizing_mode="stretch_width")] if losses else [
            pn.pane.Markdown("*No loss metric (a key containing 'loss') logged by these runs.*")]
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
        for fig in self._curves:  # the curves' step marker follows the checkpoint
            set_marker(fig, ex.step)
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
        df = pd.DataFrame(self._with_tokens(got.value, ex))
        if not df.empty:
            df["change (JS)"] = df["change (JS)"].map(lambda x: round(x, 4) if math.isfinite(x) else None)
            df["spearman"] = df["spearman"].map(lambda x: round(x, 3) if math.isfinite(x) else None)
        self.changes.value = df

    def _with_tokens(self, rows: list[dict], ex: Any) -> list[dict]:
        """The ``top @ step`` positions of the changed-most rows as ``"<position>: <token>"``."""
        out = []
        for row in rows:
            row = dict(row)
            for step in (self.state.step_a, self.state.step_b):
                key, pos = f"top @ {step}", row.get(f"top @ {step}")
                if pos is None or pos < 0:  # no finite importance at that step
                    row[key] = ""
                    continue
                got = self.store.sample(ex.run_id, step, ex.model, ex.methods[0], row["sample"])
                toks = got.value.source_tokens if got.ok else None
                row[key] = f"{pos}: {toks[pos]}" if toks is not None and pos < len(toks) else str(pos)
            out.append(row)
        return out

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
