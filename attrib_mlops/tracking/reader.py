"""Read attribution back from MLflow runs (what the dashboard and regression checks use).

:class:`AttributionReader` trusts only what the manifest lists (see
:mod:`attrib_mlops.tracking.layout`): a step is visible once the writer has
uploaded all its files and then rewritten the manifest, and is immutable from
then on except for ``summary.json``/``view.html``, which are cached by the
step's ``revision``.

Downloads are minimal: listing runs uses run tags only; ``load`` fetches the
one Parquet file of a (step, model, method); ``load_sample`` decodes only the
row group that holds the sample. With a local artifact store (``file:`` URI or
plain path) files are read in place; otherwise they are downloaded once into a
cache directory keyed by run, revision and artifact path.

Broken artifacts never hide the rest: a corrupt or foreign file makes only
the call that needs it raise :class:`TrackingError` naming the run, the file
and the reason (:class:`IntegrityError` when its bytes differ from the SHA-256
the manifest recorded, see :mod:`.integrity`; steps logged before hashes
existed are read unchecked); :meth:`problems` lists such files, and :meth:`steps` still
lists every well-formed step.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from attrib_mlops.errors import InputError
from attrib_mlops.result import AttributionResult
from attrib_mlops.tracking import layout as L
from attrib_mlops.tracking import manifest as M
from attrib_mlops.tracking.errors import IntegrityError, SchemaVersionError, TrackingError, is_unreachable, newer_schema
from attrib_mlops.tracking.estimators import EstimatorReading
from attrib_mlops.tracking.index_reading import TrainingIndexReading
from attrib_mlops.tracking.integrity import Verifier, expected_hash
from attrib_mlops.tracking.kinds import DEFAULT_KIND, StorageKind, get_kind, kind_names

__all__ = ["AttributionReader", "RunInfo", "MetricPoint"]


@dataclass(frozen=True)
class RunInfo:
    """A run that carries attribution, described from its MLflow tags alone (no download)."""

    run_id: str
    experiment_id: str
    run_name: str | None
    status: str
    start_time: int | None  # ms since epoch, as MLflow stores it
    end_time: int | None
    schema_version: int
    n_steps: int
    last_step: int | None
    methods: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    n_probe: int = 0
    artifact_root: str = L.DEFAULT_ROOT


@dataclass(frozen=True)
class MetricPoint:
    step: int
    value: float
    timestamp: int


_int_or = M.int_or


def _json_list(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    try:
        v = json.loads(value)
        return tuple(str(x) for x in v) if isinstance(v, list) else ()
    except json.JSONDecodeError:
        return tuple(x for x in value.split(",") if x)


@dataclass
class _RunState:
    manifest: dict[str, Any] | None = None
    root: str | None = None
    local_dir: Path | None = None
    local_checked: bool = False
    problems: dict[str, str] = field(default_factory=dict)


class AttributionReader(EstimatorReading, TrainingIndexReading):
    """Read attribution manifests, steps, results, summaries and views of MLflow runs (AT2 estimators, index).

    Args:
        tracking_uri: MLflow tracking URI (``None``: MLflow's default resolution).
        client: an ``MlflowClient`` to use instead of building one.
        cache_dir: where downloads are cached (default: a fresh temporary directory).

    Example:
        >>> reader = AttributionReader("sqlite:///mlflow.db")                      # doctest: +SKIP
        >>> run = reader.list_runs()[0]                                             # doctest: +SKIP
        >>> results = reader.load(run.run_id, reader.steps(run.run_id)[-1])        # doctest: +SKIP
    """

    def __init__(self, tracking_uri: str | None = None, *, client: Any = None,
                 cache_dir: str | os.PathLike | None = None) -> None:
        if client is None:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=tracking_uri)
        self.client = client
        self.cache_dir = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="attrib-mlops-reader-"))
        self._runs: dict[str, _RunState] = {}
        self._summaries: dict[tuple[str, int, int, str], dict[str, Any]] = {}
        self._verifier = Verifier()

    # ================================================================ listing
    def list_runs(self, experiment_ids: Sequence[str] | None = None, max_results: int | None = None) -> list[RunInfo]:
        """Runs carrying attribution (tag ``attrib_mlops.schema_version``), newest first.

        Args:
            experiment_ids: experiments to search (default: every active experiment).
            max_results: stop after this many runs.
        """
        if experiment_ids is None:
            experiment_ids, token = [], None
            while True:
                page = self.client.search_experiments(max_results=1000, page_token=token)
                experiment_ids += [e.experiment_id for e in page]
                token = getattr(page, "token", None)
                if not token:
                    break
        if not experiment_ids:
            return []
        out: list[RunInfo] = []
        token = None
        filt = f"tags.`{L.TAG_SCHEMA_VERSION}` LIKE '%'"
        while True:
            page = self.client.search_runs(list(experiment_ids), filter_string=filt, max_results=1000,
                                           order_by=["attributes.start_time DESC"], page_token=token)
            out += [self._run_info(r) for r in page]
            token = getattr(page, "token", None)
            if not token or (max_results and len(out) >= max_results):
                break
        return out[:max_results] if max_results else out

    def run_info(self, run_id: str) -> RunInfo:
        """:class:`RunInfo` of one run (from its tags)."""
        return self._run_info(self.client.get_run(run_id))

    @staticmethod
    def _run_info(run: Any) -> RunInfo:
        tags = run.data.tags
        return RunInfo(
            run_id=run.info.run_id,
            experiment_id=run.info.experiment_id,
            run_name=getattr(run.info, "run_name", None),
            status=run.info.status,
            start_time=run.info.start_time,
            end_time=run.info.end_time,
            schema_version=_int_or(tags.get(L.TAG_SCHEMA_VERSION), 0),
            n_steps=_int_or(tags.get(L.TAG_STEPS), 0),
            last_step=_int_or(tags.get(L.TAG_LAST_STEP), None),
            methods=_json_list(tags.get(L.TAG_METHODS)),
            models=_json_list(tags.get(L.TAG_MODELS)),
            n_probe=_int_or(tags.get(L.TAG_N_PROBE), 0),
            artifact_root=tags.get(L.TAG_ARTIFACT_ROOT) or L.DEFAULT_ROOT,
        )

    # ============================================================== manifest
    def _state(self, run_id: str) -> _RunState:
        st = self._runs.get(run_id)
        if st is None:
            st = self._runs[run_id] = _RunState()
        if st.root is None:
            try:
                run = self.client.get_run(run_id)
            except Exception as e:  # noqa: BLE001
                from mlflow.exceptions import MlflowException

                if isinstance(e, MlflowException) and not is_unreachable(e):
                    del self._runs[run_id]
                    raise TrackingError(f"run {run_id}: cannot be read ({str(e)[:200]})") from None
                del self._runs[run_id]
                raise
            st.root = run.data.tags.get(L.TAG_ARTIFACT_ROOT) or L.DEFAULT_ROOT
            uri = run.info.artifact_uri or ""
            parsed = urlparse(uri)
            if parsed.scheme in ("", "file") and uri:
                p = Path(unquote(parsed.path) if parsed.scheme == "file" else uri)
                st.local_dir = p if p.is_absolute() else None
        return st

    def _problem(self, run_id: str, path: str, why: str) -> TrackingError:
        self._state(run_id).problems[path] = why
        return TrackingError(f"run {run_id}: {path}: {why}")

    def manifest(self, run_id: str, refresh: bool = False) -> dict[str, Any]:
        """The run's manifest (cached; ``refresh=True`` reads it again).

        Raises:
            TrackingError: no manifest, or it is not valid JSON / not an attrib-mlops manifest.
            SchemaVersionError: written by a newer schema than this reader understands.
        """
        st = self._state(run_id)
        if st.manifest is not None and not refresh:
            return st.manifest
        path = L.manifest_path(st.root)
        raw = None
        for attempt in range(3):  # a local store copies files non-atomically: retry a torn read
            try:
                local = self._fetch(run_id, path, cache=False)
            except TrackingError:
                raise TrackingError(
                    f"run {run_id} has no attribution manifest ({path}): it carries no attribution, or its "
                    "first step is not committed yet"
                ) from None
            try:
                raw = json.loads(Path(local).read_text(encoding="utf-8"))
                break
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                if attempt == 2:
                    raise self._problem(run_id, path, f"not valid JSON ({e})") from None
                time.sleep(0.2)
        man = self._validate_manifest(run_id, path, raw)
        st.manifest = man
        return man

    def _validate_manifest(self, run_id: str, path: str, man: Any) -> dict[str, Any]:
        if not M.is_manifest(man):
            raise self._problem(run_id, path, "not an attrib-mlops manifest (no 'format': "
                                f"{L.FORMAT_ID!r})")
        if _int_or(man.get("schema_version"), None) is None:
            raise self._problem(run_id, path, f"bad schema_version {man.get('schema_version')!r}")
        M.check_version(man, run_id, "reader")
        good = []
        for i, s in enumerate(man.get("steps") or []):
            if (isinstance(s, dict) and _int_or(s.get("step"), None) is not None
                    and isinstance(s.get("files"), dict)
                    and all(isinstance(d, dict) for d in s["files"].values())):
                good.append(s)
            else:
                self._state(run_id).problems[f"{path}#steps[{i}]"] = "malformed step entry, ignored"
        man = dict(man)
        man["steps"] = sorted(good, key=lambda s: int(s["step"]))
        return man

    def steps(self, run_id: str, refresh: bool = False) -> list[int]:
        """Steps listed in the manifest (committed, complete), ascending."""
        return [int(s["step"]) for s in self.manifest(run_id, refresh)["steps"]]

    def models(self, run_id: str) -> list[str]:
        return list(self.manifest(run_id).get("models", {}))

    def methods(self, run_id: str) -> list[str]:
        return list(self.manifest(run_id).get("methods", {}))

    def kinds(self, run_id: str) -> list[str]:
        """Kinds of attribution the run's steps hold (``["token_matrix"]`` for everything schema v1 wrote)."""
        steps = self.manifest(run_id)["steps"]
        return [n for n in kind_names() if any(get_kind(n).files(s) for s in steps)]

    def probe(self, run_id: str) -> list[dict[str, Any]]:
        """Probe samples (``id``, ``prompt``, ``target``, ``ground_truth``) of the run."""
        return list((self.manifest(run_id).get("probe") or {}).get("samples", []))

    def _step_entry(self, run_id: str, step: int) -> dict[str, Any]:
        man = self.manifest(run_id)
        for s in man["steps"]:
            if int(s["step"]) == int(step):
                return s
        man = self.manifest(run_id, refresh=True)  # a live run may have committed it since
        for s in man["steps"]:
            if int(s["step"]) == int(step):
                return s
        shown = [int(s["step"]) for s in man["steps"]]
        raise InputError(f"step {step} is not (yet) committed in run {run_id}; committed steps: "
                         f"{shown[:20]}{' ...' if len(shown) > 20 else ''}")

    def _kind(self, run_id: str, kind: str | StorageKind) -> StorageKind:
        k = get_kind(kind)
        k.check_version(self.manifest(run_id), f"run {run_id}")
        return k

    def _file_of(self, run_id: str, step: int, model: str, method: str, kind: str | StorageKind = DEFAULT_KIND) -> str:
        entry = self._step_entry(run_id, step)
        models = self._kind(run_id, kind).files(entry)
        if model not in models:
            raise InputError(f"run {run_id} step {step} has no model {model!r}; it has {sorted(models)}")
        if method not in models[model]:
            raise InputError(f"run {run_id} step {step} model {model!r} has no method {method!r}; "
                             f"it has {sorted(models[model])}")
        return L.join(self._state(run_id).root, models[model][method])

    # ================================================================ files
    def _fetch(self, run_id: str, path: str, cache: bool = True, revision: int | None = None) -> Path:
        """Local path of an artifact: in place for a local store, else a (cached) download."""
        st = self._state(run_id)
        if st.local_dir is not None:
            p = st.local_dir / path
            if p.is_file():
                return p
            if st.local_dir.is_dir():
                raise TrackingError(f"run {run_id}: {path}: file not found")
        key = self.cache_dir / run_id / (f"rev{revision}" if revision is not None else "files") / path
        if cache and key.is_file():
            return key
        tmp = self.cache_dir / run_id / f".dl-{uuid.uuid4().hex[:8]}"
        try:
            local = Path(self.client.download_artifacts(run_id, path, str(tmp)))
        except Exception as e:  # noqa: BLE001 - MLflow raises MlflowException/OSError for a missing file
            shutil.rmtree(tmp, ignore_errors=True)
            from mlflow.exceptions import MlflowException

            if isinstance(e, (MlflowException, OSError)) and not is_unreachable(e):
                raise TrackingError(f"run {run_id}: {path}: cannot download ({str(e)[:200]})") from None
            raise
        if not cache:
            key = self.cache_dir / run_id / "fresh" / path
        key.parent.mkdir(parents=True, exist_ok=True)
        os.replace(local, key)
        shutil.rmtree(tmp, ignore_errors=True)
        return key

    # ================================================================ content
    def load(self, run_id: str, step: int, model: str = L.DEFAULT_MODEL, method: str = "saliency",
             sample_ids: Sequence[str] | None = None, *, kind: str = DEFAULT_KIND) -> list[AttributionResult]:
        """Results of one (step, model, method), all samples or ``sample_ids`` (downloads one file).

        ``kind`` names the kind of results (default: token matrices, :class:`AttributionResult`).

        Raises:
            InputError: the step, model, method, kind or a sample id is not in the run.
            TrackingError: the file is missing, corrupt or foreign (names the file).
        """
        k = self._kind(run_id, kind)
        return self._read_file(run_id, self._file_of(run_id, step, model, method, k), k.read, sample_ids)

    def load_sample(self, run_id: str, step: int, model: str, method: str, sample_id: str, *,
                    kind: str = DEFAULT_KIND) -> AttributionResult:
        """One sample of one (step, model, method), decoding only its row group."""
        k = self._kind(run_id, kind)
        return self._read_file(run_id, self._file_of(run_id, step, model, method, k), k.read_one, sample_id)

    def _read_file(self, run_id: str, path: str, read: Any, *args: Any) -> Any:
        """``read(local file, *args)`` of an artifact; a broken file is recorded as a problem of the run."""
        local = self._verified(run_id, path, self._fetch(run_id, path))
        try:
            return read(local, *args)
        except SchemaVersionError:
            raise
        except TrackingError as e:
            raise self._problem(run_id, path, _strip(str(e), local)) from None

    def summary(self, run_id: str, step: int, *, kind: str = DEFAULT_KIND) -> dict[str, Any]:
        """``summary.json`` of a step: per model/method aggregated and per-sample metrics, importances."""
        k = self._kind(run_id, kind)
        record = self._step_entry(run_id, step)
        rev = int(record.get("revision", 1))
        key = (run_id, int(step), rev, k.name)
        if key in self._summaries:
            return self._summaries[key]
        path = L.join(self._state(run_id).root, (k.entry(record) or {}).get("summary") or k.summary_relpath(step))
        local = self._verified(run_id, path, self._fetch(run_id, path, revision=rev))
        try:
            doc = json.loads(Path(local).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise self._problem(run_id, path, f"not valid JSON ({e})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
            raise self._problem(run_id, path, "not an attrib-mlops step summary (no 'models' object)")
        if _int_or(doc.get("schema_version"), 0) > L.SCHEMA_VERSION:
            raise newer_schema(f"run {run_id}: {path}", doc["schema_version"])
        self._summaries[key] = doc
        return doc

    def html_path(self, run_id: str, step: int, *, kind: str = DEFAULT_KIND) -> Path:
        """Local path of the step's ``view.html`` (downloaded when the store is remote)."""
        k = self._kind(run_id, kind)
        record = self._step_entry(run_id, step)
        path = L.join(self._state(run_id).root, (k.entry(record) or {}).get("view") or k.view_relpath(step))
        return self._verified(run_id, path, self._fetch(run_id, path, revision=int(record.get("revision", 1))))

    def _verified(self, run_id: str, path: str, local: Path) -> Path:
        """``local`` once its bytes match the hash the manifest records for ``path`` (none recorded: unchecked).

        A mismatch is checked again against a fresh manifest (a live run may have rewritten a step's
        summary and view since), then recorded as a problem of the run and raised as :class:`IntegrityError`.
        """
        root = self._state(run_id).root or ""
        rel = path[len(root) + 1:] if root and path.startswith(root + "/") else path
        for attempt in range(2):
            try:
                self._verifier.check(local, expected_hash(self.manifest(run_id, refresh=attempt > 0)["steps"], rel),
                                     f"run {run_id}: {path}")
                break
            except IntegrityError as e:
                if attempt:
                    self._state(run_id).problems[path] = _tail(str(e))
                    raise
        return local

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        """History of one MLflow metric (e.g. ``attrib/saliency/topk_mass``), sorted by step."""
        hist = self.client.get_metric_history(run_id, key)
        return sorted((MetricPoint(int(m.step), float(m.value), int(m.timestamp)) for m in hist),
                      key=lambda p: (p.step, p.timestamp))

    def metric_keys(self, run_id: str) -> list[str]:
        """Names of the attribution metrics (``attrib/...``) the run has."""
        return sorted(k for k in self.client.get_run(run_id).data.metrics if k.startswith("attrib/"))

    # ================================================================ health
    def problems(self, run_id: str, deep: bool = False) -> list[str]:
        """Human-readable problems of a run's attribution artifacts.

        Always: an unreadable manifest, malformed step entries, files the
        manifest lists but the store does not have, and every file a previous
        call of this reader found corrupt. With ``deep=True`` every listed
        Parquet file and summary is also opened and validated (downloads them).
        """
        out: dict[str, str] = {}
        try:
            man = self.manifest(run_id)
        except TrackingError as e:
            return [str(e)]
        root = self._state(run_id).root
        for s in man["steps"]:
            step = int(s["step"])
            present = self._present(run_id, L.step_path(step, root))
            for name in kind_names():
                kind = get_kind(name)
                entry = kind.entry(s)
                if not entry or not kind.files(s):
                    continue
                summary = L.join(root, entry.get("summary") or kind.summary_relpath(step))
                wanted = [L.join(root, rel) for d in kind.files(s).values() for rel in d.values()]
                wanted += [summary, L.join(root, entry.get("view") or kind.view_relpath(step))]
                for p in wanted:
                    if present is not None and p not in present:
                        out[p] = "listed in the manifest but missing from the artifact store"
                if deep:
                    for model, d in kind.files(s).items():
                        for method in d:
                            try:
                                self._check_file(run_id, step, model, method, kind)
                            except (TrackingError, InputError) as e:
                                out[self._file_of(run_id, step, model, method, kind)] = _tail(str(e))
                    try:
                        self.summary(run_id, step, kind=name)
                    except (TrackingError, InputError) as e:
                        out[summary] = _tail(str(e))
        for p, why in self._state(run_id).problems.items():
            out.setdefault(p, why)
        return [f"{p}: {why}" for p, why in sorted(out.items())]

    def _check_file(self, run_id: str, step: int, model: str, method: str, kind: StorageKind) -> None:
        self._read_file(run_id, self._file_of(run_id, step, model, method, kind), kind.check)

    def _present(self, run_id: str, step_dir: str) -> set[str] | None:
        """Artifact paths under a step directory (recursive), or None if listing fails."""
        st = self._state(run_id)
        if st.local_dir is not None and (st.local_dir / step_dir).is_dir():
            base = st.local_dir
            return {p.relative_to(base).as_posix() for p in (base / step_dir).rglob("*") if p.is_file()}
        try:
            out, todo = set(), [step_dir]
            while todo:
                for a in self.client.list_artifacts(run_id, todo.pop()):
                    (todo.append(a.path) if a.is_dir else out.add(a.path))
            return out
        except Exception as e:  # noqa: BLE001
            if is_unreachable(e):
                raise
            return None


def _strip(msg: str, local: Path) -> str:
    """A columnar error message without the local cache path prefix (the caller names the artifact)."""
    prefix = f"{local}: "
    while msg.startswith(prefix):
        msg = msg[len(prefix):]
    return msg


def _tail(msg: str) -> str:
    """The reason part of ``run X: path: reason``."""
    parts = msg.split(": ", 2)
    return parts[2] if len(parts) == 3 and parts[0].startswith("run ") else msg


