"""Text is text: the one way from a string to what the dashboard shows.

Run, experiment, model, method and job names, sample ids, prompts, tokens, tags and error
messages (which repeat bad URL values) come from users, URLs, training scripts and models.
None of them is ever interpreted as HTML, Markdown or TeX:

* :func:`html` builds markup from a constant template and escapes every value it fills in
  (``markupsafe``, the library Jinja uses);
* :class:`SafeHTML` is the HTML pane of the dashboard: it accepts only
  :class:`markupsafe.Markup` (from :func:`html` / :func:`escape`) and refuses a plain ``str``,
  so unescaped text cannot reach the page by accident;
* :class:`TextAlert` shows a message as text in an alert box (Panel's ``Alert`` pane renders
  Markdown and HTML, so the views never use it);
* :class:`TextMultiChoice`: Bokeh's ``MultiChoice`` (Choices.js) renders option labels as
  HTML, so this one escapes them;
* :func:`bokeh_text` for Bokeh titles, axis and legend labels: TeX delimiters are broken up, so
  a name never turns into MathJax (which would also load a script from a CDN).

Already text by construction: ``Select`` options, button-group labels, Tabulator string cells
(Bokeh's ``StringFormatter``), Bokeh tooltip ``@field`` values (escaped by BokehJS; never use
``{safe}``) and the token view (``textContent`` only). ``tests/dashboard/test_dashboard_safety.py``
checks statically that the views build markup only through this module.

Example:
    >>> str(html("<b>{}</b>", "<img src=x onerror=alert(1)>"))
    '<b>&lt;img src=x onerror=alert(1)&gt;</b>'
    >>> bokeh_text("$$x$$") != "$$x$$"
    True
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import panel as pn
import param
from markupsafe import Markup, escape

from attrib_mlops._util import plain_text as bokeh_text

__all__ = ["Markup", "escape", "html", "SafeHTML", "TextAlert", "TextMultiChoice", "bokeh_text", "ALERT_KINDS"]

#: Alert kinds and their (text, background, border) colours.
ALERT_KINDS = MappingProxyType({
    "danger": ("#842029", "#f8d7da", "#f5c2c7"),
    "warning": ("#664d03", "#fff3cd", "#ffecb5"),
    "info": ("#055160", "#cff4fc", "#b6effb"),
    "success": ("#0f5132", "#d1e7dd", "#badbcc"),
})

_ALERT_CSS = """
.attrib-alert { border: 1px solid; border-radius: 4px; padding: 10px 14px; font-size: 13px; line-height: 1.45;
                white-space: pre-wrap; overflow-wrap: anywhere; }
""" + "".join(f".attrib-alert-{k} {{ color: {c}; background: {bg}; border-color: {bd}; }}\n"
              for k, (c, bg, bd) in ALERT_KINDS.items())


def html(template: str, *args: Any, **kwargs: Any) -> Markup:
    """Markup from a constant ``template`` (``str.format`` syntax); every value filled in is escaped.

    A value that is already :class:`Markup` (e.g. from another :func:`html` call) is kept as it is.

    >>> str(html('<td data-run="{run}">{}</td>', '"><b>', run='a"b'))
    '<td data-run="a&#34;b">&#34;&gt;&lt;b&gt;</td>'
    """
    return Markup(template).format(*args, **kwargs)


class SafeHTML(pn.pane.HTML):
    """An HTML pane that takes only :class:`markupsafe.Markup` (build it with :func:`html`).

    A plain ``str`` raises ``ValueError``: text from outside must be escaped on the way in.
    """

    object = param.ClassSelector(class_=Markup, default=Markup(""), allow_None=True,
                                 doc="markup built by panel_app.safe.html / escape")
    disable_math = param.Boolean(default=True, constant=True)

    def __init__(self, object: Markup | None = None, **params: Any) -> None:  # noqa: A002 - Panel's name
        super().__init__(Markup("") if object is None else object, **params)

    def _update(self, ref: str, model: Any) -> None:
        # Panel's HTML pane re-derives every property from ``model.document``, which is None while the
        # pane sits in a tab that is not shown: its stylesheets then point at Panel's CDN and the browser
        # fetches them from the internet. The session's document knows the dashboard's own URLs.
        model.update(**self._get_properties(model.document or pn.state.curdoc))

    def _transform_object(self, obj: Any) -> dict[str, Any]:
        # a plain str from here on: Panel escapes it for transport (Markup.replace would escape twice)
        return super()._transform_object("" if obj is None else str(obj))


class TextAlert(SafeHTML):
    """A message box whose content is plain text: :meth:`show` a message, or ``None`` to hide the box.

    ``object`` holds the rendered (escaped) markup and ``message`` the message itself.
    """

    message = param.String(default="", doc="the message shown (plain text)")
    kind = param.Selector(default="info", objects=list(ALERT_KINDS))

    _rename = {**pn.pane.HTML._rename, "message": None, "kind": None}

    def __init__(self, kind: str = "info", css: str | None = None, **params: Any) -> None:
        params.setdefault("sizing_mode", "stretch_width")
        params.setdefault("margin", (4, 10))
        super().__init__(Markup(""), kind=kind, visible=False, css_classes=[css] if css else [],
                         stylesheets=[_ALERT_CSS], **params)

    def show(self, text: Any | None) -> None:
        """Show ``text`` (any value, shown as ``str(text)``), or hide the box when it is empty / ``None``."""
        message = "" if text is None else str(text)
        self.message = message
        self.object = html('<div class="attrib-alert attrib-alert-{}" role="alert">{}</div>', self.kind,
                           message) if message else Markup("")
        self.visible = bool(message)


class TextMultiChoice(pn.widgets.MultiChoice):
    """``MultiChoice`` with text labels (BokehJS hands its labels to Choices.js as HTML, so they are escaped).

    Values are unchanged; only the labels the browser receives are escaped.
    """

    @property
    def labels(self) -> list[str]:
        return [str(escape(label)) for label in super().labels]
