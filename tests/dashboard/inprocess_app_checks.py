"""The app composed in-process without a browser: views, navigation, two sessions, bad stores.

Not collected by the main test run (no ``test_`` prefix): ``test_dashboard_state_store.py`` runs
this file in a separate pytest process, because importing Panel changes Bokeh's inline resources
for the whole process (see that test). Run it alone with::

    ATTRIB_DASH_TEST_STORE=... python -m pytest tests/dashboard/inprocess_app_checks.py
"""

from __future__ import annotations

import types

METHODS = ("saliency", "attention")


def test_two_app_instances_do_not_share_state(dash_store):
    from panel_app.app import create_app

    one, two = create_app(dash_store.uri, refresh_seconds=0), create_app(dash_store.uri, refresh_seconds=0)
    one.load()
    two.load()
    assert one.state is not two.state and one.store is not two.store and one.runner is not two.runner
    first = two.state.explorer.selection()
    one.state.explorer.param.update(run_id=dash_store.runs["a"], step=10, sample_id="s3", window=2)
    one.state.tab = "compare"
    assert two.state.explorer.selection() == first and two.state.tab == "overview"
    assert one.explorer.payload["sides"][0]["sample_id"] == "s3"
    assert two.explorer.payload["sides"][0]["sample_id"] == first["sample_id"]
    assert one.explorer.tokens is not two.explorer.tokens


def test_app_views_work_without_a_browser(dash_store):
    from panel_app.app import create_app

    app = create_app(dash_store.uri, refresh_seconds=0)
    app.load()
    assert len(app.overview.table.value) == 3
    app.open_run(dash_store.runs["a"])
    assert app.state.tab == "explorer" and app.state.explorer.step == 30
    app.state.explorer.methods = list(METHODS)
    assert len(app.explorer.heatmaps.objects) == 2
    app.state.tab = "compare"
    assert app.compare.comparison is not None and app.compare.state.left.step != app.compare.state.right.step
    app.state.compare.kind = "models"
    assert {app.compare.state.left.model, app.compare.state.right.model} == {"model", "other"}
    app.state.compare.param.update(kind="runs", sample_id="s2")
    assert app.compare.mismatch.visible and "different tokens" in app.compare.mismatch.object
    app.state.tab = "evolution"
    assert app.evolution.state.metric_keys and len(app.evolution.changes.value) == 4
    app.evolution._change_clicked(types.SimpleNamespace(row=0))
    assert app.state.tab == "explorer" and app.state.explorer.step == app.evolution.state.step_b
    assert app.export.explorer.export_html() and app.compare.export_html()
    app.state.explorer.param.update(run_id=dash_store.runs["corrupt"], step=20, methods=["saliency"])
    assert app.explorer.alert.visible and "saliency.parquet" in app.explorer.alert.object
    app.state.explorer.step = 10
    assert not app.explorer.alert.visible and app.explorer.payload["sides"][0]["methods"]


def test_app_on_unreachable_store_stays_usable(fast_fail_http, port):
    from panel_app.app import create_app

    app = create_app(f"http://127.0.0.1:{port}", refresh_seconds=0)
    app.load()
    assert app.overview.alert.visible and "Cannot reach the tracking server" in app.overview.alert.object
    for tab in ("explorer", "compare", "evolution", "jobs", "export"):
        app.state.tab = tab
    app.tick()
    assert "No run" in app.explorer.tokens.data.get("empty", "")


def test_safe_components_show_text():
    """panel_app.safe: markup only from html(), alerts and MultiChoice labels as text."""
    import pytest

    from panel_app.safe import SafeHTML, TextAlert, TextMultiChoice, html

    evil = '<img src=x onerror=alert(1)> "><svg onload=alert(2)>'
    with pytest.raises(ValueError):
        SafeHTML(evil)  # a plain str is refused
    pane = SafeHTML(html("<b>{}</b>", evil))
    assert "<img" not in pane.object and "&lt;img src=x" in pane.object
    model = pane.get_root()
    import html as std_html

    assert std_html.unescape(model.text) == str(pane.object)  # Panel's transport escaping, undone by the client
    alert = TextAlert("danger", "x-error")
    assert not alert.visible
    alert.show(f"run {evil} not found")
    assert alert.visible and alert.message == f"run {evil} not found"
    assert "<img" not in alert.object and "<svg" not in alert.object
    alert.show(None)
    assert not alert.visible and alert.object == ""
    choice = TextMultiChoice(options={evil: "v1", "plain": "v2"}, value=["v1"])
    sent = choice._process_param_change({"options": choice.options, "value": choice.value})
    assert all("<" not in label for label in sent["options"]) and sent["value"] == [sent["options"][0]]
    assert choice._process_property_change({"value": sent["options"]}) == {"value": ["v1", "v2"]}
