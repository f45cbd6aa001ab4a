"""The token view: source and target tokens coloured by importance, recoloured on hover in the browser.

:class:`TokenView` is a Panel ``JSComponent``: the payload (see :mod:`panel_app.payload`)
is sent once, and hovering recolours tokens client side, without a server round-trip:

* no hover: source token ``i`` shows the normalised ``I(x_i)``, target token ``j`` the normalised ``I(y_j)``;
* hovering target ``j``: the source tokens show column ``j`` of the displayed matrix;
* hovering source ``i``: the target tokens show row ``i``;
* with several methods each has its own colour and overlapping importance blends
  (red + blue -> purple); in the compare view both sides and the difference row
  follow the hovered position.

Every token is a ``<span class="attrib-tok">`` with stable attributes for tests and
scripts: ``data-side`` (``a``, ``b`` or ``diff``), ``data-role`` (``source``/``target``),
``data-index``, ``data-value`` (the value currently shown, primary method, ``nan`` when
undefined) and ``data-values`` (JSON, one value per method); the view's root carries ``data-state``
(the selection it shows, ``|``-separated) and ``data-window``. Colours are min-max
normalised per shown vector (as :func:`attrib_mlops.analysis.normalize_vector`); the
difference row uses a diverging scale around 0, relative to the magnitude of the values compared
(``diff.source_scale``, ``target_scale``, ``cell_scale``: max of |A1| and |A2|).

The same JavaScript (:data:`panel_app.assets.TOKENS_JS`) draws the standalone HTML export.
"""

from __future__ import annotations

import panel as pn
import param

from panel_app.assets import TOKENS_CSS, TOKENS_JS

__all__ = ["TOKENS_JS", "TOKENS_CSS", "TokenView"]


class TokenView(pn.custom.JSComponent):
    """Token view of one or more sides (see the module docstring); ``data`` is a payload dict."""

    data = param.Dict(default={}, doc="payload from panel_app.payload (sides, diff, sync)")

    _esm = TOKENS_JS + """
export function render({ model }) {
  const root = document.createElement("div");
  attribDraw(root, model.data);
  model.on("data", () => attribDraw(root, model.data));
  return root;
}
"""
    _stylesheets = [TOKENS_CSS]
