"""The job runner: every (model, method) pair over every sample, cached, written to sinks, with progress.

One runner serves ``attrib-mlops run``, the dashboard's New job and ``backfill``:

* each model is opened once (loaded only if something has to be computed);
* results are looked up in a content-keyed :class:`~attrib_mlops.jobs.cache.ResultCache`
  first; the missing samples are cut into work units (one batch of one model and
  method) that an :class:`~attrib_mlops.jobs.executor.Executor` computes, and each
  unit's results go to the cache at once (atomically), so an interrupted job loses
  nothing it finished and a re-run computes only what is missing;
* ``targets: model:<name>`` lets the named model generate the continuations once,
  and every model is attributed on those same continuations (teacher forcing), so
  models are comparable cell by cell; generated continuations are cached too;
* complete (model, method) result lists go to every sink
  (:class:`~attrib_mlops.jobs.sinks.ResultSink`); the default writes the local results
  folder (:class:`~attrib_mlops.tracking.folder.LocalFolderSink`);
* status and progress go to ``on_event`` (a :class:`JobEvent` each time something
  changes) and, with ``progress=True``, to a tqdm bar per pair.

Example:
    >>> outcome = run_job("recipes/job_keyvalue.yaml", progress=False)     # doctest: +SKIP
    >>> outcome.status, outcome.computed, outcome.cached                    # doctest: +SKIP
    ('FINISHED', 32, 0)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._util import content_hash, library_versions
from ..analysis.registry import TOKEN_MATRIX
from ..errors import AttribError, InputError
from ..samples import ProbeSet
from .cache import CACHE_FORMAT, ResultCache, cache_key
from .executor import Executor, LocalExecutor, WorkUnit, generation_error
from .kinds import method_kind, task_kind
from .sinks import ResultSink
from .spec import JobSpec, ModelSpec, coerce_spec

logger = logging.getLogger(__name__)

__all__ = ["JobEvent", "PairOutcome", "JobOutcome", "run_job"]


@dataclass
class JobEvent:
    """A change of a job's status or progress (what a dashboard or a job service shows).

    Attributes:
        status: ``running``, ``finished`` or ``failed``.
        progress: share of the job's samples done, in ``[0, 1]`` (cached ones count as done).
        message: what is happening, for people.
        model, method: the pair being worked on, when any.
        error: the error message (``failed``).
    """

    status: str
    progress: float
    message: str
    model: str | None = None
    method: str | None = None
    error: str | None = None


@dataclass
class PairOutcome:
    """What happened to one (model, method) pair."""

    model: str
    method: str
    engine: str
    computed: int
    cached: int
    metrics: dict[str, float | None] = field(default_factory=dict)


@dataclass
class JobOutcome:
    """Result of :func:`run_job`: counts per pair and where the results went."""

    name: str
    output_dir: Path
    status: str
    n_samples: int
    probe_fingerprint: str
    pairs: list[PairOutcome] = field(default_factory=list)

    @property
    def computed(self) -> int:
        return sum(p.computed for p in self.pairs)

    @property
    def cached(self) -> int:
        return sum(p.cached for p in self.pairs)

    @property
    def counts(self) -> dict[tuple[str, str], dict[str, int]]:
        return {(p.model, p.method): {"computed": p.computed, "cached": p.cached} for p in self.pairs}


class _Progress:
    """Counts done samples over the whole job; reports to ``on_event`` and to a tqdm bar per pair."""

    def __init__(self, total: int, on_event: Callable[[JobEvent], None] | None, bars: bool):
        self.total, self.done, self.on_event, self.bars = max(1, total), 0, on_event, bars
        self._bar: Any = None

    def emit(self, message: str, status: str = "running", **kw: Any) -> None:
        if self.on_event is not None:
            self.on_event(JobEvent(status, min(1.0, self.done / self.total), message, **kw))

    def start_bar(self, total: int, desc: str, initial: int = 0) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, initial=initial, desc=desc, disable=not self.bars, unit="sample", leave=True,
                         dynamic_ncols=True)

    def tick(self, n: int = 1) -> None:
        """Advance the bar only (work that is not counted in the job's samples, e.g. generation)."""
        if self._bar is not None:
            self._bar.update(n)

    def advance(self, n: int, message: str, **kw: Any) -> None:
        self.done += n
        self.tick(n)
        self.emit(message, **kw)

    def close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@dataclass
class _Ctx:
    """What every pair of one job shares."""

    spec: JobSpec
    probe: ProbeSet
    cache: ResultCache | None
    executor: Executor
    versions: dict[str, str]
    progress: _Progress


def _fingerprints(ctx: _Ctx, model: str) -> tuple[str | None, str | None]:
    # content fingerprints are what cache keys are made of: without a cache, no model is hashed
    return ctx.executor.fingerprints(model) if ctx.cache is not None else (None, None)


def _generate(ctx: _Ctx, mspec: ModelSpec, max_new_tokens: int) -> list[str]:
    """Greedy continuations of every prompt by one model, cached per (fingerprint, prompt, length)."""
    mfp, tfp = _fingerprints(ctx, mspec.name)
    keys = [content_hash({"format": CACHE_FORMAT, "kind": "generation", "model": mfp, "tokenizer": tfp,
                          "prompt": s.prompt, "max_new_tokens": max_new_tokens}) for s in ctx.probe]
    texts: list[str | None] = [None] * len(keys)
    if ctx.cache is not None:
        for i, k in enumerate(keys):
            d = ctx.cache.get_json("generations", k)
            texts[i] = d.get("target") if isinstance(d, dict) else None
    todo = [i for i, t in enumerate(texts) if t is None]
    if todo:
        ctx.progress.start_bar(len(todo), f"{mspec.name}: generate")
        try:
            for n, i in enumerate(todo):
                s = ctx.probe[i]
                try:
                    text = ctx.executor.generate(mspec.name, s.prompt, max_new_tokens)
                except AttribError as e:
                    raise generation_error(mspec.name, s.id, e) from e
                if ctx.cache is not None:
                    ctx.cache.put_json("generations", keys[i], {"prompt": s.prompt, "target": text,
                                                                "max_new_tokens": max_new_tokens,
                                                                "model_fingerprint": mfp})
                texts[i] = text
                ctx.progress.tick()
                ctx.progress.emit(f"{mspec.name}: generated {n + 1} of {len(todo)} continuations", model=mspec.name)
        finally:
            ctx.progress.close_bar()
    return [t for t in texts if t is not None]


def _run_pair(ctx: _Ctx, mspec: ModelSpec, method: str, engine: str, targets: list[str], target_source: str
              ) -> tuple[list[Any], int, int]:
    """All results of one (model, method): cached ones, then the missing ones computed unit by unit."""
    options = ctx.spec.method_options(mspec, method)
    kind = method_kind(method, engine)
    task = task_kind(kind).bind(ctx.spec, method)
    probe, cache = ctx.probe, ctx.cache
    mfp, tfp = _fingerprints(ctx, mspec.name)
    results: list[Any] = [None] * len(probe)
    keys: list[str] = []
    extras = [task.key_extra(s) for s in probe]
    if cache is not None:
        okey = options.key_dict()
        for i, (s, t) in enumerate(zip(probe, targets)):
            extra = extras[i]
            keys.append(cache_key(model_fingerprint=mfp, tokenizer_fingerprint=tfp, method=method, engine=engine,
                                  options=okey, prompt=s.prompt, target=t, versions=ctx.versions,
                                  kind=None if kind == TOKEN_MATRIX else kind, extra=extra or None))
            r = cache.get(keys[i], kind)
            if r is not None:
                r.sample_id = s.id  # content-keyed: the same prompt may carry another id in another job
                r.info["target_source"] = target_source
            results[i] = r
    todo = [i for i, r in enumerate(results) if r is None]
    n_cached = len(probe) - len(todo)
    where = {"model": mspec.name, "method": method}
    ctx.progress.start_bar(len(probe), f"{mspec.name} / {method}", initial=n_cached)
    ctx.progress.advance(n_cached, f"{mspec.name} / {method}: {n_cached} of {len(probe)} from the cache", **where)
    units = (WorkUnit(mspec.name, method, engine, kind, batch, [probe[i].prompt for i in batch],
                      [targets[i] for i in batch], [probe[i].id for i in batch], options,
                      [extras[i] for i in batch] if any(extras) else None)
             for batch in (todo[k:k + options.batch_size] for k in range(0, len(todo), options.batch_size)))
    try:
        for unit, out in ctx.executor.map(units):
            for i, r in zip(unit.indices, out):
                if mfp is not None:
                    r.info["model_fingerprint"] = mfp
                r.info["target_source"] = target_source
                if cache is not None:
                    cache.put(keys[i], r, kind)  # at once: a crash later loses nothing computed here
                results[i] = r
            done = sum(r is not None for r in results)
            ctx.progress.advance(len(unit.indices), f"{mspec.name} / {method}: {done} of {len(probe)} samples",
                                 **where)
    finally:
        ctx.progress.close_bar()
    for r, s in zip(results, probe):
        if r is not None:
            task.annotate(r, s)  # after the cache: what the sample knows beyond the model's inputs
    return [r for r in results if r is not None], len(todo), n_cached


def _model_engines(ctx: _Ctx, mspec: ModelSpec, engines: dict[str, str]) -> dict[str, str]:
    """``engine: auto`` per model kind: on a sequence classifier lime and kernel_shap run on captum, not inseq.

    The model's kind is asked of the executor only when it changes a choice.
    """
    if ctx.spec.engine != "auto":
        return engines
    from ..api import resolve_engine
    from ..engines.registry import CLASSIFIER
    from ..errors import AttribError

    other: dict[str, str] = {}
    for m in ctx.spec.methods:
        try:
            e = resolve_engine(m, "auto", CLASSIFIER)
        except AttribError:
            continue  # not a classifier method: a classifier refuses it with a clear error when run
        if e != engines[m]:
            other[m] = e
    kind_of = getattr(ctx.executor, "model_kind", None)
    if not other or kind_of is None or kind_of(mspec.name) != CLASSIFIER:
        return engines
    return {**engines, **other}


def _check_targets(spec: JobSpec, probe: ProbeSet) -> None:
    if len(probe) == 0:
        raise InputError(f"samples source {spec.samples.source!r} gave no samples")
    if spec.targets == "given":
        missing = [s.id for s in probe if not s.target]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise InputError(
                f"{len(missing)} of {len(probe)} samples have no target (samples.target_field="
                f"{spec.samples.target_field!r}): {shown}. Fill the target column, or set targets: generate "
                "or targets: model:<name> to have a model write them"
            )


def run_job(
    spec_or_path: JobSpec | dict | str | os.PathLike,
    sinks: Iterable[ResultSink] | None = None,
    progress: bool = True,
    *,
    executor: Executor | None = None,
    on_event: Callable[[JobEvent], None] | None = None,
    probe: ProbeSet | None = None,
) -> JobOutcome:
    """Run a job: every (model, method) pair over every sample, cached and resumable.

    Args:
        spec_or_path: a :class:`~attrib_mlops.jobs.spec.JobSpec`, its dict form, or the path of
            a YAML/JSON job file.
        sinks: where results go; ``None`` = ``[LocalFolderSink(spec.output_dir)]``. A given
            list replaces the default (include a ``LocalFolderSink`` to keep the folder).
        progress: show a progress bar per pair (tqdm, on stderr).
        executor: computes the work units (default: :class:`~attrib_mlops.jobs.executor.LocalExecutor`).
        on_event: called with a :class:`JobEvent` whenever the status or progress changes.
        probe: the samples, when the caller selected them already (the dashboard's form, a
            run's probe set); ``spec.samples`` then only describes them.

    Returns:
        :class:`JobOutcome` with computed/cached counts per pair and mean metrics.

    Raises:
        SpecError, InputError, ModelLoadError, ...: every sink gets ``end("FAILED")`` first
        (``end("KILLED")`` on ``KeyboardInterrupt``: Ctrl-C, or SIGTERM in ``attrib-mlops run``).
        Results of finished batches stay in the cache; re-running resumes.
    """
    from ..api import resolve_engine

    spec = coerce_spec(spec_or_path)
    probe = probe if probe is not None else ProbeSet.from_spec(spec.samples)
    _check_targets(spec, probe)
    engines = {**{m: resolve_engine(m, spec.engine) for m in spec.methods}, **spec.method_engines()}
    cache = ResultCache(spec.cache_dir) if spec.cache_dir else None
    if sinks is None:
        from ..tracking.folder import LocalFolderSink

        sinks = [LocalFolderSink(spec.output_dir)]
    sink_list = list(sinks)
    ctx = _Ctx(spec, probe, cache, executor or LocalExecutor(cache), library_versions(),
               _Progress(len(probe) * len(spec.models) * len(spec.all_methods), on_event, progress))
    gt = {s.id: s.ground_truth for s in probe}

    # the model that writes shared targets goes first, so each model is loaded once
    order = sorted(spec.models, key=lambda m: m.name != spec.target_model) if spec.target_model else list(spec.models)
    outcome = JobOutcome(spec.name, Path(spec.output_dir or ""), "RUNNING", len(probe), probe.fingerprint)
    started: list[ResultSink] = []
    ctx.progress.emit(f"job {spec.name}: {len(probe)} samples, {len(spec.models)} model(s), "
                      f"{len(spec.all_methods)} method(s)")
    try:
        for s in sink_list:
            s.begin(spec, probe)
            started.append(s)
        shared: list[str] | None = None
        for mspec in order:
            opts = spec.model_options(mspec)
            ctx.executor.open(mspec, opts)
            try:
                m_engines = _model_engines(ctx, mspec, engines)
                if spec.targets == "given":
                    targets, source = [s.target or "" for s in probe], "given"
                elif spec.targets == "generate":
                    targets, source = _generate(ctx, mspec, opts.max_new_tokens), f"generated:{mspec.name}"
                else:
                    if shared is None:  # this is the target model (sorted first)
                        shared = _generate(ctx, mspec, opts.max_new_tokens)
                    targets, source = shared, f"generated:{spec.target_model}"
                for method in spec.all_methods:
                    results, n_new, n_cached = _run_pair(ctx, mspec, method, m_engines[method], targets, source)
                    logger.info("%s / %s: %d computed, %d cached", mspec.name, method, n_new, n_cached)
                    for s in sink_list:
                        s.write(mspec.name, method, results)
                    summary = task_kind(method_kind(method, m_engines[method])).summarize(results, gt)
                    outcome.pairs.append(PairOutcome(mspec.name, method, m_engines[method], n_new, n_cached, summary))
            finally:
                ctx.executor.release(mspec.name)
    except BaseException as e:
        outcome.status = "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED"  # Ctrl-C or SIGTERM
        for s in started:
            try:
                s.end(outcome.status)
            except Exception:  # noqa: BLE001 - never mask the original error
                logger.exception("sink %r failed to end", s)
        ctx.progress.emit(f"failed: {e}", status="failed", error=str(e) or type(e).__name__)
        raise
    for s in started:
        s.end("FINISHED")
    outcome.status = "FINISHED"
    rank = {(m.name, meth): (i, j) for i, m in enumerate(spec.models) for j, meth in enumerate(spec.all_methods)}
    outcome.pairs.sort(key=lambda p: rank[(p.model, p.method)])
    ctx.progress.done = ctx.progress.total
    ctx.progress.emit(f"finished: {outcome.computed} computed, {outcome.cached} from the cache", status="finished")
    return outcome
