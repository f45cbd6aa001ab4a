"""The dashboard's tabs come from the view registry (panel_app/views/): one module per view."""

from __future__ import annotations

import panel as pn

from panel_app.state import TABS
from panel_app.views import register_view, view_specs
from panel_app.views.base import _VIEWS


def test_every_view_module_registers_one_tab_in_state_order():
    specs = view_specs()
    assert [s.tab for s in specs] == list(TABS)
    assert [s.title for s in specs] == ["Runs", "Explorer", "Compare", "Evolution", "Sources", "AT2", "New job",
                                        "Export", "Training data"]
    assert len({s.cls for s in specs}) == len(specs)
    assert all(s.cls.__module__.startswith("panel_app.views.") for s in specs)


def test_a_registered_view_is_built_from_the_app(tmp_path):
    @register_view("probe", "Probe", 999, build=lambda app: Probe(app.store))
    class Probe(pn.viewable.Viewer):
        def __init__(self, store, **params):
            super().__init__(**params)
            self.store = store

        def __panel__(self):
            return pn.pane.Str("probe")

    try:
        from panel_app.app import DashboardApp

        app = DashboardApp(f"sqlite:///{tmp_path}/mlflow.db")
        assert isinstance(app.probe, Probe) and app.probe.store is app.store
        assert app.tab_names[-1] == "probe" and len(app.tabs) == len(TABS) + 1
        assert app.export.explorer is app.explorer  # built in order: export reads the views before it
    finally:
        _VIEWS.pop("probe", None)


def test_evolution_default_curves_come_from_the_metric_registry():
    from attrib_mlops.analysis.registry import list_metrics
    from panel_app.views.evolution import default_metric_keys

    preferred = sorted((m for m in list_metrics("sample") if m.preferred is not None), key=lambda m: m.preferred)
    keys = [f"attrib/saliency/{m.name}" for m in reversed(list_metrics("sample"))] + ["attrib/saliency/not_a_metric"]
    assert default_metric_keys(keys) == [f"attrib/saliency/{m.name}" for m in preferred[:3]]
    assert default_metric_keys(["attrib/x/a", "attrib/x/b"], n=1) == ["attrib/x/a"]  # none preferred: first keys
