"""ExplorerView: one run/step/model/sample: token view with hover, window, methods, heatmaps."""

from __future__ import annotations

from typing import Any

import numpy as np
import panel as pn

from panel_app.export import standalone_html
from panel_app.payload import explorer_payload
from panel_app.plots import heatmap
from panel_app.safe import TextAlert
from panel_app.state import AppState
from panel_app.store import DashboardStore, RunContents
from panel_app.tokens import TokenView
from panel_app.views.base import _Guard, _matrix, _run_label, _set_options, register_view
from panel_app.words import to_words, word_key, word_toggle

__all__ = ["ExplorerView"]


@register_view("explorer", "Explorer", 20)
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
        self.link = TextAlert("warning", "explorer-link")  # what a deep link asked for and the run does not have
        self._asked: dict[str, str] = {}
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
        self.normalize = pn.widgets.RadioButtonGroup(
            options={"colours: whole matrix": "matrix", "colours: per column": "column"}, value=self.state.normalize,
            css_classes=["explorer-normalize"], align="end")
        self.combine = pn.widgets.RadioButtonGroup(options={"overlay methods": "overlay", "mean of methods": "mean"},
                                                   value=self.state.combine, css_classes=["explorer-combine"],
                                                   align="end")
        self.words = word_toggle()  # subwords -> words (panel_app/words.py)
        self.words.param.watch(lambda _e: self.draw(), "value")
        self.check = pn.widgets.Button(label="Check artifacts", align="end", css_classes=["explorer-check"])
        self.check.on_click(lambda _e: self.check_artifacts())
        self.tokens = TokenView(data={"empty": "Loading…"}, sizing_mode="stretch_width",
                                css_classes=["explorer-tokens"], margin=(5, 10))
        self.heatmaps = pn.Row(sizing_mode="stretch_width", css_classes=["explorer-heatmaps"])
        for w, p in ((self.run, "run_id"), (self.step, "step"), (self.model, "model"), (self.sample, "sample_id"),
                     (self.methods, "methods"), (self.window, "window"), (self.axis, "window_axis"),
                     (self.combine, "combine"), (self.normalize, "normalize")):
            w.param.watch(lambda e, p=p: self._from_widget(p, e.new), "value")
        self.state.param.watch(lambda *_e: self.sync(), list(self.state.param)[1:])

    # ---------------------------------------------------------------- syncing
    def expect_link(self, query: str) -> None:
        """Remember what a deep link (``?step=&model=&sample=``) asks for, before the URL sync makes the
        selection valid: the next sync says which of these the run does not have."""
        from urllib.parse import parse_qs

        raw = {k: v[-1] for k, v in parse_qs((query or "").lstrip("?")).items()}
        self._asked = {name: raw[key] for name, key in (("step", "step"), ("model", "model"), ("sample_id", "sample"))
                       if raw.get(key)}

    def _from_widget(self, name: str, value: Any) -> None:
        if self._guard.on:
            return
        if name == "methods":
            value = list(value)
        if getattr(self.state, name) != value:
            self.link.show(None)  # the user chose: what the link asked for no longer matters
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
        asked, self._asked = self._asked, {}  # a deep link's values, checked once against what the run holds
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
        if asked:
            self.link.show(self._link_message(asked, c))
        return None

    def _link_message(self, asked: dict[str, str], c: RunContents) -> str | None:
        """What the link asked for that the run does not have, and what is shown instead (``None``: all found)."""
        s = self.state
        row = self.store.run_row(s.run_id)
        run = f"{row.name} ({s.run_id[:8]})" if row else s.run_id  # the runs list may not be read yet
        out = []
        if "step" in asked and asked["step"] != str(s.step):
            steps = ", ".join(map(str, c.steps)) or "none committed yet"
            out.append(f"The link asks for step {asked['step']!r}, which run {run} does not have (its steps: {steps}); "
                       f"showing step {s.step}.")
        if "model" in asked and asked["model"] != s.model:
            out.append(f"The link asks for model {asked['model']!r}, which run {run} does not have at step {s.step} "
                       f"(its models: {', '.join(c.models(s.step))}); showing {s.model}.")
        if "sample_id" in asked and asked["sample_id"] != s.sample_id:
            out.append(f"The link asks for sample {asked['sample_id']!r}, which is not in the probe set of run {run}; "
                       f"showing sample {s.sample_id}.")
        return "\n".join(out) or None

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
        self.normalize.value = s.normalize

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
        return (s.run_id, s.step, s.model, tuple(s.methods), s.sample_id, s.window, s.window_axis, s.combine,
                s.normalize, *word_key(self.words.value))

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
            shown = to_words(got.value, self.words.value)
            payload = explorer_payload(shown, window=s.window, axis=s.window_axis, combine=s.combine,
                                       title=f"step {s.step} · {s.model} · sample {s.sample_id}")
        except Exception as e:  # noqa: BLE001 - e.g. methods with different tokens
            from panel_app.store import explain_error

            self.alert.show(explain_error(e, self.store.tracking_uri, "preparing the view"))
            return
        payload["state"] = "|".join("" if v is None else (",".join(v) if isinstance(v, tuple) else str(v))
                                    for v in key[:8] + key[9:])  # the heatmaps' colour scale is not the tokens' state
        self.alert.show(None)
        self.results, self.payload, self._drawn = shown, payload, key
        self.tokens.data = payload
        self.heatmaps.objects = [pn.pane.Bokeh(f) for f in self.figures()]

    def figures(self) -> list:
        """One heatmap per shown method (or one of the mean), from the displayed matrices."""
        if not self.payload:
            return []
        side = self.payload["sides"][0]
        suffix = f" · window c={self.state.window} over {self.state.window_axis}" if self.state.window else ""
        per_column = self.state.normalize == "column"
        suffix += " · colours per column" if per_column else ""
        return [heatmap(_matrix(m["matrix"]), side["source"], side["target"], title=f"{m['name']}{suffix}",
                        color=m["color"], name=f"heatmap-{k}", normalize=self.state.normalize)
                for k, m in enumerate(side["methods"])]

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

    def export_summary(self) -> str:
        """What the explorer exports hold, in words."""
        if not self.payload:
            return "nothing yet: open the Explorer and pick a sample."
        s = self.state
        row = self.store.run_row(s.run_id)
        run = f"{row.name} ({s.run_id[:8]})" if row else str(s.run_id)
        shown = self.payload["sides"][0]["methods"]
        window = f"; context window c={s.window} over {s.window_axis}" if s.window else ""
        return (f"run {run} · step {s.step} · model {s.model} · sample {s.sample_id} · "
                f"{'methods' if len(s.methods) > 1 else 'method'} {', '.join(s.methods)}{window}. The HTML file "
                f"holds the view as shown; the matrix files hold {shown[0]['name']} as shown.")

    def export_html(self) -> str | None:
        if not self.payload:
            return None
        meta = {k: v for k, v in self.state.selection().items()}
        return standalone_html(self.payload, self.figures(), title="attrib-mlops · explorer", meta=meta)

    def __panel__(self) -> pn.viewable.Viewable:
        row1 = pn.Row(self.run, self.step, self.model, self.sample, sizing_mode="stretch_width")
        row2 = pn.Row(self.methods, self.combine, self.window, self.axis, self.normalize, self.words, self.check,
                      sizing_mode="stretch_width")
        return pn.Column(row1, row2, self.alert, self.link, self.note, self.tokens, self.heatmaps,
                         sizing_mode="stretch_width", css_classes=["view-explorer"])
