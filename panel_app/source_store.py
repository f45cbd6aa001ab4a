"""Data access of the Sources and AT2 views, through the tracking reader of a :class:`DashboardStore`.

Stored source attributions are the ``sources`` kind of the attribution manifest (a step
record's ``kinds.sources.files`` lists ``{model: {method: file}}``); one sample is read with
``reader.load_sample(..., kind="sources")``. AT2 estimators are MLflow LoggedModels listed
and loaded with the reader's :meth:`estimators` / :meth:`load_estimator`. As in
:class:`~panel_app.store.DashboardStore`, no method raises for a data problem: each returns a
:class:`~panel_app.store.Fetched` with a message.

Example:
    >>> src = SourceStore(DashboardStore("sqlite:///mlflow.db"))                   # doctest: +SKIP
    >>> c = src.contents(run_id).value                                               # doctest: +SKIP
    >>> src.result(run_id, c.steps[-1], c.models()[0], "ablation", c.sample_ids()[0]).value.top(1)  # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from panel_app.store import DashboardStore, Fetched, RunContents

__all__ = ["SOURCES_KIND", "SourceStore", "source_contents"]

#: Name of the storage kind holding source attributions.
SOURCES_KIND = "sources"
_CACHE = 128


def source_contents(run_id: str, manifest: dict[str, Any]) -> RunContents:
    """Steps, models and methods of a run's *source* results (from its manifest), and its probe samples."""
    step_models: dict[int, dict[str, tuple[str, ...]]] = {}
    for s in manifest.get("steps") or []:
        entry = ((s.get("kinds") or {}).get(SOURCES_KIND) or {}) if isinstance(s, dict) else {}
        files = entry.get("files") if isinstance(entry, dict) else None
        if isinstance(files, dict) and files:
            step_models[int(s["step"])] = {str(m): tuple(d) for m, d in files.items() if isinstance(d, dict)}
    probe = manifest.get("probe") or {}
    samples = tuple(dict(s) for s in probe.get("samples", []) if isinstance(s, dict) and "id" in s)
    return RunContents(run_id=run_id, steps=tuple(sorted(step_models)), step_models=step_models, samples=samples,
                       updated=manifest.get("updated"))


@dataclass(frozen=True)
class _Key:
    run_id: str
    step: int
    model: str
    method: str
    sample_id: str


class SourceStore:
    """Source results and AT2 estimators of one browser session (small LRU caches, no module state).

    Args:
        store: the session's :class:`DashboardStore` (its reader, error messages and run list are shared).
    """

    def __init__(self, store: DashboardStore) -> None:
        self.store = store
        self._lock = threading.RLock()
        self._contents: dict[str, RunContents] = {}
        self._results: OrderedDict[_Key, Any] = OrderedDict()
        self._estimators: OrderedDict[str, Any] = OrderedDict()

    def _guard(self, fn, what: str) -> Fetched:
        return self.store._guard(fn, what)

    # ------------------------------------------------------------- source results
    def contents(self, run_id: str | None, refresh: bool = False) -> Fetched[RunContents]:
        """The run's steps with source results (cached; ``refresh`` re-reads the manifest)."""
        if not run_id:
            return Fetched(None, "No run with source attributions selected.")
        with self._lock:
            if not refresh and run_id in self._contents:
                return Fetched(self._contents[run_id])
        def go() -> RunContents:
            c = source_contents(run_id, self.store.reader.manifest(run_id, refresh=refresh))
            if not c.samples and c.steps:  # no probe set logged: the sample ids of the last step's first file
                step = c.steps[-1]
                model = c.models(step)[0]
                rs = self.store.reader.load(run_id, step, model, c.methods(step, model)[0], kind=SOURCES_KIND)
                c = replace(c, samples=tuple({"id": str(r.sample_id), "prompt": r.prompt, "target": r.target}
                                             for r in rs if r.sample_id is not None))
            return c

        got = self._guard(go, f"opening run {run_id}")
        if got.ok:
            with self._lock:
                self._contents[run_id] = got.value
        return got

    def runs(self, refresh: bool = False) -> list[Any]:
        """Rows of the known runs (:meth:`DashboardStore.known_runs`) that hold source results."""
        known = self.store.known_runs()
        if refresh or not known:  # the view opened before the overview listed the runs (a deep link)
            got = self.store.runs()
            known = list(got.value or []) if got.ok else []
        out = []
        for row in known[:200]:
            got = self.contents(row.run_id, refresh=refresh)
            if got.ok and got.value.steps:
                out.append(row)
        return out

    def result(self, run_id: str, step: int, model: str, method: str, sample_id: str) -> Fetched[Any]:
        """One stored :class:`~attrib_mlops.sources.result.SourceAttribution` (one row group decoded; cached)."""
        if None in (run_id, step, model, method, sample_id):
            return Fetched(None, "Pick a run, a step, a model, a method and a sample.")
        key = _Key(run_id, int(step), model, method, str(sample_id))
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return Fetched(self._results[key])
        got = self._guard(lambda: self.store.reader.load_sample(run_id, int(step), model, method, str(sample_id),
                                                                kind=SOURCES_KIND),
                          f"reading the {method} sources of sample {sample_id} at step {step} of run {run_id}")
        if got.ok:
            with self._lock:
                self._results[key] = got.value
                while len(self._results) > _CACHE:
                    self._results.popitem(last=False)
        return got

    # ------------------------------------------------------------- AT2 estimators
    def estimators(self) -> Fetched[list[dict[str, Any]]]:
        """Every logged AT2 estimator of the store (``uri``, ``run_id``, ``step``, ``name``, ...)."""
        got = self._guard(lambda: self.store.reader.estimators(), "listing AT2 estimators")
        if got.ok and not got.value:
            return Fetched([], note="No AT2 estimator is logged in this store yet. Train one with "
                                    "attrib_mlops.train_source_estimator and log it with "
                                    "attrib_mlops.tracking.estimators.log_estimator (or the callback's sources= "
                                    "option).")
        return got

    def estimator(self, uri: str) -> Fetched[Any]:
        """The estimator logged at ``uri`` (downloaded once per session)."""
        if not uri:
            return Fetched(None, "Pick an estimator.")
        with self._lock:
            if uri in self._estimators:
                return Fetched(self._estimators[uri])
        got = self._guard(lambda: self.store.reader.load_estimator(uri), f"loading the AT2 estimator {uri}")
        if got.ok:
            with self._lock:
                self._estimators[uri] = got.value
                while len(self._estimators) > _CACHE:
                    self._estimators.popitem(last=False)
        return got
