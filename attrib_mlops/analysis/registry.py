"""The metric registry: every scalar metric is registered once, by name.

A metric declares its name, the function that computes it, which direction is
better and how it aggregates over samples (Inseq's ``register_step_function``
habit). Everything that lists metrics reads this registry instead of keeping
its own list of names: :func:`~attrib_mlops.analysis.summarize` and
:func:`~attrib_mlops.analysis.drift`, the job summaries, the tracking writer,
the CLI table, the regression check's rules and :class:`Policy` fields, and the
dashboard's metric preference.

Scopes (what ``fn`` receives):

* ``"sample"``: one result (:class:`~attrib_mlops.analysis.kinds.token_matrix.SampleContext`);
  the per-step and per-job metrics (``topk_mass``, ``hit_at_1``, ...);
* ``"drift"``: two results of the same sample (a previous step, another model);
* ``"check"``: two results of the same sample, baseline and candidate of a
  regression check (``importance_corr``, ``topk_changed``, ...);
* ``"check_side"``: one side of a check, reported for both sides and as a drop
  (baseline minus candidate: ``hit_at_1``, ``probability``).

Metrics of one *kind* of attribution (``token_matrix`` today; context sources and
training examples next) live in one module of :mod:`attrib_mlops.analysis.kinds`,
which is imported (discovered) the first time the registry is read.

Example:
    >>> from attrib_mlops.analysis.registry import get_metric, list_metrics
    >>> m = get_metric("hit_at_1")
    >>> m.higher_is_better, m.label, m.aggregate
    (True, 'hit@1', 'mean')
    >>> [x.name for x in list_metrics("sample")][:2]
    ['concentration_entropy', 'topk_mass']
    >>> aggregate_values("mean", [1.0, None, float("nan"), 3.0])
    2.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from attrib_mlops._util import nanmean as _nanmean
from attrib_mlops.errors import InputError

__all__ = [
    "TOKEN_MATRIX",
    "SCOPES",
    "AGGREGATIONS",
    "Metric",
    "Kind",
    "register_metric",
    "register_kind",
    "get_metric",
    "list_metrics",
    "metric_names",
    "get_kind",
    "kind_names",
    "kind_of",
    "aggregate_values",
    "nanmean",
    "compute",
]

#: The attribution kind of a token matrix (:class:`~attrib_mlops.result.AttributionResult`).
TOKEN_MATRIX = "token_matrix"
#: What a metric function receives; see the module docstring.
SCOPES = ("sample", "drift", "check", "check_side")


def nanmean(values: Iterable[float | None]) -> float | None:
    """Mean of the finite values (``None``, NaN and inf left out); ``None`` when none is left.

    >>> nanmean([1.0, None, float("inf"), 2.0]), nanmean([])
    (1.5, None)
    """
    return _nanmean(values, empty=None)


def _share(values: Iterable[float | bool | None]) -> float | None:
    """Share of true values among the defined ones (booleans or 0/1)."""
    return nanmean([float(v) for v in values if v is not None])


#: How per-sample values combine over samples: ``mean`` of the finite values, ``share`` of true values.
AGGREGATIONS: dict[str, Callable[[Iterable[Any]], float | None]] = {"mean": nanmean, "share": _share}


def aggregate_values(how: str, values: Iterable[Any]) -> float | None:
    """Aggregate per-sample values with one of :data:`AGGREGATIONS` (``None`` when nothing is defined)."""
    try:
        fn = AGGREGATIONS[how]
    except KeyError:
        raise InputError(f"unknown aggregation {how!r}; valid: {', '.join(AGGREGATIONS)}") from None
    return fn(values)


class Metric(NamedTuple):
    """One registered metric.

    Attributes:
        name: the metric's name (MLflow key component, summary key, policy key stem).
        fn: computes the value from the scope's context; ``None`` = not applicable here.
        scope: one of :data:`SCOPES`.
        kind: the attribution kind it applies to (``token_matrix``, ...).
        higher_is_better: ``True``/``False``; ``None`` when neither (descriptive metrics).
        aggregate: how values combine over samples (a key of :data:`AGGREGATIONS`).
        summary_name: the name of the aggregate over samples (default: ``name``).
        label: short column header (CLI table, dashboard).
        description: one line for docs and tooltips.
        logged: logged as an MLflow metric per step (``False``: kept in the summary files only).
        preferred: position among the metrics shown where only a few fit (the CLI table); ``None``
            = not shown there.
        key: short key of per-sample rows (check reports; default: ``name``).
        bounds: ``(low, high)`` range of the values, when bounded (policy thresholds are checked
            against it).
        rules: regression-check rules on this metric, ``(("value" | "drop", default threshold), ...)``:
            ``value`` bounds the aggregate (``min_<summary_name>`` when higher is better, else
            ``max_...``), ``drop`` bounds baseline minus candidate (``check_side`` metrics). A
            default of ``None`` means the rule exists (a :class:`~attrib_mlops.check.Policy` key)
            but is off by default.
        missing: why the value can be undefined (reported when a rule is not evaluated).
        only_some: the metric applies to some results only (e.g. classifiers'); its rules are left
            out of a check, instead of reported as not evaluated, when no compared sample has a value.
    """

    name: str
    fn: Callable[[Any], float | None]
    scope: str = "sample"
    kind: str = TOKEN_MATRIX
    higher_is_better: bool | None = None
    aggregate: str = "mean"
    summary_name: str = ""
    label: str = ""
    description: str = ""
    logged: bool = True
    preferred: int | None = None
    key: str = ""
    bounds: tuple[float, float] | None = None
    rules: tuple[tuple[str, float | None], ...] = ()
    missing: str = ""
    only_some: bool = False

    def reduce(self, values: Iterable[Any]) -> float | None:
        """The aggregate of per-sample values (see :attr:`aggregate`)."""
        return aggregate_values(self.aggregate, values)


class Kind(NamedTuple):
    """A kind of attribution result (what every layer has one module per).

    Attributes:
        name: ``token_matrix``, ...
        result_type: the Python type of one result of this kind.
        description: one line.
        summarize: ``summarize(results, ground_truth, k) -> {metric: aggregate}`` of a list of results
            (job summaries); ``None``: the token-matrix summary.
    """

    name: str
    result_type: type
    description: str = ""
    summarize: Callable[..., dict[str, float | None]] | None = None


# registrations happen at import time of the kind modules (under Python's import lock)
_METRICS: dict[tuple[str, str], dict[str, Metric]] = {}
_KINDS: dict[str, Kind] = {}
_LOADED: list[bool] = []


def register_metric(
    name: str,
    fn: Callable[[Any], float | None],
    *,
    scope: str = "sample",
    kind: str = TOKEN_MATRIX,
    higher_is_better: bool | None = None,
    aggregate: str = "mean",
    summary_name: str | None = None,
    label: str = "",
    description: str = "",
    logged: bool = True,
    preferred: int | None = None,
    key: str | None = None,
    bounds: tuple[float, float] | None = None,
    rules: Sequence[tuple[str, float | None]] = (),
    missing: str = "",
    only_some: bool = False,
) -> Metric:
    """Register a metric once (a second registration of the same name, scope and kind is an error).

    Returns:
        The :class:`Metric`. A kind's module (:mod:`attrib_mlops.analysis.kinds`) calls this at
        import time, e.g. ``register_metric("topk_mass", lambda ctx: ctx.concentration["topk_mass"],
        higher_is_better=True, label="top-k")``.
    """
    if scope not in SCOPES:
        raise InputError(f"unknown metric scope {scope!r}; valid: {', '.join(SCOPES)}")
    if aggregate not in AGGREGATIONS:
        raise InputError(f"unknown aggregation {aggregate!r} for metric {name!r}; valid: {', '.join(AGGREGATIONS)}")
    for which, _default in rules:
        if which not in ("value", "drop") or higher_is_better is None:
            raise InputError(f"metric {name!r}: rules need a direction (higher_is_better) and 'value' or 'drop', "
                             f"got {which!r}")
    m = Metric(name, fn, scope, kind, higher_is_better, aggregate, summary_name or name, label or name,
               description, logged, preferred, key or name, bounds, tuple(rules), missing, only_some)
    table = _METRICS.setdefault((kind, scope), {})
    if name in table:
        raise InputError(f"metric {name!r} ({kind}, {scope}) is registered twice")
    table[name] = m
    return m


def register_kind(name: str, result_type: type, description: str = "",
                  summarize: Callable[..., dict[str, float | None]] | None = None) -> Kind:
    """Register an attribution kind and the type of its results (and how a list of them is summarised)."""
    k = Kind(name, result_type, description, summarize)
    _KINDS[name] = k
    return k


def _load_builtin() -> None:
    """Import every module of :mod:`attrib_mlops.analysis.kinds` once (each registers its kind's metrics)."""
    if not _LOADED:
        from attrib_mlops.analysis.kinds import import_all

        import_all()
        _LOADED.append(True)


def list_metrics(scope: str | None = None, kind: str | None = TOKEN_MATRIX) -> list[Metric]:
    """Registered metrics in registration order (``scope``/``kind`` ``None`` = all)."""
    _load_builtin()
    return [m for (k, s), table in _METRICS.items() if (kind is None or k == kind)
            and (scope is None or s == scope) for m in table.values()]


def metric_names(scope: str = "sample", kind: str = TOKEN_MATRIX) -> list[str]:
    """Names of the registered metrics of one scope and kind."""
    return [m.name for m in list_metrics(scope, kind)]


def get_metric(name: str, scope: str | None = None, kind: str | None = TOKEN_MATRIX) -> Metric:
    """The metric registered as ``name`` (or whose :attr:`~Metric.summary_name` is ``name``).

    Raises:
        InputError: no such metric; the message lists the valid names.
    """
    found = [m for m in list_metrics(scope, kind) if name in (m.name, m.summary_name)]
    if not found:
        valid = sorted({m.name for m in list_metrics(scope, kind)})
        raise InputError(f"unknown metric {name!r}; valid: {', '.join(valid)}")
    return found[0]


def get_kind(name: str) -> Kind:
    """The registered kind ``name``; the error lists the valid kinds."""
    _load_builtin()
    if name not in _KINDS:
        raise InputError(f"unknown attribution kind {name!r}; valid: {', '.join(kind_names())}")
    return _KINDS[name]


def kind_names() -> list[str]:
    """Names of the registered attribution kinds."""
    _load_builtin()
    return list(_KINDS)


def kind_of(result: Any) -> str:
    """The kind of one result (by its type).

    Raises:
        InputError: a type no kind registered.
    """
    _load_builtin()
    for k in _KINDS.values():
        if isinstance(result, k.result_type):
            return k.name
    raise InputError(f"no attribution kind handles {type(result).__name__}; kinds: {', '.join(_KINDS)}")


def compute(scope: str, ctx: Any, kind: str = TOKEN_MATRIX, skip: Sequence[str] = ()) -> dict[str, float]:
    """Every applicable metric of ``scope``/``kind`` on ``ctx``: ``{name: value}`` in registration order.

    A metric whose function returns ``None`` is not applicable (left out).
    """
    out: dict[str, float] = {}
    for m in list_metrics(scope, kind):
        if m.name in skip:
            continue
        v = m.fn(ctx)
        if v is not None:
            out[m.name] = v
    return out
