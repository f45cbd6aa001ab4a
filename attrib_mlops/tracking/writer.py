"""Write attribution steps to an MLflow run: artifacts, manifest, metrics, with a local spool.

:class:`AttributionWriter` talks to MLflow only through an ``MlflowClient`` and
an explicit ``run_id`` (never the global active run), so it can run next to
``transformers``' ``MLflowCallback`` owning the run, against a local SQLite
store or a remote ``mlflow server``.

One ``log_step`` call:

1. ``flush()``: commit whatever an earlier outage left in the spool, in step order;
2. compute the metrics from the float32 results (``attrib_mlops.analysis``):
   per method the mean over samples of ``summarize()``; drift against the
   previous logged step and the first logged step of the same model/method
   (from an in-memory cache, else the spooled or uploaded Parquet file of that
   step); agreement between methods when several are given;
3. stage the step into the spool directory
   ``<spool_dir>/<run_id>/<step:010d>/<nnn>-<model>/`` (Parquet files,
   ``summary.json``, ``view.html`` under ``files/``, then ``entry.json`` last;
   the entry directory appears by an atomic rename, so a crash never leaves a
   half-written entry that looks complete);
4. commit the entry: upload ``files/`` to ``attribution/steps/<step:010d>``,
   THEN rewrite ``attribution/manifest.json`` listing the step, THEN log the
   scalar metrics and the run tags with one ``log_batch``; then delete the entry.

Readers trust only steps listed in the manifest, and the manifest lists a step
only after all its files are uploaded, so a reader never sees a half-written
step. If MLflow cannot be reached (or fails) at any point of 4., the entry stays
in the spool, a warning says ``tracking server unreachable; step N kept in
<dir>, will retry`` and ``log_step`` returns (``strict=True`` raises
:class:`TrackingUnavailableError` instead, still keeping the entry). The next
``log_step`` or an explicit ``flush()`` (call it at the end of training)
retries every entry in order. A retry is idempotent: methods already listed in
the manifest for that (step, model) are not uploaded again, and metrics already
present at that step are not logged again, so nothing is lost and nothing is
duplicated. One writer per run (e.g. rank 0 only) is assumed.

Outages cost time: each failing request waits for MLflow's HTTP retries. Set
``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` and ``MLFLOW_HTTP_REQUEST_TIMEOUT`` low
(e.g. 0 and 5) for training jobs that must not stall; after one failure a
``log_step`` call makes no further request.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
import logging
import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attrib_mlops._util import json_clean, now_iso, package_versions
from attrib_mlops.analysis import drift, method_agreement, source_importance, summarize, target_importance
from attrib_mlops.errors import AttribError, InputError
from attrib_mlops.result import AttributionResult
from attrib_mlops.tracking import layout as L
from attrib_mlops.tracking.columnar import read_results, write_results
from attrib_mlops.tracking.errors import (
    SchemaVersionError,
    TrackingError,
    TrackingUnavailableError,
    is_unreachable,
)
from attrib_mlops.tracking.html import DEFAULT_MAX_SAMPLES, render_step_html

__all__ = ["AttributionWriter", "StepSummary", "default_spool_dir", "library_versions"]

logger = logging.getLogger(__name__)

DRIFT_LOGGED = ("spearman", "js", "topk_overlap")
_PROBE_FILE = "probe.json"
_ENTRY_FILE = "entry.json"


def default_spool_dir() -> Path:
    """``$XDG_CACHE_HOME/attrib-mlops/spool`` (``~/.cache/attrib-mlops/spool`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "attrib-mlops" / "spool"


def library_versions() -> dict[str, str]:
    return package_versions(("attrib-mlops", "mlflow", "pyarrow", "numpy", "bokeh"))


def _vec(v: np.ndarray) -> list[float | None]:
    return [float(f"{x:.6g}") if math.isfinite(x) else None for x in np.asarray(v, dtype=np.float64).tolist()]


def _dumps(obj: Any) -> str:
    """Compact JSON, NaN/inf as null, UTF-8 text kept as is."""
    return json.dumps(json_clean(obj), allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def _write_json(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(_dumps(obj), encoding="utf-8")
    os.replace(tmp, path)


def _nanmean(values: Sequence[float]) -> float:
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else math.nan


def _is_tracking_failure(exc: BaseException) -> bool:
    """Errors that keep a step in the spool (MLflow, network, file system), not programming errors."""
    from mlflow.exceptions import MlflowException

    try:
        import requests

        req = (requests.exceptions.RequestException,)
    except ImportError:  # pragma: no cover
        req = ()
    if isinstance(exc, (SchemaVersionError,)):
        return False
    return isinstance(exc, (MlflowException, OSError, *req)) or is_unreachable(exc)


@dataclass
class StepSummary:
    """What :meth:`AttributionWriter.log_step` computed and where it went.

    Attributes:
        step: global step.
        model: model name.
        metrics: ``{method: {metric: mean over samples}}`` (NaN when undefined).
        samples: ``{method: {sample_id: {metric: value}}}``.
        agreement: ``{"<m1>_vs_<m2>": mean Spearman, "mean": ...}`` when several methods were given.
        mlflow_metrics: ``{metric key: value}`` of the finite values sent to MLflow.
        logged: True when the step is committed to MLflow (artifacts, manifest, metrics).
        spool_path: the spool entry still holding the step when ``logged`` is False.
        skipped_methods: methods dropped because this (step, model, method) was already logged.
    """

    step: int
    model: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    samples: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)
    mlflow_metrics: dict[str, float] = field(default_factory=dict)
    logged: bool = False
    spool_path: Path | None = None
    skipped_methods: list[str] = field(default_factory=list)


def _normalize_probe(probe: Sequence[Mapping[str, Any]] | Any) -> list[dict[str, Any]]:
    if hasattr(probe, "to_list") and not isinstance(probe, (list, tuple)):  # datasets.Dataset
        probe = probe.to_list()
    out, seen = [], set()
    for i, s in enumerate(probe):
        if not isinstance(s, Mapping):
            raise InputError(f"probe sample {i} must be a dict with id/prompt/target, got {type(s).__name__}")
        sid = str(s.get("id", s.get("sample_id", i)))
        if sid in seen:
            raise InputError(f"probe sample ids must be unique; {sid!r} appears twice")
        seen.add(sid)
        gt = s.get("ground_truth")
        if gt is not None:
            try:
                gt = [int(p) for p in gt]
            except (TypeError, ValueError):
                raise InputError(f"probe sample {sid!r}: ground_truth must be a list of source positions, got {gt!r}")
        out.append({"id": sid, "prompt": str(s.get("prompt", "")), "target": str(s.get("target", "") or ""),
                    "ground_truth": gt})
    if not out:
        raise InputError("the probe set is empty; expected at least one sample")
    return out


def _fingerprint(samples: list[dict[str, Any]]) -> str:
    canon = json.dumps(samples, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def _new_manifest(root: str) -> dict[str, Any]:
    now = now_iso()
    return {
        "format": L.FORMAT_ID,
        "schema_version": L.SCHEMA_VERSION,
        "artifact_root": root,
        "created": now,
        "updated": now,
        "versions": library_versions(),
        "probe": None,
        "models": {},
        "methods": {},
        "steps": [],
    }


class AttributionWriter:
    """Log attribution steps of one MLflow run (see the module docstring for the protocol).

    Args:
        client: an ``MlflowClient``; built from ``tracking_uri`` when None.
        run_id: the run to write to (required; the run may be owned by someone else).
        tracking_uri: used only when ``client`` is None.
        artifact_root: artifact directory of the attribution layout (default ``attribution``).
        spool_dir: spool root (default :func:`default_spool_dir`); entries go to ``<spool_dir>/<run_id>/``.
        strict: raise :class:`TrackingUnavailableError` when MLflow fails instead of warning.
        model_id: MLflow LoggedModel id attached to the metrics (per-step override in :meth:`log_step`).
        k: top-k size of the concentration and drift metrics.
        keep_float32: also store float32 matrices in the Parquet files (``matrix_f32``).
        max_html_samples: samples included in ``view.html``.
        row_group_size: Parquet row group size (rows).

    Example:
        >>> w = AttributionWriter(client, run_id=run.info.run_id, spool_dir=tmp)  # doctest: +SKIP
        >>> w.log_probe_set([{"id": "s0", "prompt": "a b", "target": " c"}])     # doctest: +SKIP
        >>> w.log_step(100, results)                                              # doctest: +SKIP
    """

    def __init__(
        self,
        client: Any = None,
        run_id: str | None = None,
        tracking_uri: str | None = None,
        artifact_root: str = L.DEFAULT_ROOT,
        *,
        spool_dir: str | os.PathLike | None = None,
        strict: bool = False,
        model_id: str | None = None,
        k: int = 3,
        keep_float32: bool = False,
        max_html_samples: int = DEFAULT_MAX_SAMPLES,
        row_group_size: int = 32,
    ) -> None:
        if not run_id or not isinstance(run_id, str):
            raise InputError("AttributionWriter needs the run_id of the MLflow run to write to")
        if client is None:
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=tracking_uri)
        root = str(artifact_root).strip("/")
        if not root or ".." in root.split("/"):
            raise InputError(f"artifact_root must be a relative artifact path, got {artifact_root!r}")
        self.client = client
        self.run_id = run_id
        self.artifact_root = root
        self.spool_root = Path(spool_dir) if spool_dir is not None else default_spool_dir()
        self.spool_dir = self.spool_root / run_id
        self.strict = strict
        self.model_id = model_id
        self.k = k
        self.keep_float32 = keep_float32
        self.max_html_samples = max_html_samples
        self.row_group_size = row_group_size
        self._manifest: dict[str, Any] | None = None  # last known server copy (None = fetch before use)
        self._probe: dict[str, Any] | None = None
        self._ref: dict[tuple[str, str], dict[str, tuple[int, dict[str, AttributionResult]]]] = {}
        self._model_ids: dict[str, str | None] = {}

    # ================================================================= public API
    def log_probe_set(self, probe: Sequence[Mapping[str, Any]]) -> None:
        """Record the probe set: manifest ``probe`` section, run tags, and an MLflow dataset input.

        Args:
            probe: sample dicts with ``id``, ``prompt``, ``target`` and optional
                ``ground_truth`` (source positions holding the answer), or a
                ``datasets.Dataset`` with those columns.

        Raises:
            TrackingError: the run already lists steps computed on a different probe set.
        """
        samples = _normalize_probe(probe)
        section = {"n": len(samples), "fingerprint": _fingerprint(samples), "samples": samples, "tokens": {}}
        if self._manifest is None:
            try:
                self._server_manifest()
            except Exception as e:  # noqa: BLE001 - offline: the conflict check happens at commit
                if not _is_tracking_failure(e):
                    raise
        known = (self._manifest or {}).get("probe")
        if known and known.get("fingerprint") != section["fingerprint"] and (self._manifest or {}).get("steps"):
            raise TrackingError(
                f"run {self.run_id} already has attribution steps on a different probe set "
                f"({known.get('n')} samples, fingerprint {known.get('fingerprint', '')[:12]}); start a new run"
            )
        self._probe = section
        _write_json(section, self.spool_dir / _PROBE_FILE)
        self.flush()

    def log_step(
        self,
        step: int,
        results: Sequence[AttributionResult],
        model: str = L.DEFAULT_MODEL,
        ground_truth: Mapping[str, Sequence[int]] | None = None,
        *,
        model_id: str | None = None,
        offline: bool = False,
    ) -> StepSummary:
        """Compute metrics, stage and upload one step of one model (all its methods).

        Args:
            step: global step (MLflow metric step), ``0 <= step < 1e10``.
            results: results of every probe sample, one or several methods.
                Results without ``sample_id`` take the probe id at their position
                within their method (or the position itself).
            model: model name (becomes a path component, see :mod:`layout`).
            ground_truth: ``{sample_id: source positions}``; defaults to the probe's ``ground_truth``.
            model_id: MLflow LoggedModel id for the metrics (default: the writer's).
            offline: the caller knows the server is unreachable (e.g. a failed health
                check): stage the step in the spool without any network request.

        Returns:
            :class:`StepSummary`; ``logged`` is False when the step stayed in the spool.

        Raises:
            InputError: bad step, empty results or duplicated sample ids.
            TrackingUnavailableError: only with ``strict=True``, when MLflow fails.
        """
        L.step_dirname(step)
        step = int(step)
        L.safe_name(model)
        results = list(results)
        if not results:
            raise InputError("log_step needs at least one AttributionResult")
        for r in results:
            if not isinstance(r, AttributionResult):
                raise InputError(f"log_step needs AttributionResult items, got {type(r).__name__}")

        if offline:
            failure: BaseException | None = TrackingUnavailableError("tracking server unreachable (health check)")
        else:
            failure = self._try_flush()
        online = failure is None
        if online:
            try:
                self._server_manifest()
            except Exception as e:  # noqa: BLE001 - classified below
                if not _is_tracking_failure(e):
                    raise
                failure, online = e, False

        probe, derived = self._probe, False
        if probe is None:
            probe = self._probe_from_manifest_or_spool()
            if probe is None:
                probe, derived = self._probe_from_results(results, ground_truth), True
        groups = self._group(results, probe)  # validate before anything is written
        gt = self._ground_truth(ground_truth, probe)
        self._probe = probe
        if derived and not (self._manifest or {}).get("probe"):
            _write_json(probe, self.spool_dir / _PROBE_FILE)
        summary = StepSummary(step=step, model=model)
        already = self._listed_methods(step, model)
        for method in list(groups):
            if method in already:
                summary.skipped_methods.append(method)
                del groups[method]
        if summary.skipped_methods:
            logger.warning("step %d of model %r already has %s logged; not logging them again",
                           step, model, ", ".join(summary.skipped_methods))
        if not groups:
            summary.logged = True
            return summary

        section = self._compute(step, model, groups, gt, summary, fetch=online)
        metrics = self._metric_records(step, model, section, model_id or self.model_id)
        summary.mlflow_metrics = {m["key"]: m["value"] for m in metrics}
        entry = self._stage(step, model, groups, section, metrics)
        summary.spool_path = entry

        if online:
            failure = self._try_flush()
        if failure is None and not entry.exists():
            summary.logged = True
            summary.spool_path = None
        else:
            self._report(failure, f"step {step} kept in {entry}", fail_strict=True)
        return summary

    def flush(self) -> bool:
        """Commit every spooled entry of this run, in step order.

        Returns:
            True when the spool of this run is empty afterwards.

        Raises:
            TrackingUnavailableError: only with ``strict=True``.
        """
        failure = self._try_flush()
        if failure is not None:
            n = len(self.pending())
            self._report(failure, f"{n} pending entr{'y' if n == 1 else 'ies'} (probe set / steps) kept in "
                         f"{self.spool_dir}", fail_strict=True)
            return False
        return True

    def pending(self) -> list[Path]:
        """Spool entries (and a pending probe set) not yet committed, in commit order."""
        probe = self.spool_dir / _PROBE_FILE
        return ([probe] if probe.exists() else []) + self._pending_entries()

    close = flush

    def __enter__(self) -> AttributionWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.flush()

    # ============================================================ computation
    def _group(
        self, results: list[AttributionResult], probe: dict[str, Any] | None
    ) -> dict[str, list[AttributionResult]]:
        groups: dict[str, list[AttributionResult]] = {}
        for r in results:
            groups.setdefault(r.method, []).append(r)
        probe_ids = [s["id"] for s in (probe or {}).get("samples", [])]
        for method, rs in groups.items():
            L.safe_name(method)
            fixed = []
            for i, r in enumerate(rs):
                if r.sample_id is None:
                    sid = probe_ids[i] if len(rs) == len(probe_ids) else str(i)
                    r = dataclasses.replace(r, sample_id=sid)
                fixed.append(r)
            ids = [str(r.sample_id) for r in fixed]
            if len(set(ids)) != len(ids):
                dup = sorted({x for x in ids if ids.count(x) > 1})
                raise InputError(f"method {method!r}: sample ids must be unique within a step, duplicated: {dup[:5]}")
            groups[method] = fixed
        return groups

    def _probe_from_results(self, results: list[AttributionResult], gt: Mapping[str, Any] | None) -> dict[str, Any]:
        first_method = results[0].method
        samples, seen = [], set()
        for i, r in enumerate(x for x in results if x.method == first_method):
            sid = str(r.sample_id) if r.sample_id is not None else str(i)
            if sid in seen:
                continue
            seen.add(sid)
            g = (gt or {}).get(sid)
            try:
                g = [int(p) for p in g] if g is not None else None
            except (TypeError, ValueError):
                raise InputError(f"ground_truth[{sid!r}] must be a list of source positions, got {g!r}") from None
            samples.append({"id": sid, "prompt": r.prompt, "target": r.target, "ground_truth": g})
        return {"n": len(samples), "fingerprint": _fingerprint(samples), "samples": samples, "tokens": {}}

    def _probe_from_manifest_or_spool(self) -> dict[str, Any] | None:
        p = self.spool_dir / _PROBE_FILE
        if p.exists():
            try:
                return json.loads(p.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                pass
        probe = (self._manifest or {}).get("probe")
        return copy.deepcopy(probe) if probe else None

    @staticmethod
    def _ground_truth(given: Mapping[str, Sequence[int]] | None, probe: dict[str, Any] | None) -> dict[str, list[int]]:
        out = {s["id"]: s["ground_truth"] for s in (probe or {}).get("samples", []) if s.get("ground_truth")}
        for sid, pos in (given or {}).items():
            try:
                out[str(sid)] = [int(p) for p in pos]
            except (TypeError, ValueError):
                raise InputError(f"ground_truth[{sid!r}] must be a list of source positions, got {pos!r}") from None
        return out

    def _compute(
        self,
        step: int,
        model: str,
        groups: dict[str, list[AttributionResult]],
        gt: dict[str, list[int]],
        summary: StepSummary,
        fetch: bool,
    ) -> dict[str, Any]:
        section: dict[str, Any] = {"methods": {}, "agreement": {}}
        warned = set()
        for method, rs in groups.items():
            per_sample: dict[str, dict[str, float]] = {}
            importance: dict[str, dict[str, list]] = {}
            for r in rs:
                sid = str(r.sample_id)
                per_sample[sid] = self._summarize_one(r, gt.get(sid), warned)
                importance[sid] = {"source": _vec(source_importance(r)), "target": _vec(target_importance(r))}
            drift_info: dict[str, Any] = {}
            for which in ("prev", "first"):
                ref_step, ref = self._reference(step, model, method, which, fetch)
                drift_info[f"{which}_step"] = ref_step
                if ref is None:
                    continue
                n_used = 0
                for r in rs:
                    sid = str(r.sample_id)
                    other = ref.get(sid)
                    if other is None:
                        continue
                    try:
                        d = drift(other, r, k=self.k, kendall=False)  # Kendall is not logged
                    except AttribError:  # different source tokens (e.g. a new generation): not comparable
                        continue
                    n_used += 1
                    for name, v in d.items():
                        per_sample[sid][f"drift_{which}_{name}"] = v
                drift_info[f"{which}_n_samples"] = n_used
            keys = sorted({k for m in per_sample.values() for k in m})
            agg = {k: _nanmean([m.get(k, math.nan) for m in per_sample.values()]) for k in keys}
            section["methods"][method] = {
                "engine": rs[0].engine,
                "n_samples": len(rs),
                "metrics": agg,
                "drift": drift_info,
                "samples": per_sample,
                "importance": importance,
            }
            summary.metrics[method] = agg
            summary.samples[method] = per_sample
            self._remember(step, model, method, {str(r.sample_id): r for r in rs})
        if len(groups) >= 2:
            section["agreement"] = self._agreement(groups)
            summary.agreement = section["agreement"]
        return section

    def _summarize_one(self, r: AttributionResult, positions: list[int] | None, warned: set) -> dict[str, float]:
        try:
            return summarize(r, k=self.k, true_positions=positions)
        except AttribError as e:
            if positions is not None:
                if "gt" not in warned:
                    logger.warning("ground truth of sample %r not usable (%s); hit@k left out", r.sample_id, e)
                    warned.add("gt")
                try:
                    return summarize(r, k=self.k)
                except AttribError:
                    pass
            if "nonfinite" not in warned:
                logger.warning("sample %r (%s): metrics undefined (%s)", r.sample_id, r.method, e)
                warned.add("nonfinite")
            return {"concentration_entropy": math.nan, "topk_mass": math.nan}

    def _agreement(self, groups: dict[str, list[AttributionResult]]) -> dict[str, float]:
        by_sid = {m: {str(r.sample_id): r for r in rs} for m, rs in groups.items()}
        common = set.intersection(*(set(d) for d in by_sid.values()))
        pairs: dict[str, list[float]] = {}
        for sid in sorted(common):
            try:
                ag = method_agreement({m: by_sid[m][sid] for m in by_sid})
            except AttribError:
                continue
            for key, v in ag.items():
                name = key.replace("~", "_vs_")
                pairs.setdefault(name, []).append(v)
        return {k: _nanmean(v) for k, v in pairs.items()}

    def _metric_records(self, step: int, model: str, section: dict[str, Any], model_id: str | None) -> list[dict]:
        ts = int(time.time() * 1000)
        recs = []
        for method, sec in section["methods"].items():
            for name, v in sec["metrics"].items():
                if name.startswith("drift_") and not name.endswith(DRIFT_LOGGED):
                    continue  # kendall stays in summary.json
                if v is not None and math.isfinite(v):
                    recs.append({"key": L.metric_key(method, name, model), "value": float(v), "timestamp": ts,
                                 "step": step, "model_id": model_id, "method": method})
        for name, v in section.get("agreement", {}).items():
            if v is not None and math.isfinite(v):
                recs.append({"key": L.metric_key("agreement", name, model), "value": float(v), "timestamp": ts,
                             "step": step, "model_id": model_id, "method": None})
        return recs

    # --------------------------------------------------- reference steps (drift)
    def _remember(self, step: int, model: str, method: str, by_sid: dict[str, AttributionResult]) -> None:
        slot = self._ref.setdefault((model, method), {})
        if "last" not in slot or step >= slot["last"][0]:
            slot["last"] = (step, by_sid)
        if "first" not in slot or step < slot["first"][0]:
            slot["first"] = (step, by_sid)

    def _known_steps(self, model: str, method: str) -> dict[int, Path | str]:
        """Steps of (model, method) -> where their Parquet lives (spool path or artifact relpath)."""
        out: dict[int, Path | str] = {}
        for s in (self._manifest or {}).get("steps", []):
            rel = s.get("files", {}).get(model, {}).get(method)
            if rel:
                out[int(s["step"])] = rel
        for entry in self._pending_entries():
            try:
                info = json.loads((entry / _ENTRY_FILE).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if info.get("model") == model and method in info.get("files", {}):
                out.setdefault(int(info["step"]), entry / "files" / info["files"][method])
        for which in ("last", "first"):
            if which in self._ref.get((model, method), {}):
                out.setdefault(self._ref[(model, method)][which][0], "cache")
        return out

    def _reference(
        self, step: int, model: str, method: str, which: str, fetch: bool
    ) -> tuple[int | None, dict[str, AttributionResult] | None]:
        known = {s: w for s, w in self._known_steps(model, method).items() if s < step}
        if not known:
            return None, None
        ref_step = max(known) if which == "prev" else min(known)
        for slot in self._ref.get((model, method), {}).values():
            if slot[0] == ref_step:
                return ref_step, slot[1]
        where = known[ref_step]
        try:
            if isinstance(where, Path):
                rs = read_results(where)
            elif where != "cache" and fetch:
                with tempfile.TemporaryDirectory(prefix="attrib-mlops-ref-") as tmp:
                    local = self.client.download_artifacts(self.run_id, L.join(self.artifact_root, where), tmp)
                    rs = read_results(local)
            else:
                return ref_step, None
        except Exception as e:  # noqa: BLE001 - drift is best effort
            if not (_is_tracking_failure(e) or isinstance(e, AttribError)):
                raise
            logger.warning("drift vs step %d of %s/%s skipped: %s", ref_step, model, method, e)
            return ref_step, None
        by_sid = {str(r.sample_id): r for r in rs}
        self._remember(ref_step, model, method, by_sid)
        return ref_step, by_sid

    # ================================================================= spool
    def _stage(self, step: int, model: str, groups: dict[str, list[AttributionResult]],
               section: dict[str, Any], metrics: list[dict]) -> Path:
        step_dir = self.spool_dir / L.step_dirname(step)
        step_dir.mkdir(parents=True, exist_ok=True)
        seq = 1 + max([int(p.name.split("-", 1)[0]) for p in step_dir.iterdir()
                       if p.is_dir() and p.name[:3].isdigit()] or [0])
        name = f"{seq:03d}-{L.safe_name(model)}"
        tmp = step_dir / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        files = tmp / "files"
        rel_files = {}
        for method, rs in groups.items():
            rel = L.join(L.safe_name(model), L.safe_name(method) + ".parquet")
            write_results(rs, files / rel, row_group_size=self.row_group_size, include_f32=self.keep_float32,
                          metadata={"step": step, "model": model, "method": method})
            rel_files[method] = rel
        _write_json(self._summary_doc(step, {model: section}), files / L.SUMMARY_NAME)
        (files / L.VIEW_NAME).write_text(self._render({(model, m): rs for m, rs in groups.items()}, step),
                                         encoding="utf-8")
        _write_json({"step": step, "model": model, "methods": list(groups), "files": rel_files,
                     "n_samples": {m: len(rs) for m, rs in groups.items()}, "metrics": metrics,
                     "created": now_iso()}, tmp / _ENTRY_FILE)
        final = step_dir / name
        os.replace(tmp, final)
        return final

    def _pending_entries(self) -> list[Path]:
        if not self.spool_dir.is_dir():
            return []
        out = []
        for step_dir in sorted(p for p in self.spool_dir.iterdir() if p.is_dir() and p.name.isdigit()):
            out.extend(sorted(p for p in step_dir.iterdir()
                              if p.is_dir() and not p.name.startswith(".") and (p / _ENTRY_FILE).exists()))
        return out

    def _drop_entry(self, entry: Path) -> None:
        shutil.rmtree(entry, ignore_errors=True)
        for d in (entry.parent, self.spool_dir):
            try:
                if d.is_dir() and not any(p for p in d.iterdir() if not p.name.startswith(".")):
                    shutil.rmtree(d, ignore_errors=True)
            except OSError:
                pass

    def _report(self, failure: BaseException | None, what: str, fail_strict: bool) -> None:
        if failure is None:
            return
        if is_unreachable(failure):
            msg = f"tracking server unreachable; {what}, will retry"
        else:
            msg = f"tracking failed ({type(failure).__name__}: {str(failure)[:300]}); {what}, will retry"
        if self.strict and fail_strict:
            raise TrackingUnavailableError(msg) from failure
        logger.warning(msg)

    # ================================================================= commit
    def _try_flush(self) -> BaseException | None:
        """Commit pending work in order; return the first tracking failure (and stop there)."""
        try:
            if (self.spool_dir / _PROBE_FILE).exists():
                self._commit_probe()
            for entry in self._pending_entries():
                self._commit_entry(entry)
        except Exception as e:  # noqa: BLE001 - classified
            self._manifest = None  # unknown server state: fetch again next time
            if _is_tracking_failure(e):
                return e
            raise
        return None

    def _server_manifest(self) -> dict[str, Any]:
        if self._manifest is not None:
            return self._manifest
        names = {a.path for a in self.client.list_artifacts(self.run_id, self.artifact_root)}
        path = L.manifest_path(self.artifact_root)
        if path not in names:
            self._manifest = _new_manifest(self.artifact_root)
            return self._manifest
        with tempfile.TemporaryDirectory(prefix="attrib-mlops-manifest-") as tmp:
            local = self.client.download_artifacts(self.run_id, path, tmp)
            try:
                man = json.loads(Path(local).read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise TrackingError(f"{path} of run {self.run_id} is not valid JSON ({e}); refusing to overwrite it")
        if not isinstance(man, dict) or man.get("format") != L.FORMAT_ID:
            raise TrackingError(
                f"{path} of run {self.run_id} is not an attrib-mlops manifest; refusing to overwrite it")
        if int(man.get("schema_version", 0)) > L.SCHEMA_VERSION:
            raise SchemaVersionError(
                f"run {self.run_id} was written with schema v{man['schema_version']}; this writer understands up "
                f"to v{L.SCHEMA_VERSION}; upgrade attrib-mlops"
            )
        self._manifest = man
        return man

    def _listed_methods(self, step: int, model: str) -> set[str]:
        for s in (self._manifest or {}).get("steps", []):
            if int(s["step"]) == step:
                return set(s.get("files", {}).get(model, {}))
        return set()

    def _upload_manifest(self, man: dict[str, Any]) -> None:
        man["updated"] = now_iso()
        man["versions"] = library_versions()
        with tempfile.TemporaryDirectory(prefix="attrib-mlops-manifest-") as tmp:
            p = Path(tmp) / L.MANIFEST_NAME
            p.write_text(_dumps(man), encoding="utf-8")
            self.client.log_artifact(self.run_id, str(p), self.artifact_root)
        self._manifest = man

    def _tags(self, man: dict[str, Any]) -> list:
        from mlflow.entities import RunTag

        steps = [int(s["step"]) for s in man.get("steps", [])]
        probe = man.get("probe") or {}
        tags = {
            L.TAG_SCHEMA_VERSION: str(L.SCHEMA_VERSION),
            L.TAG_ARTIFACT_ROOT: self.artifact_root,
            L.TAG_STEPS: str(len(steps)),
            L.TAG_METHODS: json.dumps(sorted(man.get("methods", {}))),
            L.TAG_MODELS: json.dumps(sorted(man.get("models", {}))),
            L.TAG_N_PROBE: str(probe.get("n", 0)),
        }
        if steps:
            tags[L.TAG_LAST_STEP] = str(max(steps))
        return [RunTag(k, v[:8000]) for k, v in tags.items()]

    def _commit_probe(self) -> None:
        path = self.spool_dir / _PROBE_FILE
        section = json.loads(path.read_text(encoding="utf-8"))
        man = copy.deepcopy(self._server_manifest())
        old = man.get("probe")
        if old and old.get("fingerprint") == section["fingerprint"]:
            path.unlink(missing_ok=True)
            return
        if old and man.get("steps"):
            logger.warning("run %s already has steps on probe set %s; the new probe set is not recorded",
                           self.run_id, old.get("fingerprint", "")[:12])
            path.unlink(missing_ok=True)
            return
        man["probe"] = section
        self._upload_manifest(man)
        self.client.log_batch(self.run_id, tags=self._tags(man))
        self._log_dataset_input(section)
        path.unlink(missing_ok=True)

    def _log_dataset_input(self, section: dict[str, Any]) -> None:
        """The probe set as an MLflow dataset input of the run (context ``attribution-probe``)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        schema = {"mlflow_colspec": [{"type": "string", "name": n, "required": True}
                                     for n in ("id", "prompt", "target", "ground_truth")]}
        ds = Dataset(
            name="attrib-probe",
            digest=section["fingerprint"][:16],
            source_type="attrib_mlops",
            source=json.dumps({"uri": f"runs:/{self.run_id}/{L.manifest_path(self.artifact_root)}"}),
            schema=json.dumps(schema),
            profile=json.dumps({"num_rows": section["n"]}),
        )
        try:
            self.client.log_inputs(self.run_id, [DatasetInput(ds, tags=[InputTag("mlflow.data.context",
                                                                                  "attribution-probe")])])
        except Exception as e:  # noqa: BLE001 - the manifest is the record; the input is a convenience
            if is_unreachable(e):
                raise
            logger.warning("could not log the probe set as an MLflow dataset input: %s", e)

    def _checked_model_id(self, model_id: str | None) -> str | None:
        if not model_id:
            return None
        if model_id not in self._model_ids:
            from mlflow.entities import Metric
            from mlflow.exceptions import MlflowException

            if "model_id" not in inspect.signature(Metric.__init__).parameters:
                self._model_ids[model_id] = None
            else:
                try:
                    self.client.get_logged_model(model_id)
                    self._model_ids[model_id] = model_id
                except MlflowException as e:
                    if is_unreachable(e):
                        raise
                    logger.warning("model_id %r is not a LoggedModel of this tracking server (%s); "
                                   "metrics are logged without it", model_id, str(e)[:200])
                    self._model_ids[model_id] = None
                except AttributeError:  # client without LoggedModel support
                    self._model_ids[model_id] = None
        return self._model_ids[model_id]

    def _log_metrics(self, recs: list[dict], man: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        ms = []
        for r in recs:
            mid = self._checked_model_id(r.get("model_id"))
            kw = {"model_id": mid} if mid else {}
            ms.append(Metric(r["key"], r["value"], int(r["timestamp"]), int(r["step"]), **kw))
        tags = self._tags(man)
        chunks = [ms[i: i + 900] for i in range(0, len(ms), 900)] or [[]]
        for i, chunk in enumerate(chunks):
            self.client.log_batch(self.run_id, metrics=chunk, tags=tags if i == len(chunks) - 1 else [])

    def _metrics_present(self, recs: list[dict]) -> bool:
        if not recs:
            return True
        step = int(recs[0]["step"])
        hist = self.client.get_metric_history(self.run_id, recs[0]["key"])
        return any(int(m.step) == step for m in hist)

    def _commit_entry(self, entry: Path) -> None:
        info = json.loads((entry / _ENTRY_FILE).read_text(encoding="utf-8"))
        step, model = int(info["step"]), info["model"]
        man = copy.deepcopy(self._server_manifest())
        steps = man.setdefault("steps", [])
        existing = next((s for s in steps if int(s["step"]) == step), None)
        listed = set((existing or {}).get("files", {}).get(model, {}))
        new_methods = [m for m in info["methods"] if m not in listed]
        if not new_methods:  # committed before (retry after a crash, or a duplicate call)
            if not self._metrics_present(info["metrics"]):
                self._log_metrics(info["metrics"], man)
            self._drop_entry(entry)
            return
        files = entry / "files"
        for m in info["methods"]:
            if m in listed:
                (files / info["files"][m]).unlink(missing_ok=True)
        others = {(mo, me): rel for mo, d in (existing or {}).get("files", {}).items() for me, rel in d.items()}
        if others:
            self._merge_step_documents(step, model, info, files, others)

        self.client.log_artifacts(self.run_id, str(files), L.step_path(step, self.artifact_root))

        # --- the step's files exist: now (and only now) list it in the manifest
        step_prefix = L.join(L.STEPS_DIR, L.step_dirname(step))
        if existing is None:
            existing = {"step": step, "revision": 0, "models": {}, "files": {},
                        "summary": L.summary_relpath(step), "view": L.view_relpath(step), "n_samples": 0}
            steps.append(existing)
            steps.sort(key=lambda s: int(s["step"]))
        existing["revision"] = int(existing.get("revision", 0)) + 1
        existing["logged"] = now_iso()
        mlist = existing["models"].setdefault(model, [])
        fmap = existing["files"].setdefault(model, {})
        for m in new_methods:
            mlist.append(m)
            fmap[m] = L.join(step_prefix, info["files"][m])
            man.setdefault("methods", {}).setdefault(m, {"path": L.safe_name(m)})
            existing["n_samples"] = max(int(existing.get("n_samples", 0)), int(info["n_samples"][m]))
        man.setdefault("models", {}).setdefault(model, {"path": L.safe_name(model)})
        self._add_tokens(man, model, files / info["files"][new_methods[0]])
        self._upload_manifest(man)

        self._log_metrics([r for r in info["metrics"] if r.get("method") is None or r["method"] in new_methods], man)
        self._drop_entry(entry)

    def _add_tokens(self, man: dict[str, Any], model: str, parquet: Path) -> None:
        probe = man.get("probe")
        if probe is None:
            probe = man["probe"] = copy.deepcopy(self._probe) if self._probe else None
        if probe is None:
            return
        tokens = probe.setdefault("tokens", {}).setdefault(model, {})
        import pyarrow.parquet as pq

        t = pq.read_table(parquet, columns=["sample_id", "source_tokens", "target_tokens", "n_prompt"])
        for row in t.to_pylist():
            tokens.setdefault(str(row["sample_id"]), {"source_tokens": row["source_tokens"],
                                                      "target_tokens": row["target_tokens"],
                                                      "n_prompt": row["n_prompt"]})

    def _merge_step_documents(self, step: int, model: str, info: dict[str, Any], files: Path,
                              others: dict[tuple[str, str], str]) -> None:
        """Rewrite summary.json and view.html of a step that already lists other (model, method) files."""
        with tempfile.TemporaryDirectory(prefix="attrib-mlops-merge-") as tmp:
            try:
                local = self.client.download_artifacts(
                    self.run_id, L.join(self.artifact_root, L.summary_relpath(step)), tmp)
                doc = json.loads(Path(local).read_text(encoding="utf-8"))
            except Exception as e:  # noqa: BLE001
                if is_unreachable(e):
                    raise
                logger.warning("summary.json of step %d unreadable (%s); rewriting it from this entry", step, e)
                doc = self._summary_doc(step, {})
            mine = json.loads((files / L.SUMMARY_NAME).read_text(encoding="utf-8"))["models"][model]
            sec = doc.setdefault("models", {}).setdefault(model, {"methods": {}, "agreement": {}})
            for m in info["methods"]:
                if (model, m) not in others:
                    sec["methods"][m] = mine["methods"][m]
            if mine.get("agreement"):
                sec["agreement"] = mine["agreement"]
            _write_json(doc, files / L.SUMMARY_NAME)
            panels: dict[tuple[str, str], list[AttributionResult]] = {}
            for (mo, me), rel in sorted(others.items()):
                local = self.client.download_artifacts(self.run_id, L.join(self.artifact_root, rel), tmp)
                panels[(mo, me)] = read_results(local)
            for m in info["methods"]:
                if (model, m) not in others:
                    panels[(model, m)] = read_results(files / info["files"][m])
            (files / L.VIEW_NAME).write_text(self._render(panels, step), encoding="utf-8")

    # ================================================================ documents
    def _summary_doc(self, step: int, models: dict[str, Any]) -> dict[str, Any]:
        return {"format": "attrib-mlops/step-summary", "schema_version": L.SCHEMA_VERSION, "step": step,
                "k": self.k, "models": models}

    def _render(self, panels: dict[tuple[str, str], list[AttributionResult]], step: int) -> str:
        meta = {"step": step, "run_id": self.run_id, "samples": (self._probe or {}).get("samples", []),
                "max_samples": self.max_html_samples}
        return render_step_html(panels, meta, title=f"Attribution · step {step}")
