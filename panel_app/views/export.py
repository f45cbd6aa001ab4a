"""ExportView: standalone HTML of the explorer / compare view, matrices as CSV / JSON."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

import panel as pn

from panel_app.export import matrix_csv, matrix_json
from panel_app.safe import SafeHTML, TextAlert, html
from panel_app.views.base import register_view

if TYPE_CHECKING:
    from panel_app.views.compare import CompareView
    from panel_app.views.explorer import ExplorerView

__all__ = ["ExportView"]


@register_view("export", "Export", 60, build=lambda app: ExportView(app.explorer, app.compare))
class ExportView(pn.viewable.Viewer):
    """Downloads of the current explorer / compare view (standalone HTML) and matrices (CSV / JSON)."""

    def __init__(self, explorer: ExplorerView, compare: CompareView, **params):
        super().__init__(**params)
        self.explorer, self.compare = explorer, compare
        self.alert = TextAlert("warning", "export-error")
        self.what = SafeHTML(css_classes=["export-what"], sizing_mode="stretch_width", margin=(0, 10))

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

    def activate(self) -> None:
        """Say what each download will hold (the compare side is brought up to date first)."""
        self.compare.sync(force=True)
        self.what.object = html('<p><b>Explorer exports</b>: <span class="export-explorer-what">{}</span></p>'
                                '<p><b>Compare exports</b>: <span class="export-compare-what">{}</span></p>',
                                self.explorer.export_summary(), self.compare.export_summary())

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.pane.Markdown("Exports use the current selection of the Explorer and Compare tabs. The HTML files "
                             "are standalone (Bokeh inlined): they open offline and keep hover and tooltips."),
            self.what, self.alert, pn.Row(pn.Column(*self.buttons[:3]), pn.Column(*self.buttons[3:])),
            sizing_mode="stretch_width", css_classes=["view-export"],
        )
