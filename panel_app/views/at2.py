"""EstimatorView: AT2 estimators' layer x head weights, two checkpoints side by side, beside naive attention."""

from __future__ import annotations

from typing import Any

import numpy as np
import panel as pn

from panel_app.safe import Markup, SafeHTML, TextAlert, html
from panel_app.source_plots import weights_heatmap
from panel_app.source_store import SourceStore
from panel_app.sources_data import estimator_quality_rows, fmt
from panel_app.state import AppState
from panel_app.store import DashboardStore
from panel_app.views.base import _Guard, _set_options, register_view

__all__ = ["EstimatorView"]

_CSS = """
.at2-table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
.at2-table th, .at2-table td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
.at2-table th { background: #f6f6f6; }
"""


def _label(entry: dict[str, Any], run_names: dict[str, str]) -> str:
    run = run_names.get(entry.get("run_id") or "") or entry.get("run_name") or (entry.get("run_id") or "")[:8]
    step = entry.get("step")
    return f"{run} · step {step if step is not None else '?'} · {entry.get('name', '')}"


@register_view("at2", "AT2", 47, build=lambda app: EstimatorView(app.state, SourceStore(app.store)))
class EstimatorView(pn.viewable.Viewer):
    """Two logged AT2 estimators (e.g. two checkpoints of a run): weight heatmaps, change, quality vs naive attention.
    """

    def __init__(self, app_state: AppState, sources: SourceStore | DashboardStore, **params):
        super().__init__(**params)
        self.app, self.state = app_state, app_state.at2
        self.src = sources if isinstance(sources, SourceStore) else SourceStore(sources)
        self._guard = _Guard()
        self._drawn: tuple | None = None
        self.entries: list[dict[str, Any]] = []
        self.alert = TextAlert("danger", "at2-error")
        self.note = TextAlert("info", "at2-note")
        self.left = pn.widgets.Select(label="Estimator A", options={}, width=380, css_classes=["at2-left"])
        self.right = pn.widgets.Select(label="Estimator B", options={}, width=380, css_classes=["at2-right"])
        self.refresh_button = pn.widgets.Button(label="Refresh", align="end", css_classes=["at2-refresh"])
        self.refresh_button.on_click(lambda _e: self.sync(force=True, refresh=True))
        for w, p in ((self.left, "left"), (self.right, "right")):
            w.param.watch(lambda e, p=p: self._from_widget(p, e.new), "value")
        self.heatmaps = pn.Row(sizing_mode="stretch_width", css_classes=["at2-heatmaps"])
        self.tables = SafeHTML(sizing_mode="stretch_width", css_classes=["at2-tables"], stylesheets=[_CSS])
        self.state.param.watch(lambda *_e: self.sync(), ["left", "right"])
        app_state.param.watch(lambda e: self.sync(force=True) if e.new == "at2" else None, "tab")

    def _from_widget(self, name: str, value: Any) -> None:
        if not self._guard.on:
            setattr(self.state, name, value)

    def sync(self, force: bool = False, refresh: bool = False) -> None:
        if self._guard.on or not (force or self.app.tab == "at2"):
            return
        if refresh or not self.entries:
            got = self.src.estimators()
            if not got.ok:
                self._fail(got.error)
                return
            self.entries = list(got.value)
            self.note.show(got.note)
        if not self.entries:
            self._fail(None)
            return
        uris = [e["uri"] for e in self.entries]
        with self._guard:
            s = self.state
            if s.left not in uris:
                s.left = uris[0]
            if s.right not in uris:  # another checkpoint of the same run when there is one
                run = self._entry(s.left)["run_id"]
                same = [e["uri"] for e in self.entries if e["run_id"] == run and e["uri"] != s.left]
                s.right = same[-1] if same else (uris[-1] if len(uris) > 1 else s.left)
            names = {r.run_id: r.name for r in self.src.store.known_runs()}
            opts = {_label(e, names): e["uri"] for e in self.entries}
            _set_options(self.left, opts, s.left)
            _set_options(self.right, opts, s.right)
        self.draw()

    def _entry(self, uri: str) -> dict[str, Any]:
        return next(e for e in self.entries if e["uri"] == uri)

    def _fail(self, error: str | None) -> None:
        self._drawn = None
        self.alert.show(error)
        self.heatmaps.objects = []
        self.tables.object = Markup("")

    def draw(self) -> None:
        key = (self.state.left, self.state.right)
        if key == self._drawn:
            return
        a, b = self.src.estimator(self.state.left), self.src.estimator(self.state.right)
        if not (a.ok and b.ok):
            self._fail(a.error or b.error)
            return
        ea, eb = a.value, b.value
        self.alert.show(None)
        self._drawn = key
        wa, wb = ea.weights.astype(np.float64), eb.weights.astype(np.float64)
        uniform = np.full_like(wa, 1.0 / wa.size)
        same_shape = wa.shape == wb.shape
        hi = float(max(wa.max(), wb.max(), uniform.max()))
        lo = float(min(wa.min(), wb.min(), 0.0))
        la, lb = self._entry(self.state.left), self._entry(self.state.right)
        figs = [weights_heatmap(wa, title=f"A · step {la.get('step')} · AT2 weights", name="at2-heatmap-left",
                                low=lo, high=hi),
                weights_heatmap(wb, title=f"B · step {lb.get('step')} · AT2 weights", name="at2-heatmap-right",
                                low=lo, high=hi),
                weights_heatmap(uniform, title="naive attention: uniform 1/F", name="at2-heatmap-uniform",
                                low=lo, high=hi)]
        self.heatmaps.objects = [pn.Column(pn.pane.Bokeh(f), css_classes=[f.name]) for f in figs]
        self.tables.object = html("{}{}{}", self._change_table(wa, wb, same_shape), self._quality_table(ea, eb),
                                  self._run_table(la["run_id"]))
        self.weights = (wa, wb)

    def _run_table(self, run_id: str | None, limit: int = 50) -> Markup:
        """Every estimator of the run, by checkpoint: top head, held-out LDS next to naive attention's, drift."""
        rows, prev = [], None
        for e in [e for e in self.entries if e["run_id"] == run_id][-limit:]:
            got = self.src.estimator(e["uri"])
            if not got.ok:
                rows.append(html('<tr data-step="{}"><td>{}</td><td colspan="4">{}</td></tr>', e.get("step"),
                                 e.get("step"), got.error))
                continue
            w = got.value.weights.astype(np.float64)
            i, j = np.unravel_index(int(np.argmax(np.abs(w))), w.shape)
            cos = float("nan")
            if prev is not None and prev.shape == w.shape and np.linalg.norm(prev) > 0 and np.linalg.norm(w) > 0:
                cos = float((prev * w).sum() / (np.linalg.norm(prev) * np.linalg.norm(w)))
            prev, q = w, got.value.quality
            rows.append(html('<tr data-step="{}" data-lds="{}" data-lds-attention="{}"><td>{}</td><td>{}</td>'
                             "<td>layer {} head {}</td><td>{}</td><td>{}</td><td>{}</td></tr>", e.get("step"),
                             fmt(q.get("lds")), fmt(q.get("lds_attention")), e.get("step"), e.get("name", ""), i, j,
                             fmt(q.get("lds")), fmt(q.get("lds_attention")), fmt(cos)))
        return html('<table class="at2-table at2-over-steps"><tr><th colspan="6">estimators of this run across '
                    "checkpoints</th></tr><tr><th>step</th><th>name</th><th>top head</th><th>AT2 LDS</th>"
                    "<th>naive attention LDS</th><th>cosine to the previous</th></tr>{}</table>", Markup("").join(rows))

    @staticmethod
    def _change_table(wa: np.ndarray, wb: np.ndarray, same_shape: bool) -> Markup:
        def top(w: np.ndarray) -> str:
            i, j = np.unravel_index(int(np.argmax(np.abs(w))), w.shape)
            return f"layer {i} head {j} ({fmt(w[i, j])})"

        if not same_shape:
            return html('<p class="at2-change">The two estimators have different shapes ({} and {}): '
                        "different architectures, compared side by side only.</p>", str(wa.shape), str(wb.shape))
        l1 = float(np.abs(wa - wb).sum())
        na, nb = np.linalg.norm(wa), np.linalg.norm(wb)
        cos = float((wa * wb).sum() / (na * nb)) if na > 0 and nb > 0 else float("nan")
        rows = (("top head A", top(wa)), ("top head B", top(wb)), ("L1 distance |A − B|", fmt(l1)),
                ("cosine similarity", fmt(cos)))
        body = Markup("").join(html('<tr data-row="{}"><th>{}</th><td>{}</td></tr>', k, k, v) for k, v in rows)
        return html('<table class="at2-table at2-change"><tr><th colspan="2">A vs B</th></tr>{}</table>', body)

    @staticmethod
    def _quality_table(ea: Any, eb: Any) -> Markup:
        qa, qb = estimator_quality_rows(ea.quality), estimator_quality_rows(eb.quality)
        body = Markup("").join(
            html('<tr data-measure="{}"><th>{}</th><td data-col="at2-a">{}</td><td data-col="at2-b">{}</td>'
                 '<td data-col="attention-a">{}</td><td data-col="attention-b">{}</td>'
                 '<td data-col="surrogate-a">{}</td></tr>', ra["measure"], ra["measure"], fmt(ra["AT2"]),
                 fmt(rb["AT2"]), fmt(ra["naive attention"]), fmt(rb["naive attention"]),
                 fmt(ra["ablation surrogate"]))
            for ra, rb in zip(qa, qb))
        info = html('<p>A: {} examples, {} masks · B: {} examples, {} masks (held-out probes; "nan": not '
                    "measured)</p>", fmt(ea.info.get("n_examples")), fmt(ea.info.get("n_masks")),
                    fmt(eb.info.get("n_examples")), fmt(eb.info.get("n_masks")))
        return html('<table class="at2-table at2-quality"><tr><th>held-out quality</th><th>AT2 · A</th>'
                    '<th>AT2 · B</th><th>naive attention · A</th><th>naive attention · B</th>'
                    '<th>ablation surrogate · A</th></tr>{}</table>{}', body, info)

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.pane.Markdown("AT2 estimators: one weight per layer and head (which heads carry source attribution), "
                             "two checkpoints side by side, next to naive attention averaging (uniform weights), "
                             "the baseline AT2 must beat.", sizing_mode="stretch_width"),
            pn.Row(self.left, self.right, self.refresh_button), self.alert, self.note, self.heatmaps, self.tables,
            sizing_mode="stretch_width", css_classes=["view-at2"],
        )
