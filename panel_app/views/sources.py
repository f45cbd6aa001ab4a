"""SourcesView: which sources of a prompt a generation used: coloured prompt, target-span scores, quality, compare.

The prompt is shown as text with each source's background coloured by its score (red: removing
it lowers the target, blue: raises it; opacity proportional to ``|score| / max |score|``). Picking
a range of target tokens shows the scores for that span (an ablation result is refitted on its
stored masks, an AT2 result averages its per-token scores). Below, the same sample at another
checkpoint or in another run: scores side by side, bars, and whether the top source changed.

Every source, prompt and token is escaped (:func:`panel_app.safe.html`). Stable hooks for tests
and scripts: ``.attrib-sources[data-state]`` (``run|step|model|method|sample|start|end``),
``.attrib-src[data-index][data-score][data-rank]`` and ``.sources-scores tr[data-index]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import panel as pn

from panel_app.safe import Markup, SafeHTML, TextAlert, html
from panel_app.source_plots import score_bars
from panel_app.source_store import SourceStore
from panel_app.sources_data import (compare_rows, fmt, full_span, n_target, quality_rows, score_colour, score_scale,
                                    segments, span_result, top_change)
from panel_app.state import AppState
from panel_app.store import DashboardStore, Fetched, RunContents
from panel_app.views.base import _Guard, _run_label, _set_options, register_view

__all__ = ["SourcesView"]

_CSS = """
.attrib-sources { font-size: 15px; line-height: 1.9; white-space: pre-wrap; overflow-wrap: anywhere; padding: 6px; }
.attrib-src { border-radius: 3px; padding: 1px 2px; border: 1px solid #ccc; }
.attrib-src-tgt { border-bottom: 2px solid transparent; padding: 0 2px; margin: 0 1px; }
.attrib-src-tgt[data-selected="1"] { border-bottom-color: #333; background: #f1f1f1; }
.attrib-sources .label { color: #666; font-size: 12px; margin-right: 6px; }
.sources-table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
.sources-table th, .sources-table td { border: 1px solid #ddd; padding: 3px 8px; text-align: left;
                                        vertical-align: top; }
.sources-table th { background: #f6f6f6; }
"""
_KINDS = {"another checkpoint of this run": "checkpoints", "another run": "runs"}


@register_view("sources", "Sources", 45, build=lambda app: SourcesView(app.state, SourceStore(app.store)))
class SourcesView(pn.viewable.Viewer):
    """One stored source attribution (run, step, model, method, sample), a target span, and a comparison."""

    def __init__(self, app_state: AppState, sources: SourceStore | DashboardStore, **params):
        super().__init__(**params)
        self.app, self.state = app_state, app_state.sources
        self.src = sources if isinstance(sources, SourceStore) else SourceStore(sources)
        self._guard = _Guard()
        self._drawn: tuple | None = None
        self.result = self.shown = self.other = None
        self.alert = TextAlert("danger", "sources-error")
        self.note = TextAlert("info", "sources-note")
        self.change = TextAlert("warning", "sources-top-change")
        self.compare_alert = TextAlert("danger", "sources-compare-error")
        sel = {"run_id": ("Run", 300, "sources-run"), "step": ("Step", 100, "sources-step"),
               "model": ("Model", 150, "sources-model"), "method": ("Method", 130, "sources-method"),
               "sample_id": ("Sample", 360, "sources-sample"),
               "other_run": ("Compare with run", 300, "sources-other-run"),
               "other_step": ("at step", 100, "sources-other-step")}
        self.widgets = {p: pn.widgets.Select(label=lb, options=[], width=w, css_classes=[css])
                        for p, (lb, w, css) in sel.items()}
        self.span_start = pn.widgets.Select(label="First target token", options={}, width=170,
                                            css_classes=["sources-span-start"])
        self.span_end = pn.widgets.Select(label="Last target token", options={}, width=170,
                                          css_classes=["sources-span-end"])
        self.refresh_button = pn.widgets.Button(label="Refresh", align="end", css_classes=["sources-refresh"])
        self.refresh_button.on_click(lambda _e: self.refresh())
        self._refresh = False
        self.kind = pn.widgets.RadioButtonGroup(options=_KINDS, value=self.state.compare_kind,
                                                css_classes=["sources-compare-kind"])
        for p, w in self.widgets.items():
            w.param.watch(lambda e, p=p: self._from_widget(p, e.new), "value")
        self.kind.param.watch(lambda e: self._from_widget("compare_kind", e.new), "value")
        self.span_start.param.watch(lambda e: self._span_from_widgets(), "value")
        self.span_end.param.watch(lambda e: self._span_from_widgets(), "value")
        self.prompt = SafeHTML(sizing_mode="stretch_width", css_classes=["sources-prompt"], stylesheets=[_CSS])
        self.scores = SafeHTML(css_classes=["sources-scores"], stylesheets=[_CSS])
        self.quality = SafeHTML(css_classes=["sources-quality"], stylesheets=[_CSS])
        self.compare_table = SafeHTML(css_classes=["sources-compare-table"], stylesheets=[_CSS])
        self.bars = pn.Row(css_classes=["sources-bars"])
        self.over_steps = SafeHTML(css_classes=["sources-over-steps"], stylesheets=[_CSS])
        self.state.param.watch(lambda *_e: self.sync(), list(self.state.param)[1:])
        app_state.param.watch(lambda e: self.sync(force=True) if e.new == "sources" else None, "tab")

    # ------------------------------------------------------------ selection
    def _from_widget(self, name: str, value: Any) -> None:
        if not self._guard.on:
            setattr(self.state, name, value)

    def _span_from_widgets(self) -> None:
        if self._guard.on or self.span_start.value is None or self.span_end.value is None:
            return
        a, b = int(self.span_start.value), int(self.span_end.value)
        self.state.span = (min(a, b), max(a, b) + 1)

    def refresh(self) -> None:
        """Re-read the run list and the manifests (new steps of a live run)."""
        self._refresh, self._drawn = True, None
        try:
            self.sync(force=True)
        finally:
            self._refresh = False

    def active(self) -> bool:
        return self.app.tab == "sources"

    def sync(self, force: bool = False) -> None:
        if self._guard.on or not (force or self.active()):
            return
        with self._guard:
            error = self._normalise()
            self._update_widgets()
        if error:
            self._fail(error)
            return
        self.draw()

    def _contents(self, run_id: str | None) -> Fetched[RunContents]:
        return self.src.contents(run_id, refresh=self._refresh)

    def _normalise(self) -> str | None:
        s = self.state
        runs = self._runs = self.src.runs(refresh=self._refresh)
        if not runs:
            self.note.show(None)
            return ("No run in this store holds source attributions yet. Log some with attrib_mlops.attribute_sources "
                    "and AttributionWriter.log_step, a job with a sources method, or the callback's sources= option.")
        ids = [r.run_id for r in runs]
        if s.run_id not in ids:
            s.run_id = self.app.explorer.run_id if self.app.explorer.run_id in ids else ids[0]
        got = self._contents(s.run_id)
        if not got.ok:
            return got.error
        c = self._c = got.value
        if s.step not in c.steps:
            s.step = c.steps[-1]
        if s.model not in c.models(s.step):
            s.model = c.models(s.step)[0]
        methods = c.methods(s.step, s.model)
        if s.method not in methods:
            s.method = "ablation" if "ablation" in methods else methods[0]
        sids = c.sample_ids()
        if not sids:
            return f"Run {s.run_id} has no probe samples listed in its manifest."
        if s.sample_id not in sids:
            s.sample_id = sids[0]
        # the comparison: another checkpoint of this run, or the same step (or the last) of another run
        if s.compare_kind == "checkpoints":
            s.other_run = s.run_id
        elif s.other_run not in ids or s.other_run == s.run_id:
            others = [r for r in ids if r != s.run_id]
            s.other_run = others[0] if others else s.run_id
        oc = self._contents(s.other_run)
        self._oc = oc.value if oc.ok else None
        if self._oc is not None and self._oc.steps:
            steps = self._oc.steps
            if s.other_step not in steps or (s.compare_kind == "checkpoints" and s.other_step == s.step):
                if s.compare_kind == "checkpoints":
                    others = [st for st in steps if st != s.step]
                    s.other_step = others[0] if others else s.step
                else:
                    s.other_step = s.step if s.step in steps else steps[-1]
        return None

    def _update_widgets(self) -> None:
        s = self.state
        runs = {_run_label(r): r.run_id for r in getattr(self, "_runs", [])}
        _set_options(self.widgets["run_id"], runs, s.run_id)
        _set_options(self.widgets["other_run"], runs, s.other_run)
        self.kind.value = s.compare_kind
        locked = s.compare_kind == "checkpoints"
        if self.widgets["other_run"].disabled != locked:
            self.widgets["other_run"].disabled = locked
        c = getattr(self, "_c", None)
        if c is None or s.run_id != c.run_id:
            return
        _set_options(self.widgets["step"], list(c.steps), s.step)
        _set_options(self.widgets["model"], c.models(s.step), s.model)
        _set_options(self.widgets["method"], c.methods(s.step, s.model), s.method)
        _set_options(self.widgets["sample_id"], {c.sample_label(i): i for i in c.sample_ids()[:2000]}, s.sample_id)
        oc = getattr(self, "_oc", None)
        if oc is not None:
            _set_options(self.widgets["other_step"], list(oc.steps), s.other_step)

    # ------------------------------------------------------------ drawing
    def _key(self) -> tuple:
        s = self.state
        return (s.run_id, s.step, s.model, s.method, s.sample_id, s.span, s.compare_kind, s.other_run, s.other_step)

    def _fail(self, error: str | None) -> None:
        self._drawn = None
        self.alert.show(error)
        self.prompt.object = html('<div class="attrib-sources attrib-empty" data-state="">{}</div>',
                                  "Nothing to show: see the message above.")
        self.scores.object = Markup("")
        self.quality.object = Markup("")
        self.compare_table.object = Markup("")
        self.over_steps.object = Markup("")
        self.change.show(None)
        self.bars.objects = []

    def draw(self) -> None:
        key = self._key()
        if key == self._drawn:
            return
        s = self.state
        got = self.src.result(s.run_id, s.step, s.model, s.method, s.sample_id)
        if not got.ok:
            self._fail(got.error)
            return
        self.result = got.value
        T = n_target(self.result)
        span = s.span if s.span is not None and 0 <= s.span[0] < s.span[1] <= T else full_span(self.result)
        with self._guard:
            opts = {f"{i}: {t}": i for i, t in enumerate(self._target_tokens(self.result))}
            _set_options(self.span_start, opts, span[0])
            _set_options(self.span_end, opts, span[1] - 1)
        try:
            self.shown = span_result(self.result, *span)
            self.alert.show(None)
        except Exception as e:  # noqa: BLE001 - a span that cannot be refitted: say why, show the whole target
            self.shown = self.result
            span = full_span(self.result)
            self.alert.show(str(e))
        self._drawn = key
        self.note.show(None)
        self.prompt.object = html("{}", self._prompt_markup(self.shown, span))  # markup built with html() below
        self.scores.object = html("{}", self._scores_markup(self.shown))
        self.quality.object = html("{}", self._quality_markup(self.shown))
        self._draw_compare(span)
        self.over_steps.object = html("{}", self._over_steps_markup(span))

    @staticmethod
    def _target_tokens(r: Any) -> list[str]:
        toks = list(r.target_tokens)
        n = n_target(r)
        return toks[:n] + [f"#{i}" for i in range(len(toks), n)]

    def _state_text(self, span: tuple[int, int]) -> str:
        s = self.state
        return "|".join(str(x) for x in (s.run_id, s.step, s.model, s.method, s.sample_id, span[0], span[1]))

    def _prompt_markup(self, r: Any, span: tuple[int, int]) -> Markup:
        scale = score_scale(r.scores)
        ranks = {i: k + 1 for k, i in enumerate(r.ranking())}
        parts = []
        for text, i in segments(r):
            if i is None:
                parts.append(html("{}", text))
                continue
            score = float(r.scores[i])
            parts.append(html('<span class="attrib-src" data-index="{}" data-score="{}" data-rank="{}" '
                              'style="background-color: {}" title="source {} · score {} · rank {}">{}</span>',
                              i, fmt(score), ranks[i], score_colour(score, scale), i, fmt(score), ranks[i], text))
        tgt = Markup("").join(
            html('<span class="attrib-src-tgt" data-index="{}" data-selected="{}">{}</span>', j,
                 int(span[0] <= j < span[1]), t) for j, t in enumerate(self._target_tokens(r)))
        return html('<div class="attrib-sources" data-state="{}"><div><span class="label">prompt</span>{}</div>'
                    '<div><span class="label">target</span>{}</div></div>', self._state_text(span),
                    Markup("").join(parts), tgt)

    @staticmethod
    def _scores_markup(r: Any) -> Markup:
        ranks = {i: k + 1 for k, i in enumerate(r.ranking())}
        rows = Markup("").join(
            html('<tr data-index="{}" data-score="{}"><td>{}</td><td>{}</td><td>{}</td><td class="text">{}</td></tr>',
                 i, fmt(r.scores[i]), ranks[i], i, fmt(r.scores[i]), r.sources[i]) for i in r.ranking())
        return html('<table class="sources-table"><tr><th>rank</th><th>source</th><th>score</th><th>text</th></tr>'
                    "{}</table>", rows)

    @staticmethod
    def _quality_markup(r: Any) -> Markup:
        rows = Markup("").join(html('<tr data-name="{}"><th>{}</th><td>{}</td></tr>', k, k, v)
                               for k, v in quality_rows(r))
        return html('<table class="sources-table sources-quality-table">{}</table>', rows)

    # ------------------------------------------------------------ compare
    def _draw_compare(self, span: tuple[int, int]) -> None:
        s = self.state
        self.other = None
        if s.other_run is None or s.other_step is None:
            return self._compare_fail("No other checkpoint or run with source attributions to compare with.")
        if s.other_run == s.run_id and s.other_step == s.step:
            return self._compare_fail(f"Run {s.run_id} has source attributions at one step only; pick another run.")
        oc = getattr(self, "_oc", None)
        if oc is None or s.model not in oc.models(s.other_step) or s.method not in oc.methods(s.other_step, s.model) \
                or s.sample_id not in oc.sample_ids():
            return self._compare_fail(f"Step {s.other_step} of the other run has no {s.method} sources of model "
                                      f"{s.model} for sample {s.sample_id}.")
        got = self.src.result(s.other_run, s.other_step, s.model, s.method, s.sample_id)
        if not got.ok:
            return self._compare_fail(got.error)
        other = got.value
        note = None
        try:
            other = span_result(other, *span)
        except Exception as e:  # noqa: BLE001 - compare the whole target then, and say so
            note = f"B is compared over its whole target: {e}"
        self.other = other
        a, b = self.shown, other
        rows, warn = compare_rows(a, b)
        ta, tb, changed = top_change(a, b)
        side_b = f"step {s.other_step}" + ("" if s.other_run == s.run_id else f" of run {self._name(s.other_run)}")
        if changed:
            text = (f"Top source changed: {self._src(a, ta)} at step {s.step} (A) → {self._src(b, tb)} at "
                    f"{side_b} (B).")
        else:
            text = f"Top source unchanged: {self._src(a, ta)} at step {s.step} (A) and at {side_b} (B)."
        self.compare_alert.show(None)
        self.change.kind = "warning" if changed else "info"
        self.change.show(" ".join(x for x in (text, warn, note) if x))
        body = Markup("").join(
            html('<tr data-index="{}" data-a="{}" data-b="{}"><td>{}</td><td class="text">{}</td><td>{}</td><td>{}</td>'
                 "<td>{}</td><td>{}</td><td>{}</td></tr>", r["source"], fmt(r["A"]), fmt(r["B"]), r["source"],
                 r["text"], fmt(r["A"]), fmt(r["B"]), fmt(r["B - A"]), r["rank A"], r["rank B"]) for r in rows)
        self.compare_table.object = html(
            '<table class="sources-table" data-changed="{}" data-state="{}|{}|{}"><tr><th>source</th><th>text</th>'
            "<th>A · step {}</th><th>B · {}</th><th>B − A</th><th>rank A</th><th>rank B</th></tr>{}</table>",
            int(changed), self._state_text(span), s.other_run, s.other_step, s.step,
            side_b, body)
        self.bars.objects = [pn.pane.Bokeh(score_bars(rows, left=f"step {s.step}", right=side_b))]

    def _over_steps_markup(self, span: tuple[int, int], limit: int = 50) -> Markup:
        """The top source of this sample, method and span at every checkpoint of the run (changes marked)."""
        s, c = self.state, self._c
        rows, prev = [], None
        for step in [st for st in c.steps if s.method in c.methods(st, s.model)][-limit:]:
            got = self.src.result(s.run_id, step, s.model, s.method, s.sample_id)
            if not got.ok:
                rows.append(html('<tr data-step="{}" data-top="-1"><td>{}</td><td colspan="4">{}</td></tr>', step,
                                 step, got.error))
                continue
            try:
                r = span_result(got.value, *span)
            except Exception:  # noqa: BLE001 - this step's result cannot be refitted: its whole target
                r = got.value
            top = r.ranking()[0] if r.n_sources else -1
            changed = prev is not None and top != prev
            prev = top
            rows.append(html('<tr data-step="{}" data-top="{}" data-changed="{}"><td>{}</td><td>{}</td>'
                             '<td class="text">{}</td><td>{}</td><td>{}</td></tr>', step, top, int(changed), step,
                             top, r.sources[top] if top >= 0 else "", fmt(r.scores[top]) if top >= 0 else "",
                             "changed" if changed else ""))
        return html('<table class="sources-table" data-state="{}"><tr><th>step</th><th>top source</th><th>text</th>'
                    "<th>score</th><th></th></tr>{}</table>", self._state_text(span), Markup("").join(rows))

    def _compare_fail(self, message: str | None) -> None:
        self.compare_alert.show(message)
        self.change.show(None)
        self.compare_table.object = Markup("")
        self.bars.objects = []

    def _name(self, run_id: str) -> str:
        row = self.src.store.run_row(run_id)
        return row.name if row else run_id[:8]

    @staticmethod
    def _src(r: Any, i: int) -> str:
        if i < 0:
            return "(none)"
        text = r.sources[i]
        return f"source {i} {text[:60]!r}" + ("…" if len(text) > 60 else "")

    def scores_shown(self) -> np.ndarray | None:
        """The scores currently shown (tests and exports)."""
        return None if self.shown is None else np.asarray(self.shown.scores)

    def __panel__(self) -> pn.viewable.Viewable:
        w = self.widgets
        return pn.Column(
            pn.Row(w["run_id"], w["step"], w["model"], w["method"], w["sample_id"], self.refresh_button),
            pn.Row(self.span_start, self.span_end), self.alert, self.note, self.prompt,
            pn.Row(self.scores, self.quality, sizing_mode="stretch_width"),
            pn.pane.Markdown("#### Compare: the same sample at another checkpoint or in another run"),
            pn.Row(self.kind, w["other_run"], w["other_step"]), self.compare_alert, self.change, self.compare_table,
            self.bars, pn.pane.Markdown("#### Top source at every checkpoint of this run"), self.over_steps,
            sizing_mode="stretch_width", css_classes=["view-sources"],
        )
