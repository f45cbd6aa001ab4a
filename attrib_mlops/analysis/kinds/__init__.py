"""One module per attribution kind, each registering its kind and metrics (discovered, not listed).

Adding a kind: write ``<kind>.py`` here that calls
:func:`~attrib_mlops.analysis.registry.register_kind` and
:func:`~attrib_mlops.analysis.registry.register_metric`; copy ``token_matrix.py``
and its test ``tests/analysis/kinds/test_token_matrix.py``.
"""

from __future__ import annotations

import importlib
import pkgutil

__all__ = ["import_all"]


def import_all() -> None:
    """Import every kind module of this package (each registers itself; ``_``-prefixed ones are skipped).

    The token matrix comes first (the default kind keeps the first places in every listing), then the
    others by name.
    """
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: (i.name != "token_matrix", i.name)):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
