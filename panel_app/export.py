"""Exports: the explorer / compare view as one standalone HTML file, matrices as CSV or JSON.

The HTML file embeds Bokeh's JavaScript (``bokeh.resources.INLINE``) and the token
view's script, so it opens offline and keeps hover recolouring and heatmap tooltips.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from panel_app.payload import jsonable_matrix
from panel_app.assets import TOKENS_CSS, TOKENS_JS

__all__ = ["standalone_html", "matrix_csv", "matrix_json", "csv_text"]


def _bokeh_inline() -> str:
    """Bokeh's core JavaScript inlined. Only the raw bundles: external files other libraries register
    (Panel adds a relative ``static/...`` module shim once imported) would not load from a standalone file."""
    from bokeh.resources import Resources

    res = Resources(mode="inline", components=["bokeh"])
    js = "".join(f"<script type=\"text/javascript\">\n{raw}\n</script>\n" for raw in res.js_raw)
    css = "".join(f"<style>\n{raw}\n</style>\n" for raw in res.css_raw)
    return css + js


_SCRIPT_SAFE = MappingProxyType(str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                                               "\u2028": "\\u2028", "\u2029": "\\u2029"}))


def _script_json(obj: Any) -> str:
    """JSON to inline in a ``<script>``: no ``<``, ``>`` or ``&`` at all, so no text can end or re-open the element."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False).translate(_SCRIPT_SAFE)


#: First characters that make a spreadsheet read a cell as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: Any) -> str:
    """A text cell a spreadsheet shows as text: a leading ``'`` before ``= + - @``, tab or CR (OWASP's advice).

    Numbers are numbers (``-0.5`` stays as it is); the JSON export keeps every token verbatim.

    >>> csv_text("=cmd|' /C calc'!A0"), csv_text("-0.5"), csv_text("w1")
    ("'=cmd|' /C calc'!A0", '-0.5', 'w1')
    """
    text = str(value)
    if text.startswith(_FORMULA_START):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def _readable(value: Any) -> str:
    """A metadata value as a reader would write it: lists joined with commas, nothing as a dash."""
    if value is None:
        return "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(_readable(v) for v in value) or "—"
    if isinstance(value, Mapping):
        return "; ".join(f"{k} {_readable(v)}" for k, v in value.items())
    return str(value)


def standalone_html(payload: Mapping[str, Any], figures: Sequence[Any], *, title: str,
                    meta: Mapping[str, Any] | None = None, message: str | None = None) -> str:
    """A self-contained HTML page: the token view of ``payload`` and the Bokeh ``figures``."""
    from bokeh.embed import components

    script, divs = components(list(figures)) if figures else ("", ())
    meta_rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_readable(v))}</td></tr>"
                        for k, v in (meta or {}).items())
    note = f'<p class="attrib-note">{html.escape(message)}</p>' if message else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
{_bokeh_inline()}
<style>
body {{ font-family: Helvetica, Arial, sans-serif; margin: 16px 24px; }}
table.attrib-meta th {{ text-align: left; padding-right: 12px; color: #555; font-weight: 600; }}
.attrib-note {{ background: #fff4d6; border: 1px solid #f0d48a; padding: 6px 10px; border-radius: 4px; }}
.attrib-figs {{ display: flex; flex-wrap: wrap; gap: 16px; margin-top: 12px; }}
{TOKENS_CSS}
</style>
</head>
<body>
<h2>{html.escape(title)}</h2>
<table class="attrib-meta">{meta_rows}</table>
{note}
<div id="attrib-root"></div>
<div class="attrib-figs">{''.join(divs)}</div>
<script>
{TOKENS_JS}
attribDraw(document.getElementById("attrib-root"), {_script_json(payload)});
</script>
{script}
</body>
</html>
"""


def matrix_csv(matrix: np.ndarray, source_tokens: Sequence[str], target_tokens: Sequence[str]) -> str:
    """Long-format CSV: ``source_index,source_token,target_index,target_token,value`` (empty = undefined).

    Tokens pass through :func:`csv_text` (a token such as ``=1+1`` is written ``'=1+1``).
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["source_index", "source_token", "target_index", "target_token", "value"])
    m = np.asarray(matrix, dtype=np.float64)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            v = float(m[i, j])
            w.writerow([i, csv_text(source_tokens[i]), j, csv_text(target_tokens[j]),
                        repr(v) if math.isfinite(v) else ""])
    return buf.getvalue()


def matrix_json(matrix: np.ndarray, source_tokens: Sequence[str], target_tokens: Sequence[str],
                meta: Mapping[str, Any] | None = None, **extra: Any) -> str:
    """JSON object: ``meta`` fields, ``source_tokens``, ``target_tokens`` and ``matrix``.

    Rows of ``matrix`` are source tokens; ``null`` = undefined cell.
    """
    doc = dict(meta or {})
    doc.update({"source_tokens": list(source_tokens), "target_tokens": list(target_tokens),
                "matrix": jsonable_matrix(matrix)})
    doc.update(extra)
    return json.dumps(doc, ensure_ascii=False, allow_nan=False, indent=1)
