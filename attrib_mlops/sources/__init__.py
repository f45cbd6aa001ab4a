"""Context-source attribution: which sources (sentences, documents, turns) a generation used.

Compute layer (torch, transformers, scikit-learn); imports no tracking, MLflow or
dashboard code. Names load lazily so that :class:`SourceAttribution` (numpy
only) can be read without torch::

    from attrib_mlops.sources import attribute_sources, SourceAttribution
"""

from __future__ import annotations

__all__ = [
    "attribute_sources",
    "SourceAttribution",
    "SourceOptions",
    "SourceBudgetWarning",
    "faithfulness",
]

_WHERE = {
    "attribute_sources": "api",
    "SourceAttribution": "result",
    "SourceOptions": "options",
    "SourceBudgetWarning": "ablation",
    "faithfulness": "faithfulness",
}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        mod = importlib.import_module(f"{__name__}.{_WHERE[name]}")
        return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
