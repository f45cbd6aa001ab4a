"""Text is text (panel_app/safe.py): no view builds markup from a string except through panel_app.safe.

Checked on the source (AST), so this process never imports Panel (see conftest.py); the components
themselves are exercised in ``inprocess_app_checks.py`` and in a real browser in
``test_dashboard_injection.py``. A new view that renders text as HTML fails here before it ships.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PANEL_APP = ROOT / "panel_app"
SAFE = PANEL_APP / "safe.py"

#: Constructors that render their text as HTML or Markdown (or hand labels to an HTML renderer).
MARKUP_CALLS = {
    "pn.pane.HTML": "use panel_app.safe.SafeHTML with html(...)",
    "pn.pane.Alert": "use panel_app.safe.TextAlert (Alert renders Markdown and HTML)",
    "pn.widgets.MultiChoice": "use panel_app.safe.TextMultiChoice (Choices.js renders labels as HTML)",
    "pn.widgets.AutocompleteInput": "its completions are rendered as HTML",
    "HTMLTemplateFormatter": "Tabulator / DataTable cells must stay text",
    "Div": "Bokeh Div text is HTML: use SafeHTML",
    "Paragraph": "use SafeHTML",
}
#: Markup builders: a value of one of these calls is escaped markup.
SAFE_BUILDERS = {"html", "escape", "Markup", "safe.html", "safe.escape"}


def _modules() -> list[Path]:
    return sorted(p for p in PANEL_APP.rglob("*.py") if p != SAFE)


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def _is_safe(node: ast.AST) -> bool:
    """A string constant, a call of a markup builder, or a conditional between such values."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    if isinstance(node, ast.Call) and _name(node.func) in SAFE_BUILDERS:
        return True
    if isinstance(node, ast.IfExp):
        return _is_safe(node.body) and _is_safe(node.orelse)
    return False


def _violations(path: Path) -> list[str]:
    return _violations_in(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))


def _violations_in(source: str, label: str) -> list[str]:
    tree = ast.parse(source)
    out = []
    where = lambda n: f"{label}:{n.lineno}"  # noqa: E731
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            if name in MARKUP_CALLS:
                out.append(f"{where(node)} calls {name}: {MARKUP_CALLS[name]}")
            if name == "pn.pane.Markdown" and node.args and not (
                    isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                out.append(f"{where(node)} pn.pane.Markdown of a computed string: only constant text is Markdown")
            for kw in node.keywords:
                if kw.arg == "formatters" and "html" in ast.dump(kw.value).lower():
                    out.append(f"{where(node)} an html Tabulator formatter")
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Attribute) and t.attr == "object" and not _is_safe(node.value):
                    out.append(f"{where(node)} assigns .{t.attr} from something that is not escaped markup "
                               "(build it with panel_app.safe.html)")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "{safe}" in node.value:
            out.append(f"{where(node)} a Bokeh '{{safe}}' tooltip field is not escaped")
    return out


def test_views_build_markup_only_through_panel_app_safe():
    assert _modules(), "no panel_app modules found"
    problems = [v for p in _modules() for v in _violations(p)]
    assert not problems, "\n".join(problems)


def test_the_guard_catches_what_it_should():
    """The checker itself: each way of rendering text as HTML is reported."""
    found = _violations_in(
        "import panel as pn\n"
        "a = pn.pane.HTML(name)\n"
        "b = pn.pane.Alert(msg)\n"
        "c = pn.pane.Markdown(f'**{run}**')\n"
        "pane.object = f'<b>{run}</b>'\n"
        "d = pn.widgets.MultiChoice(options=runs)\n"
        "t = pn.widgets.Tabulator(df, formatters={'run': {'type': 'html'}})\n"
        "h = HoverTool(tooltips='@name{safe}')\n"
        "pane.object = html('<b>{}</b>', run)\n"        # fine
        "e = pn.pane.Markdown('### constant')\n", "bad.py")  # fine
    assert len(found) == 7, found
    for line in (2, 3, 4, 5, 6, 7, 8):
        assert any(f":{line} " in f for f in found), (line, found)


@pytest.mark.parametrize("js_name", ["TOKENS_JS"])
def test_token_view_script_writes_text_only(js_name):
    """The token view's JavaScript (dashboard and standalone export) never parses a string as HTML."""
    from panel_app import assets

    js = getattr(assets, js_name)
    assert "insertAdjacentHTML" not in js and "outerHTML" not in js and "document.write" not in js
    assigns = re.findall(r"innerHTML\s*=\s*([^;\n]+)", js)
    assert assigns and all(a.strip() == '""' for a in assigns), assigns  # only ever cleared
    assert "textContent" in js


def test_view_html_and_export_have_no_unescaped_bokeh_fields():
    for path in (ROOT / "attrib_mlops" / "tracking" / "html.py", PANEL_APP / "export.py", PANEL_APP / "plots.py"):
        assert "{safe}" not in path.read_text(encoding="utf-8"), path
