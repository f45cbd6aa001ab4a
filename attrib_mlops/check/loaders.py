"""Loading the two sides of a check: a REF (MLflow run step, results folder) or results in memory.

Example:
    >>> side = load_ref("attrib-results/keyvalue-tiny@tiny")          # doctest: +SKIP
    >>> sorted(side.results), side.model                              # doctest: +SKIP
    (['attention', 'saliency'], 'tiny')
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AttribError
from ..result import AttributionResult
from .refs import CannotCompare, Ref, parse_ref

__all__ = ["Attributions", "load_ref", "as_attributions", "short_list"]


@dataclass
class Attributions:
    """One side of a check: results by method plus what is known about where they came from.

    Attributes:
        results: ``{method: [AttributionResult]}``.
        ground_truth: ``{sample_id: source positions}`` (may be empty).
        label: how the side is named in reports (the REF, or ``"in-memory"``).
        run_id, step, model: where the results were read from, when known.
        accuracy: the model's accuracy, when known (for the ``accuracy_drop`` rule).
    """

    results: dict[str, list[AttributionResult]]
    ground_truth: dict[str, list[int]] = field(default_factory=dict)
    label: str = "in-memory"
    run_id: str | None = None
    step: int | None = None
    model: str | None = None
    accuracy: float | None = None
    tracking_uri: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"ref": self.label, "run_id": self.run_id, "step": self.step, "model": self.model,
                "accuracy": self.accuracy, "methods": sorted(self.results)}


def _pick_model(models: Sequence[str], wanted: str | None, side: str, where: str) -> str:
    models = list(models)
    if wanted is not None:
        if wanted not in models:
            raise CannotCompare(f"{side} {where} has no model '{wanted}'; it has {models}")
        return wanted
    if len(models) == 1:
        return models[0]
    if not models:
        raise CannotCompare(f"{side} {where} holds no attribution results")
    raise CannotCompare(f"{side} {where} holds several models {models}; pick one with "
                        f"'{'#' if where.startswith('run') else '@'}<model>' in the reference")


def _gt_map(samples: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
    out = {}
    for s in samples or []:
        gt = s.get("ground_truth")
        if s.get("id") is not None and gt:
            out[str(s["id"])] = [int(p) for p in gt]
    return out


def load_ref(
    ref: str | Ref,
    *,
    side: str = "baseline",
    tracking_uri: str | None = None,
    methods: Sequence[str] | None = None,
    accuracy_metric: str | None = None,
    match_step: int | None = None,
    reader: Any = None,
) -> Attributions:
    """Load the results a REF names (all its methods, or those of ``methods`` it has).

    Args:
        ref: a REF string or :class:`Ref`.
        side: ``"baseline"`` or ``"candidate"`` (named in error messages).
        tracking_uri: MLflow tracking URI for ``runs:/`` references (default: MLflow's).
        methods: load only these methods (missing ones are reported by :func:`compare`).
        accuracy_metric: MLflow metric to read the accuracy from (last value at or before the step).
        match_step: for a ``runs:/`` reference without an explicit step: use this step when the
            run has it, else the latest (what the live check in the callbacks does).
        reader: an :class:`~attrib_mlops.tracking.AttributionReader` to reuse.

    Raises:
        CannotCompare: unknown run id, run without attribution, step not logged, model
            missing or ambiguous, not a results folder.
    """
    r = parse_ref(ref)
    if r.kind == "folder":
        return _load_folder(r, side, methods)
    return _load_run(r, side, tracking_uri, methods, accuracy_metric, match_step, reader)


def _load_folder(r: Ref, side: str, methods: Sequence[str] | None) -> Attributions:
    from ..tracking.folder import load_local_results, read_manifest

    folder = Path(r.path)
    where = f"folder '{folder}'"
    if not (folder / "manifest.json").is_file():
        raise CannotCompare(f"{side} {where} holds no manifest.json; give the output folder of 'attrib-mlops run'")
    try:
        manifest = read_manifest(folder)
        pairs = load_local_results(folder)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CannotCompare(f"{side} {where} cannot be read: {e}") from None
    models = list(dict.fromkeys(m for m, _ in pairs))
    model = _pick_model(models, r.model, side, where)
    results = {meth: list(res) for (m, meth), res in pairs.items()
               if m == model and (methods is None or meth in methods)}
    gt = _gt_map((manifest.get("probe_set") or {}).get("samples", []))
    return Attributions(results, gt, label=r.text, model=model)


def _other_kinds(entry: Mapping[str, Any]) -> list[tuple[str, dict[str, dict[str, str]]]]:
    """``[(kind, {model: {method: path}})]`` of the step's kinds other than the token matrix."""
    from ..tracking.kinds import DEFAULT_KIND, get_kind, kind_names

    return [(n, get_kind(n).files(entry)) for n in kind_names() if n != DEFAULT_KIND and get_kind(n).files(entry)]


def _load_run(r: Ref, side: str, tracking_uri: str | None, methods: Sequence[str] | None,
              accuracy_metric: str | None, match_step: int | None, reader: Any) -> Attributions:
    from ..tracking import AttributionReader, TrackingError

    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # pragma: no cover
        raise CannotCompare("'runs:/' references need mlflow installed") from None
    if reader is None:  # downloads (remote stores) go to a temporary cache, removed once loaded
        with tempfile.TemporaryDirectory(prefix="attrib-check-") as tmp:
            reader = AttributionReader(tracking_uri, cache_dir=tmp)
            return _load_run(r, side, tracking_uri, methods, accuracy_metric, match_step, reader)
    uri = getattr(reader.client, "tracking_uri", None) or tracking_uri or "(MLflow default)"
    run_id = r.run_id
    try:
        reader.client.get_run(run_id)
    except MlflowException as e:
        if getattr(e, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise CannotCompare(f"{side}: unknown run id '{run_id}' in the tracking store {uri}") from None
        raise CannotCompare(f"{side}: cannot read run '{run_id}' from {uri}: {str(e)[:200]}") from None
    except Exception as e:  # noqa: BLE001 - network or store failures: say so, no traceback
        raise CannotCompare(f"{side}: cannot read run '{run_id}' from {uri}: {type(e).__name__}: "
                            f"{str(e)[:200]}") from None
    try:
        manifest = reader.manifest(run_id, refresh=True)
    except TrackingError as e:
        raise CannotCompare(f"{side}: {e}") from None
    steps = [int(s["step"]) for s in manifest["steps"]]
    if not steps:
        raise CannotCompare(f"{side}: run {run_id} has no committed attribution step")
    if r.step is not None:
        if r.step not in steps:
            raise CannotCompare(f"{side}: step {r.step} is not logged in run {run_id}; logged steps: "
                                f"{short_list(steps)}")
        step = r.step
    elif match_step is not None and not r.latest and int(match_step) in steps:
        step = int(match_step)
    else:
        step = steps[-1]
    entry = next(s for s in manifest["steps"] if int(s["step"]) == step)
    files = entry.get("files", {})
    others = _other_kinds(entry)
    model = _pick_model(list(dict.fromkeys([*files, *(m for _, f in others for m in f)])), r.model, side,
                        f"run {run_id} step {step}")
    available = list(files.get(model, {}))
    wanted = [m for m in available if methods is None or m in methods]
    results: dict[str, list[AttributionResult]] = {}
    for meth in wanted:
        try:
            results[meth] = reader.load(run_id, step, model=model, method=meth)
        except AttribError as e:
            raise CannotCompare(f"{side}: {e}") from None
    for kind, kfiles in others:  # other kinds of the step (context sources, ...), by method name
        for meth in kfiles.get(model, {}):
            key = meth if meth not in available else f"{kind}:{meth}"  # e.g. sources:attention
            if methods is not None and key not in methods:
                continue
            try:
                results[key] = reader.load(run_id, step, model=model, method=meth, kind=kind)
            except AttribError as e:
                raise CannotCompare(f"{side}: {e}") from None
    gt = _gt_map((manifest.get("probe") or {}).get("samples", []))
    accuracy = None
    if accuracy_metric:
        try:
            hist = [p for p in reader.metric_history(run_id, accuracy_metric) if p.step <= step]
            accuracy = hist[-1].value if hist else None
        except Exception:  # noqa: BLE001 - a missing metric just leaves the rule unevaluated
            accuracy = None
    return Attributions(results, gt, label=r.text, run_id=run_id, step=step, model=model,
                        accuracy=accuracy, tracking_uri=tracking_uri)


def short_list(xs: Sequence[Any], n: int = 20) -> str:
    xs = list(xs)
    return "[" + ", ".join(str(x) for x in xs[:n]) + (", ..." if len(xs) > n else "") + "]"


def _is_result(r: Any) -> bool:
    """A result of a registered attribution kind (a token matrix, context sources, ...)."""
    from ..analysis.registry import get_kind, kind_names

    return any(isinstance(r, get_kind(n).result_type) for n in kind_names())


def as_attributions(x: Any, side: str, tracking_uri: str | None, methods: Sequence[str] | None,
                    accuracy_metric: str | None = None) -> Attributions:
    """One side of a check from any accepted form (see :func:`~attrib_mlops.check.compare`)."""
    if isinstance(x, Attributions):
        return x
    if isinstance(x, (str, os.PathLike, Ref)):
        return load_ref(x, side=side, tracking_uri=tracking_uri, methods=methods, accuracy_metric=accuracy_metric)
    if isinstance(x, Mapping):
        if not x:
            return Attributions({}, label="in-memory")
        keys = list(x)
        if all(isinstance(k, tuple) and len(k) == 2 for k in keys):  # load_local_results() output
            models = list(dict.fromkeys(k[0] for k in keys))
            model = _pick_model(models, None, side, "results")
            return Attributions({meth: list(v) for (m, meth), v in x.items() if m == model}, model=model)
        out = {}
        for k, v in x.items():
            if _is_result(v):
                v = [v]
            v = list(v)
            if not all(_is_result(r) for r in v):
                raise TypeError(f"{side}[{k!r}] must be a list of AttributionResult")
            out[str(k)] = v
        return Attributions(out)
    if isinstance(x, Sequence) and all(_is_result(r) for r in x):
        out: dict[str, list[AttributionResult]] = {}
        for r in x:
            out.setdefault(r.method, []).append(r)
        return Attributions(out)
    raise TypeError(f"{side} must be a REF string, a Ref, Attributions, {{method: [AttributionResult]}} or a list "
                    f"of AttributionResult, got {type(x).__name__}")
