"""Data access of the dashboard: everything goes through :class:`~attrib_mlops.tracking.AttributionReader`.

One :class:`DashboardStore` per browser session (no module-level caches: two
sessions never share state). Loads are lazy and small: listing runs uses run
tags only, opening a run reads its manifest, showing a sample decodes one
Parquet row group (``reader.load_sample``). Results are kept in a bounded LRU
cache of this store instance.

No method raises for a data problem: each returns a :class:`Fetched` whose
``error`` says in words what is wrong (tracking server unreachable, empty
store, corrupt artifact, step not committed yet) and what to do, so the page
can show it and stay usable.

Example:
    >>> store = DashboardStore("sqlite:///mlflow.db")                 # doctest: +SKIP
    >>> runs = store.runs()                                            # doctest: +SKIP
    >>> runs.ok, runs.error                                            # doctest: +SKIP
    (True, None)
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

import numpy as np

from attrib_mlops.errors import AttribError
from attrib_mlops.result import AttributionResult
from attrib_mlops.tracking.errors import is_unreachable

__all__ = ["Fetched", "RunRow", "RunContents", "DashboardStore", "explain_error", "is_unreachable"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Samples kept decoded per store (per browser session).
SAMPLE_CACHE_SIZE = 256


@dataclass(frozen=True)
class Fetched(Generic[T]):
    """A value, or a message saying why there is none.

    Attributes:
        value: the data (``None`` when ``error`` is set).
        error: what went wrong, in words, with what to do; ``None`` when fine.
        note: an informational message that is not an error (e.g. an empty store).
    """

    value: T | None = None
    error: str | None = None
    note: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class RunRow:
    """One line of the runs overview (from run tags; the experiment name is looked up once)."""

    run_id: str
    experiment_id: str
    experiment: str
    name: str
    status: str
    n_steps: int
    last_step: int | None
    methods: tuple[str, ...]
    models: tuple[str, ...]
    n_probe: int
    start_time: int | None
    last_update: int | None  # ms since epoch

    def record(self) -> dict[str, Any]:
        """A flat dict for the overview table."""
        return {
            "experiment": self.experiment,
            "run": self.name,
            "run_id": self.run_id,
            "status": self.status,
            "steps": self.n_steps,
            "last step": self.last_step if self.last_step is not None else -1,
            "methods": ", ".join(self.methods),
            "models": ", ".join(self.models),
            "probe": self.n_probe,
            "last update": _fmt_time(self.last_update),
        }

    def matches(self, text: str) -> bool:
        text = text.strip().lower()
        if not text:
            return True
        hay = " ".join([self.experiment, self.name, self.run_id, self.status, *self.methods, *self.models]).lower()
        return all(part in hay for part in text.split())


@dataclass(frozen=True)
class RunContents:
    """What a run's manifest lists: committed steps, their models and methods, the probe samples."""

    run_id: str
    steps: tuple[int, ...]
    step_models: dict[int, dict[str, tuple[str, ...]]]
    samples: tuple[dict[str, Any], ...]
    updated: str | None = None

    def models(self, step: int | None = None) -> list[str]:
        if step is not None and step in self.step_models:
            return list(self.step_models[step])
        out: dict[str, None] = {}
        for d in self.step_models.values():
            out.update(dict.fromkeys(d))
        return list(out)

    def methods(self, step: int | None = None, model: str | None = None) -> list[str]:
        out: dict[str, None] = {}
        for s, d in self.step_models.items():
            if step is not None and s != step:
                continue
            for m, methods in d.items():
                if model is None or m == model:
                    out.update(dict.fromkeys(methods))
        return list(out)

    def sample_ids(self) -> list[str]:
        return [str(s["id"]) for s in self.samples]

    def sample_label(self, sid: str) -> str:
        for s in self.samples:
            if str(s["id"]) == sid:
                text = (s.get("prompt", "") + " ⟶" + s.get("target", "")).strip()
                return f"{sid} · {text[:70]}{'…' if len(text) > 70 else ''}"
        return sid


def _fmt_time(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _iso_to_ms(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        return None


# ------------------------------------------------------------------- errors
def _short(text: str, n: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def explain_error(exc: BaseException, tracking_uri: str | None, what: str = "") -> str:
    """A message a user can act on, for any exception raised while reading the tracking store."""
    from attrib_mlops.tracking.errors import SchemaVersionError, TrackingError

    where = f" while {what}" if what else ""
    uri = tracking_uri or "MLflow's default tracking URI"
    if is_unreachable(exc):
        reason = _short(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 160)
        return (f"Cannot reach the tracking server at {uri}{where} ({reason}). Check that it is running and that "
                "--tracking-uri is right; the page tries again on the next refresh.")
    if isinstance(exc, SchemaVersionError):
        return _short(str(exc), 500)
    if isinstance(exc, TrackingError):
        text = str(exc)
        if "cannot be read" in text and "not found" in text.lower():
            return f"{_short(text, 400)}. Check the run id (the run may have been deleted)."
        return (f"{_short(text, 400)}. This run's attribution artifacts are corrupt or incomplete; "
                "other steps, methods and runs still work.")
    if isinstance(exc, AttribError):
        return _short(str(exc), 500)
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # pragma: no cover
        MlflowException = ()  # type: ignore[assignment]
    text = str(exc)
    if "unable to open database file" in text or "no such table" in text:
        return (f"Cannot open the tracking store {uri}{where}: {_short(text, 160)}. Check the path of the "
                "SQLite file / the --tracking-uri.")
    if MlflowException and isinstance(exc, MlflowException):
        return f"MLflow error{where}: {_short(getattr(exc, 'message', text), 300)}"
    if isinstance(exc, OSError):
        return f"Cannot open the tracking store {uri}{where}: {_short(text, 300)}. Check the --tracking-uri."
    logger.exception("unexpected error%s", where)
    return f"Unexpected error{where}: {type(exc).__name__}: {_short(text, 300)}"


# -------------------------------------------------------------------- store
class DashboardStore:
    """Per-session data access through an :class:`AttributionReader`, with error messages instead of exceptions.

    Args:
        tracking_uri: MLflow tracking URI (``None``: MLflow's default resolution).
        reader: an existing reader (tests); built lazily from ``tracking_uri`` otherwise.
        cache_size: decoded samples kept in this store's LRU cache.

    Example:
        >>> store = DashboardStore("sqlite:///mlflow.db")                                     # doctest: +SKIP
        >>> run = store.runs().value[0]                                                        # doctest: +SKIP
        >>> c = store.contents(run.run_id).value                                               # doctest: +SKIP
        >>> store.sample(run.run_id, c.steps[-1], c.models()[0], c.methods()[0], c.sample_ids()[0]).value
    """

    def __init__(self, tracking_uri: str | None = None, reader: Any = None,
                 cache_size: int = SAMPLE_CACHE_SIZE) -> None:
        self.tracking_uri = tracking_uri
        self._reader = reader
        self._lock = threading.RLock()
        self._experiments: dict[str, str] = {}
        self._contents: dict[str, RunContents] = {}
        self._samples: OrderedDict[tuple, AttributionResult] = OrderedDict()
        self._cache_size = max(1, int(cache_size))
        self._runs: list[RunRow] = []
        self._cache_dir: str | None = None

    # ------------------------------------------------------------- plumbing
    @property
    def reader(self) -> Any:
        if self._reader is None:
            import tempfile

            from attrib_mlops.tracking import AttributionReader

            self._cache_dir = tempfile.mkdtemp(prefix="attrib-dashboard-cache-")
            self._reader = AttributionReader(self.tracking_uri, cache_dir=self._cache_dir)
        return self._reader

    def close(self) -> None:
        """Forget cached results and remove the download cache this store made (end of the browser session)."""
        import shutil

        with self._lock:
            self._samples.clear()
            self._contents.clear()
        if self._cache_dir:
            shutil.rmtree(self._cache_dir, ignore_errors=True)

    def _guard(self, fn: Callable[[], T], what: str) -> Fetched[T]:
        try:
            return Fetched(fn())
        except Exception as e:  # noqa: BLE001 - every failure becomes a message
            return Fetched(None, explain_error(e, self.tracking_uri, what))

    # ---------------------------------------------------------------- runs
    def runs(self) -> Fetched[list[RunRow]]:
        """Runs carrying attribution, newest first (always re-read: this is what live refresh polls)."""

        def go() -> list[RunRow]:
            infos = self.reader.list_runs()
            rows = []
            for info in infos:
                updated = info.end_time or info.start_time
                if info.status == "RUNNING" and info.n_steps:  # a live run: its manifest says when it last wrote
                    fresh = self.contents(info.run_id, refresh=True)
                    if fresh.ok and fresh.value.updated:
                        updated = _iso_to_ms(fresh.value.updated) or updated
                rows.append(RunRow(
                    run_id=info.run_id, experiment_id=info.experiment_id,
                    experiment=self._experiment_name(info.experiment_id), name=info.run_name or info.run_id[:8],
                    status=info.status, n_steps=info.n_steps, last_step=info.last_step, methods=tuple(info.methods),
                    models=tuple(info.models), n_probe=info.n_probe, start_time=info.start_time,
                    last_update=updated,
                ))
            return rows

        got = self._guard(go, "listing runs")
        if got.ok:
            with self._lock:
                self._runs = list(got.value)
            if not got.value:
                return Fetched([], note=(f"No runs with attribution in {self.tracking_uri or 'the default store'} "
                                         "yet. Log some with AttributionWriter / the training callback, or queue "
                                         "a job in the New job tab."))
        return got

    def known_runs(self) -> list[RunRow]:
        """The rows of the last successful :meth:`runs` call (no request)."""
        with self._lock:
            return list(self._runs)

    def run_row(self, run_id: str) -> RunRow | None:
        for r in self.known_runs():
            if r.run_id == run_id:
                return r
        return None

    def _experiment_name(self, experiment_id: str) -> str:
        with self._lock:
            if experiment_id in self._experiments:
                return self._experiments[experiment_id]
        try:
            name = self.reader.client.get_experiment(experiment_id).name
        except Exception:  # noqa: BLE001 - the id is a fine fallback
            name = str(experiment_id)
        with self._lock:
            self._experiments[experiment_id] = name
        return name

    # ------------------------------------------------------------ contents
    def contents(self, run_id: str, refresh: bool = False) -> Fetched[RunContents]:
        """Steps, models, methods and probe samples of a run (its manifest; ``refresh`` re-reads it)."""
        if not run_id:
            return Fetched(None, "No run selected.")
        with self._lock:
            if not refresh and run_id in self._contents:
                return Fetched(self._contents[run_id])

        def go() -> RunContents:
            man = self.reader.manifest(run_id, refresh=refresh)
            step_models: dict[int, dict[str, tuple[str, ...]]] = {}
            for s in man["steps"]:
                files = s.get("files") or {}
                if files:  # a step holding only other kinds (e.g. sources) has no token matrices to show here
                    step_models[int(s["step"])] = {m: tuple(d) for m, d in files.items()}
            probe = man.get("probe") or {}
            samples = [dict(s) for s in probe.get("samples", []) if isinstance(s, dict) and "id" in s]
            if not samples:  # no probe section: take the ids from the tokens, if any
                toks = next(iter((probe.get("tokens") or {}).values()), {})
                samples = [{"id": sid, "prompt": "", "target": ""} for sid in toks]
            return RunContents(run_id=run_id, steps=tuple(sorted(step_models)), step_models=step_models,
                               samples=tuple(samples), updated=man.get("updated"))

        got = self._guard(go, f"opening run {run_id}")
        if got.ok:
            with self._lock:
                self._contents[run_id] = got.value
            if not got.value.steps:
                if got.value.updated and self._other_kinds(run_id):
                    return Fetched(got.value, note=f"Run {run_id} holds no token attribution, only other kinds "
                                                   "(e.g. context sources: see the Sources tab).")
                return Fetched(got.value, note=f"Run {run_id} has no committed attribution step yet; it appears "
                                               "here as soon as the first step is written.")
        return got

    def _other_kinds(self, run_id: str) -> bool:
        try:
            return any(s.get("kinds") for s in self.reader.manifest(run_id)["steps"])
        except Exception:  # noqa: BLE001 - only chooses a message
            return False

    # ------------------------------------------------------------- samples
    def sample(self, run_id: str, step: int, model: str, method: str, sample_id: str) -> Fetched[AttributionResult]:
        """One (run, step, model, method, sample) result, decoding one row group (cached)."""
        if None in (run_id, step, model, method, sample_id):
            return Fetched(None, "Pick a run, a step, a model, a method and a sample.")
        key = (run_id, int(step), model, method, str(sample_id))
        with self._lock:
            if key in self._samples:
                self._samples.move_to_end(key)
                return Fetched(self._samples[key])
        got = self._guard(lambda: self.reader.load_sample(run_id, int(step), model, method, str(sample_id)),
                          f"loading sample {sample_id} ({method}, {model}, step {step})")
        if got.ok:
            with self._lock:
                self._samples[key] = got.value
                while len(self._samples) > self._cache_size:
                    self._samples.popitem(last=False)
        return got

    def samples(self, run_id: str, step: int, model: str, methods: Sequence[str],
                sample_id: str) -> Fetched[dict[str, AttributionResult]]:
        """The same sample under several methods (first error wins)."""
        out: dict[str, AttributionResult] = {}
        for m in methods:
            got = self.sample(run_id, step, model, m, sample_id)
            if not got.ok:
                return Fetched(None, got.error)
            out[m] = got.value
        return Fetched(out)

    # ------------------------------------------------------------- metrics
    def metric_keys(self, run_id: str) -> Fetched[dict[str, list[str]]]:
        """``{"attribution": [attrib/... keys], "loss": [keys containing 'loss']}`` of a run."""

        def go() -> dict[str, list[str]]:
            keys = sorted(self.reader.client.get_run(run_id).data.metrics)
            return {"attribution": [k for k in keys if k.startswith("attrib/")],
                    "loss": [k for k in keys if "loss" in k.lower() and not k.startswith("attrib/")]}

        return self._guard(go, f"listing metrics of run {run_id}")

    def metric_history(self, run_id: str, key: str) -> Fetched[list[tuple[int, float]]]:
        """``[(step, value), ...]`` of one MLflow metric, sorted by step (last value per step)."""

        def go() -> list[tuple[int, float]]:
            by_step: dict[int, float] = {}
            for p in self.reader.metric_history(run_id, key):
                by_step[p.step] = p.value
            return sorted(by_step.items())

        return self._guard(go, f"reading metric {key} of run {run_id}")

    # ------------------------------------------------------------- changes
    def changed_most(self, run_id: str, model: str, method: str, step_a: int, step_b: int,
                     limit: int = 50) -> Fetched[list[dict[str, Any]]]:
        """Probe samples whose source importance moved most between two steps (from the steps' summaries).

        Change = Jensen-Shannon divergence of ``|I(x)|`` (0 same, 1 disjoint); also the Spearman
        correlation and the most important source position at each step.
        """
        from attrib_mlops.analysis import jensen_shannon, spearman
        from attrib_mlops.analysis.compare import shared_ids

        def imp(step: int) -> dict[str, dict[str, Any]]:
            doc = self.reader.summary(run_id, int(step))
            sec = (((doc.get("models") or {}).get(model) or {}).get("methods") or {}).get(method)
            if sec is None:
                raise AttribError(f"step {step} of run {run_id} has no {method!r} results for model {model!r}")
            return sec.get("importance") or {}

        def go() -> list[dict[str, Any]]:
            a, b = imp(step_a), imp(step_b)
            contents = self._contents.get(run_id)
            prompts = {str(s["id"]): s.get("prompt", "") for s in (contents.samples if contents else ())}
            rows = []
            for sid in shared_ids(a, b):  # importances of the same sample at both steps
                va = np.array([np.nan if x is None else x for x in a[sid].get("source", [])], dtype=float)
                vb = np.array([np.nan if x is None else x for x in b[sid].get("source", [])], dtype=float)
                if va.size != vb.size or va.size == 0:
                    js, rho, note = math.inf, math.nan, "source tokens differ"
                else:
                    js, rho, note = jensen_shannon(va, vb), spearman(np.abs(va), np.abs(vb)), ""
                rows.append({
                    "sample": sid,
                    "prompt": prompts.get(sid, "")[:80],
                    "change (JS)": float(js),
                    "spearman": float(rho),
                    f"top @ {step_a}": _argmax(va),
                    f"top @ {step_b}": _argmax(vb),
                    "note": note,
                })
            rows.sort(key=lambda r: (-(r["change (JS)"] if math.isfinite(r["change (JS)"]) else 2.0), r["sample"]))
            return rows[:limit]

        return self._guard(go, f"comparing steps {step_a} and {step_b} of run {run_id}")

    # ------------------------------------------------------------ checkpoints
    def logged_models(self) -> Fetched[dict[str, str]]:
        """MLflow LoggedModels in the store (checkpoints a job can attribute): ``"<name> · run <run> · <id>"`` ->
        ``models:/<id>`` (the run named when it is among the listed runs)."""

        def go() -> dict[str, str]:
            client = self.reader.client
            exps = [e.experiment_id for e in client.search_experiments(max_results=200)]
            if not exps or not hasattr(client, "search_logged_models"):
                return {}
            out = {}
            for m in client.search_logged_models(experiment_ids=exps, max_results=200):
                row = self.run_row(m.source_run_id) if m.source_run_id else None
                out[f"{m.name}{f' · run {row.name}' if row else ''} · {m.model_id}"] = f"models:/{m.model_id}"
            return out

        return self._guard(go, "listing logged models")

    def jobs(self, max_results: int = 100) -> Fetched[list[dict[str, Any]]]:
        """Attribution jobs in the store, newest first, whoever ran them: runs tagged by ``attrib-mlops run``
        and the service (``attrib_mlops.kind`` ``job`` / ``service-job``) or by a dashboard session
        (``attrib_mlops.job``). Each: ``run_id``, ``name``, ``experiment``, ``status``, ``started``, ``error``."""

        def go() -> list[dict[str, Any]]:
            client = self.reader.client
            exps = [e.experiment_id for e in client.search_experiments(max_results=1000)]
            found: dict[str, Any] = {}
            for filt in ("tags.`attrib_mlops.kind` LIKE '%job'", "tags.`attrib_mlops.job` LIKE '%'"):
                for r in client.search_runs(exps, filter_string=filt, order_by=["attributes.start_time DESC"],
                                            max_results=max_results) if exps else []:
                    found[r.info.run_id] = r
            runs = sorted(found.values(), key=lambda r: r.info.start_time or 0, reverse=True)[:max_results]
            return [{"run_id": r.info.run_id, "name": r.info.run_name or r.info.run_id[:8],
                     "experiment": self._experiment_name(r.info.experiment_id), "status": r.info.status,
                     "started": _fmt_time(r.info.start_time), "error": r.data.tags.get("attrib_mlops.error", "")}
                    for r in runs]

        return self._guard(go, "listing jobs")

    def problems(self, run_id: str) -> Fetched[list[str]]:
        return self._guard(lambda: list(self.reader.problems(run_id)), f"checking run {run_id}")


def _argmax(v: np.ndarray) -> int:
    if v.size == 0 or np.isnan(v).all():
        return -1
    return int(np.nanargmax(np.abs(v)))

