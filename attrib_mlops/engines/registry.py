"""The method registry: an attribution method is one class, and its name lives on the class.

As in Inseq (``class SaliencyAttribution(...): method_name = "saliency"``), a
subclass of :class:`AttributionMethod` that sets ``name`` registers itself. The
built-in methods are the modules of :mod:`attrib_mlops.engines.methods`, found
by listing that package (nothing keeps a list of their names): adding a method
is adding one file there. :func:`attrib_mlops.api.list_methods`, the CLI's
``methods`` command, job validation and the dashboard's job form all read this
registry.

This module and the method modules import no torch at import time (a method's
``compute`` imports what it needs), so listing methods is cheap, e.g. for the
dashboard.

Example:
    >>> from attrib_mlops.engines.registry import method_names, get_method
    >>> "saliency" in method_names("native")
    True
    >>> get_method("saliency", "native").kind
    'token_matrix'
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, ClassVar

from ..errors import UnknownMethodError, UnsupportedMethodError

__all__ = ["AttributionMethod", "method_classes", "method_names", "get_method", "load_builtin_methods",
           "CAUSAL_LM", "CLASSIFIER", "MODEL_KINDS"]

#: Model kinds a method can declare it supports (``AttributionMethod.model_kinds``).
CAUSAL_LM = "causal_lm"
CLASSIFIER = "classifier"
MODEL_KINDS = (CAUSAL_LM, CLASSIFIER)

_METHODS: dict[tuple[str, str], type[AttributionMethod]] = {}
_LOADED: list[bool] = []


class AttributionMethod:
    """Base class of attribution methods. A subclass with a ``name`` is registered for its ``engine``.

    Attributes:
        name: the method's name in specs, the CLI and stored results (e.g. ``"saliency"``).
        engine: the engine that runs it (``"native"``, ...).
        kind: the attribution kind of its results (``"token_matrix"``; see
            :mod:`attrib_mlops.analysis.registry`).
        description: one line for ``attrib-mlops methods`` and the dashboard.
        uses_dim_aggregation: per-cell vectors are reduced with ``options.dim_aggregation``.
        order: position in listings (the dashboard's method picker); ties by name.
        model_kinds: the model kinds it attributes (``"causal_lm"``, ``"classifier"``); a method
            for classifiers implements ``compute_classifier`` (the native ones) or is run by an
            engine that handles classifiers itself (Captum's).

    Example:
        >>> class Doubled(AttributionMethod):     # doctest: +SKIP
        ...     name, engine = "doubled", "native"
        ...     def compute(self, run): ...
    """

    name: ClassVar[str] = ""
    engine: ClassVar[str] = ""
    kind: ClassVar[str] = "token_matrix"
    description: ClassVar[str] = ""
    uses_dim_aggregation: ClassVar[bool] = False
    order: ClassVar[int] = 100
    model_kinds: ClassVar[tuple[str, ...]] = (CAUSAL_LM,)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            if not cls.engine:
                raise TypeError(f"attribution method {cls.__name__} ({cls.name!r}) names no engine")
            key = (cls.engine, cls.name)
            if key in _METHODS and _METHODS[key].__qualname__ != cls.__qualname__:
                raise TypeError(f"method {cls.name!r} of engine {cls.engine!r} is registered twice "
                                f"({_METHODS[key].__module__} and {cls.__module__})")
            bad = [k for k in cls.model_kinds if k not in MODEL_KINDS]
            if bad:
                raise TypeError(f"method {cls.name!r}: unknown model kinds {bad}; valid: {', '.join(MODEL_KINDS)}")
            _METHODS[key] = cls

    def compute(self, run: Any) -> Any:
        """Attribute one batch; what ``run`` holds and what is returned is the engine's contract."""
        raise NotImplementedError

    def compute_classifier(self, run: Any) -> Any:
        """Attribute one batch of a sequence classifier (:class:`~.classifier_kernels.ClassifierRun`).

        Returns ``(cells [N, L, K], class probabilities [N, C], per-sample class lists)``.
        """
        raise NotImplementedError

    def info(self, options: Any) -> dict[str, Any]:
        """Provenance this method adds to each result's ``info`` (e.g. the dimension aggregation)."""
        return {"dim_aggregation": options.dim_aggregation if self.uses_dim_aggregation else None}

    def classifier_info(self, options: Any) -> dict[str, Any]:
        """Provenance added to each classifier result's ``info`` (by default :meth:`info`)."""
        return self.info(options)


def load_builtin_methods() -> None:
    """Import every module of :mod:`attrib_mlops.engines.methods` once (each registers its class)."""
    if _LOADED:
        return
    from . import methods as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{info.name}")
    _LOADED.append(True)


def method_classes(engine: str | None = None, kind: str | None = None,
                   model_kind: str | None = None) -> list[type[AttributionMethod]]:
    """Registered method classes by ``order``, then name (``engine``/``kind``/``model_kind`` ``None`` = all)."""
    load_builtin_methods()
    return sorted((c for (e, _), c in _METHODS.items() if (engine is None or e == engine)
                   and (kind is None or c.kind == kind)
                   and (model_kind is None or model_kind in c.model_kinds)),
                  key=lambda c: (c.order, c.name, c.engine))


def method_names(engine: str | None = None, kind: str | None = None, model_kind: str | None = None) -> list[str]:
    """Names of the registered methods in listing order (without repeats).

    >>> method_names("native", model_kind="classifier")[:2]
    ['saliency', 'input_x_gradient']
    """
    return list(dict.fromkeys(c.name for c in method_classes(engine, kind, model_kind)))


def get_method(name: str, engine: str | None = None, model_kind: str | None = None) -> type[AttributionMethod]:
    """The class registered as ``name`` (for ``engine`` and ``model_kind`` when given).

    Raises:
        UnsupportedMethodError: the engine has no such method (the message lists its methods).
        UnknownMethodError: no engine registered the name.
    """
    load_builtin_methods()
    if engine is not None:
        cls = _METHODS.get((engine, name))
        if cls is None or (model_kind is not None and model_kind not in cls.model_kinds):
            what = "" if model_kind is None else f" for a {model_kind.replace('_', ' ')}"
            raise UnsupportedMethodError(
                f"the {engine} engine does not implement {name!r}{what}; it supports "
                f"{', '.join(method_names(engine, model_kind=model_kind))}. Use engine='inseq' or engine='auto'.")
        return cls
    for cls in method_classes():
        if cls.name == name:
            return cls
    raise UnknownMethodError(f"unknown attribution method {name!r}; registered: {', '.join(method_names())}")
