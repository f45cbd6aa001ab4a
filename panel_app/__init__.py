"""The attrib-mlops dashboard (Panel/Bokeh): runs overview, explorer, compare, evolution, new job, export.

Layers (see ``docs/dashboard.md``):

* :mod:`panel_app.state` - what a session has selected (``param`` classes only);
* :mod:`panel_app.store` - data access through the tracking reader, errors as messages;
* :mod:`panel_app.payload`, :mod:`panel_app.plots`, :mod:`panel_app.tokens`, :mod:`panel_app.export` -
  what is drawn (pure numpy / Bokeh / the token view component);
* :mod:`panel_app.views` - one class per view (``__panel__``);
* :mod:`panel_app.jobs` - background attribution jobs;
* :mod:`panel_app.app` - composition (:func:`~panel_app.app.create_app`, :func:`~panel_app.app.serve`).

Nothing in this package keeps module-level mutable state: every browser session
gets its own state, store, views and job runner.
"""

__all__ = ["create_app", "serve"]


def __getattr__(name: str):
    if name in __all__:
        from panel_app import app

        return getattr(app, name)
    raise AttributeError(f"module 'panel_app' has no attribute {name!r}")
