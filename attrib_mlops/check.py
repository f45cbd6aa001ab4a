"""Attribution regression checks: a CI gate that catches what accuracy does not.

Compare a *candidate*'s attribution to a *baseline*'s on the probe samples both
share, per method, with drift and ground-truth alignment metrics, against the
thresholds of a :class:`Policy`::

    from attrib_mlops.check import compare, assert_no_regression

    result = compare("runs:/<baseline run id>", "runs:/<candidate run id>@200")
    result.verdict          # "pass" | "regression" | "cannot_compare"
    result.exit_code        # 0 | 1 | 2
    print(result.summary_text())

    # in a test suite, on results already in memory ({method: [AttributionResult]}):
    assert_no_regression(baseline_results, candidate_results, policy={"min_mean_importance_corr": 0.7})

The command line ``attrib-mlops check --baseline REF --candidate REF`` wraps
:func:`compare` (see ``docs/regression-checks.md``).

References (REF)
----------------
::

    REF        := MLFLOW_REF | FOLDER_REF
    MLFLOW_REF := "runs:/" RUN_ID [ "@" STEP ] [ "#" MODEL ]
    STEP       := integer >= 0 | "latest"
    FOLDER_REF := PATH [ "@" MODEL ]

* ``runs:/<run_id>@<step>``: the attribution step ``<step>`` of an MLflow run
  logged by :class:`~attrib_mlops.tracking.AttributionWriter` (or the training
  callbacks); ``@latest`` or no ``@`` = the run's last committed step.
* ``#<model>`` picks the model of a run that stores several (default: the only
  one; a run with several models and no ``#`` cannot be compared).
* ``PATH`` is a results folder written by ``attrib-mlops run`` (it holds
  ``manifest.json``); ``@<model>`` picks the job model (default: the only one).
  A path that exists as given is never split at ``@``.

Ground truth (source positions of the evidence) comes from the probe set stored
with the results (the run's manifest or the folder's ``manifest.json``); the
baseline's wins where both give one.

What is compared
----------------
Only sample ids present on both sides. A shared sample whose *prompt* tokens
differ (another tokenizer, another prompt) is skipped with reason
``different_prompt_tokens``; one whose target (continuation) tokens differ from
the first token on is skipped with reason ``different_continuation``; when the
continuations share a prefix of ``p >= 1`` tokens, only the prompt rows and the
first ``p`` target columns (cells that see exactly the same tokens) are compared
and the sample is counted as ``truncated``. Different tokens are never compared
cell by cell. Importance is ``|I(x_i)| = |sum_j A[i, j]|`` per source token (see
:mod:`attrib_mlops.analysis`).

Per method the check computes, over the compared samples:

``mean_importance_corr``
    mean Pearson correlation of the baseline's and candidate's importance vectors:
    high when the same tokens carry the attribution mass (the many near-zero tokens
    barely count, unlike in a rank correlation);
``mean_spearman``
    mean Spearman rank correlation of the importances (reported; off by default as a
    rule because the order of unimportant tokens is noise);
``topk_changed_share``
    share of samples whose top-k source tokens changed, where "changed" means the
    token the baseline attributes most to is no longer among the candidate's top-k
    (``topk_set_changed_share``, the share whose whole top-k *set* differs, is reported
    too; it flags most samples even between two seeds of the same model);
``hit_at_1``, ``hit_at_k`` and their drops
    share of samples whose top-1 / top-k prompt tokens include a ground-truth position
    (candidate), and baseline minus candidate;
``probability_drop``
    mean target probability of the baseline minus the candidate's;

plus the global ``accuracy_drop`` (baseline minus candidate accuracy) when both
accuracies are known (``compare(..., baseline_accuracy=, candidate_accuracy=)``
or the MLflow metric named by ``Policy.accuracy_metric``). Thresholds and their
defaults: :class:`Policy`.

Verdicts and exit codes: ``pass`` (0) every evaluated rule holds; ``regression``
(1) at least one rule fails; ``cannot_compare`` (2) a side cannot be loaded
(unknown run id, step not logged, not a results folder), a method is missing on
one side, no sample is shared, or no shared sample is comparable. Every reason is
spelled out in :attr:`CheckResult.reasons`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._util import json_clean, now_iso
from .options import format_validation_error
from .errors import AttribError, SpecError
from .result import AttributionResult

__all__ = [
    "Ref",
    "parse_ref",
    "Policy",
    "MethodPolicy",
    "load_policy",
    "Attributions",
    "load_ref",
    "compare",
    "CheckResult",
    "MethodReport",
    "RuleResult",
    "CannotCompare",
    "assert_no_regression",
    "log_verdict",
    "LiveCheck",
    "EXIT_CODES",
    "TAG_PREFIX",
]

#: Exit code of each verdict (the CLI exits with it).
EXIT_CODES = {"pass": 0, "regression": 1, "cannot_compare": 2}
#: Prefix of the MLflow run tags :func:`log_verdict` sets.
TAG_PREFIX = "attrib_mlops.check."
#: Artifact folder (under the run's attribution root) of the reports :func:`log_verdict` logs.
CHECKS_DIR = "checks"

Verdict = Literal["pass", "regression", "cannot_compare"]


class CannotCompare(AttribError):
    """The two sides cannot be compared; the message says exactly why (exit code 2)."""


# =========================================================================== references
@dataclass(frozen=True)
class Ref:
    """A parsed REF (see the module docstring for the grammar).

    Attributes:
        kind: ``"mlflow"`` or ``"folder"``.
        text: the REF as given.
        run_id: MLflow run id (``kind == "mlflow"``).
        step: the step asked for; None when not given or ``latest``.
        latest: True when ``@latest`` was written explicitly.
        model: the model asked for (``#model`` / ``@model``), or None.
        path: the results folder (``kind == "folder"``).
    """

    kind: Literal["mlflow", "folder"]
    text: str
    run_id: str | None = None
    step: int | None = None
    latest: bool = False
    model: str | None = None
    path: str | None = None

    def __str__(self) -> str:
        return self.text


def parse_ref(ref: str | Ref) -> Ref:
    """Parse a REF: ``runs:/<run_id>[@<step>|@latest][#<model>]`` or ``<folder>[@<model>]``.

    Raises:
        CannotCompare: malformed reference, or a folder that does not exist.

    Example:
        >>> parse_ref("runs:/0a1b2c@40#ft")
        Ref(kind='mlflow', text='runs:/0a1b2c@40#ft', run_id='0a1b2c', step=40, latest=False, model='ft', path=None)
    """
    if isinstance(ref, Ref):
        return ref
    if not isinstance(ref, (str, os.PathLike)):
        raise CannotCompare(f"a reference must be a string such as 'runs:/<run_id>@<step>', got {type(ref).__name__}")
    text = os.fspath(ref).strip()
    if not text:
        raise CannotCompare("empty reference; expected 'runs:/<run_id>[@<step>|@latest][#<model>]' or a results folder")
    if text.startswith("runs:/"):
        body = text[len("runs:/"):]
        model = None
        if "#" in body:
            body, model = body.rsplit("#", 1)
            if not model:
                raise CannotCompare(f"reference '{text}': empty model name after '#'")
        step, latest = None, False
        if "@" in body:
            body, s = body.rsplit("@", 1)
            if s == "latest":
                latest = True
            elif s.isdigit():
                step = int(s)
            else:
                raise CannotCompare(f"reference '{text}': step '{s}' is neither a non-negative integer nor 'latest'")
        run_id = body.strip("/")
        if not run_id or "/" in run_id:
            raise CannotCompare(f"reference '{text}': expected 'runs:/<run_id>[@<step>|@latest][#<model>]'")
        return Ref("mlflow", text, run_id=run_id, step=step, latest=latest, model=model)
    if "://" in text.split("@")[0] or text.startswith("models:/"):
        raise CannotCompare(f"reference '{text}': only 'runs:/<run_id>...' MLflow references and local results "
                            "folders are supported")
    if Path(text).exists():
        return Ref("folder", text, path=text)
    if "@" in text:
        path, model = text.rsplit("@", 1)
        if Path(path).exists() and model:
            return Ref("folder", text, path=path, model=model)
    raise CannotCompare(f"reference '{text}': no such results folder (and not a 'runs:/<run_id>' reference); "
                        f"working directory: {Path.cwd()}")


# =========================================================================== policy
_RULE_FIELDS = ("min_mean_importance_corr", "min_mean_spearman", "max_topk_changed_share", "min_hit_at_1",
                "max_hit_at_1_drop", "max_hit_at_k_drop", "max_probability_drop")


class MethodPolicy(BaseModel):
    """Per-method overrides of :class:`Policy` thresholds.

    Only the keys written are overridden; writing ``null`` switches a rule off for
    that method. Keys: ``min_mean_importance_corr``, ``min_mean_spearman``,
    ``max_topk_changed_share``, ``min_hit_at_1``, ``max_hit_at_1_drop``,
    ``max_hit_at_k_drop``, ``max_probability_drop``.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    min_mean_importance_corr: float | None = Field(None, ge=-1.0, le=1.0)
    min_mean_spearman: float | None = Field(None, ge=-1.0, le=1.0)
    max_topk_changed_share: float | None = Field(None, ge=0.0, le=1.0)
    min_hit_at_1: float | None = Field(None, ge=0.0, le=1.0)
    max_hit_at_1_drop: float | None = Field(None, ge=-1.0, le=1.0)
    max_hit_at_k_drop: float | None = Field(None, ge=-1.0, le=1.0)
    max_probability_drop: float | None = Field(None, ge=-1.0, le=1.0)


class Policy(BaseModel):
    """Thresholds of a regression check (all keys optional; ``null`` switches a rule off).

    Defaults (the metrics are defined in the module docstring):

    ============================  =======  ==============================================================
    key                           default  rule (regression when violated)
    ============================  =======  ==============================================================
    ``k``                         3        size of the top-k token sets (top-k rule, hit@k)
    ``min_mean_importance_corr``  0.5      mean importance correlation >= value
    ``min_mean_spearman``         None     mean Spearman rank correlation >= value (off by default)
    ``max_topk_changed_share``    0.3      share of samples whose top token left the top-k <= value
    ``min_hit_at_1``              None     candidate ground-truth hit@1 >= value (off by default)
    ``max_hit_at_1_drop``         None     baseline - candidate hit@1 <= value (off by default)
    ``max_hit_at_k_drop``         0.25     baseline - candidate ground-truth hit@k <= value
    ``max_probability_drop``      0.1      baseline - candidate mean target probability <= value
    ``accuracy_tolerance``        0.05     baseline - candidate accuracy <= value (when both are known)
    ``accuracy_metric``           None     MLflow metric holding a run's accuracy (read at the step)
    ``min_samples``               1        fewer comparable samples per method: cannot compare
    ``n_worst``                   5        samples listed per method in the report
    ``methods``                   {}       per-method overrides (:class:`MethodPolicy`)
    ============================  =======  ==============================================================

    Why some rules are off by default (numbers from ``recipes/regression_check.py``, see
    ``docs/regression-checks.md``): over ~20 prompt tokens the rank order of the many
    unimportant tokens is noise, so the mean Spearman correlation of two seeds of the
    same clean model (0.15 to 0.41 across methods) overlaps with that of a clean vs a
    shortcut model (-0.08 to 0.25), and the full top-3 set changes for 78-100% of the
    samples between two seeds; the single most important token can flip between the
    asked key and its value from seed to seed (hit@1 differed by up to 0.5 in a
    variant of the task), while the ground truth stays in the top 3. Switch these
    rules on where your baselines are stable.

    Rules whose inputs are missing (no ground truth, no ``probability`` step score,
    no accuracy) are reported as not evaluated and never fail.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    k: int = Field(3, ge=1)
    min_mean_importance_corr: float | None = Field(0.5, ge=-1.0, le=1.0)
    min_mean_spearman: float | None = Field(None, ge=-1.0, le=1.0)
    max_topk_changed_share: float | None = Field(0.3, ge=0.0, le=1.0)
    min_hit_at_1: float | None = Field(None, ge=0.0, le=1.0)
    max_hit_at_1_drop: float | None = Field(None, ge=-1.0, le=1.0)
    max_hit_at_k_drop: float | None = Field(0.25, ge=-1.0, le=1.0)
    max_probability_drop: float | None = Field(0.1, ge=-1.0, le=1.0)
    accuracy_tolerance: float | None = Field(0.05, ge=0.0, le=1.0)
    accuracy_metric: str | None = None
    min_samples: int = Field(1, ge=1)
    n_worst: int = Field(5, ge=0)
    methods: dict[str, MethodPolicy] = Field(default_factory=dict)

    def for_method(self, method: str) -> dict[str, float | None]:
        """Effective thresholds of one method (defaults overridden by ``methods[method]``)."""
        out = {f: getattr(self, f) for f in _RULE_FIELDS}
        override = self.methods.get(method)
        if override is not None:
            for f in override.model_fields_set:
                out[f] = getattr(override, f)
        return out


def _policy_error(err: ValidationError, where: str) -> SpecError:
    valid = ", ".join(Policy.model_fields)
    return SpecError(format_validation_error(err, where) + f". Valid keys: {valid}; per method: "
                     + ", ".join(MethodPolicy.model_fields))


def _as_policy(policy: Policy | Mapping[str, Any] | str | os.PathLike | None) -> Policy:
    if policy is None:
        return Policy()
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, (str, os.PathLike)):
        return load_policy(policy)
    if isinstance(policy, Mapping):
        try:
            return Policy.model_validate(dict(policy))
        except ValidationError as e:
            raise _policy_error(e, "policy") from None
    raise SpecError(f"policy must be a Policy, a dict or a YAML file path, got {type(policy).__name__}")


def load_policy(path: str | os.PathLike) -> Policy:
    """Read and validate a YAML (or JSON) policy file.

    Raises:
        SpecError: missing/unreadable file, syntax error, unknown key or wrong type (the key is named).
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise SpecError(f"policy file '{p}' not found" + (" (it is a folder)" if p.is_dir() else ""))
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read policy file '{p}': {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise SpecError(f"policy file '{p}' is not valid YAML: {' '.join(str(problem).split())}{at}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"policy file '{p}' must hold a mapping of keys to values, got {type(data).__name__}")
    try:
        return Policy.model_validate(data)
    except ValidationError as e:
        raise _policy_error(e, f"policy file '{p}'") from None


# =========================================================================== loading
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
    from .job import load_local_results

    folder = Path(r.path)
    where = f"folder '{folder}'"
    if not (folder / "manifest.json").is_file():
        raise CannotCompare(f"{side} {where} holds no manifest.json; give the output folder of 'attrib-mlops run'")
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        pairs = load_local_results(folder)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CannotCompare(f"{side} {where} cannot be read: {e}") from None
    models = list(dict.fromkeys(m for m, _ in pairs))
    model = _pick_model(models, r.model, side, where)
    results = {meth: list(res) for (m, meth), res in pairs.items()
               if m == model and (methods is None or meth in methods)}
    gt = _gt_map((manifest.get("probe_set") or {}).get("samples", []))
    return Attributions(results, gt, label=r.text, model=model)


def _load_run(r: Ref, side: str, tracking_uri: str | None, methods: Sequence[str] | None,
              accuracy_metric: str | None, match_step: int | None, reader: Any) -> Attributions:
    from .tracking import AttributionReader, TrackingError

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
                                f"{_short_list(steps)}")
        step = r.step
    elif match_step is not None and not r.latest and int(match_step) in steps:
        step = int(match_step)
    else:
        step = steps[-1]
    entry = next(s for s in manifest["steps"] if int(s["step"]) == step)
    files = entry.get("files", {})
    model = _pick_model(list(files), r.model, side, f"run {run_id} step {step}")
    available = list(files[model])
    wanted = [m for m in available if methods is None or m in methods]
    results: dict[str, list[AttributionResult]] = {}
    for meth in wanted:
        try:
            results[meth] = reader.load(run_id, step, model=model, method=meth)
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


def _short_list(xs: Sequence[Any], n: int = 20) -> str:
    xs = list(xs)
    return "[" + ", ".join(str(x) for x in xs[:n]) + (", ..." if len(xs) > n else "") + "]"


def _as_attributions(x: Any, side: str, tracking_uri: str | None, methods: Sequence[str] | None,
                     policy: Policy) -> Attributions:
    if isinstance(x, Attributions):
        return x
    if isinstance(x, (str, os.PathLike, Ref)):
        return load_ref(x, side=side, tracking_uri=tracking_uri, methods=methods,
                        accuracy_metric=policy.accuracy_metric)
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
            if isinstance(v, AttributionResult):
                v = [v]
            v = list(v)
            if not all(isinstance(r, AttributionResult) for r in v):
                raise TypeError(f"{side}[{k!r}] must be a list of AttributionResult")
            out[str(k)] = v
        return Attributions(out)
    if isinstance(x, Sequence) and all(isinstance(r, AttributionResult) for r in x):
        out: dict[str, list[AttributionResult]] = {}
        for r in x:
            out.setdefault(r.method, []).append(r)
        return Attributions(out)
    raise TypeError(f"{side} must be a REF string, a Ref, Attributions, {{method: [AttributionResult]}} or a list "
                    f"of AttributionResult, got {type(x).__name__}")


# =========================================================================== report types
@dataclass
class RuleResult:
    """One threshold rule: ``value <op> threshold``; ``passed`` is None when not evaluated."""

    name: str
    value: float | None
    op: str
    threshold: float | None
    passed: bool | None
    note: str = ""

    def describe(self) -> str:
        if self.passed is None:
            return f"{self.name}: not evaluated ({self.note})" if self.note else f"{self.name}: not evaluated"
        extra = f"; {self.note}" if self.note else ""
        return f"{self.name} = {_f(self.value)} (required {self.op} {_f(self.threshold)}{extra})"


@dataclass
class MethodReport:
    """What the check found for one method.

    Attributes:
        method: method name.
        verdict: ``pass`` / ``regression`` / ``cannot_compare``.
        n_baseline, n_candidate, n_shared, n_compared: sample counts.
        n_truncated: compared samples whose continuations differ after a common prefix
            (compared on the prefix only).
        skipped: ``[{"id", "reason", "detail"}]`` shared samples not compared.
        metrics: aggregated values (``mean_spearman``, ``topk_changed_share``, ...).
        rules: the evaluated thresholds.
        worst: the samples that moved most (lowest Spearman first), with their tokens.
        reasons: why the method cannot be compared (verdict ``cannot_compare``).
    """

    method: str
    verdict: Verdict
    n_baseline: int = 0
    n_candidate: int = 0
    n_shared: int = 0
    n_compared: int = 0
    n_truncated: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float | None] = field(default_factory=dict)
    rules: list[RuleResult] = field(default_factory=list)
    worst: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def failed_rules(self) -> list[RuleResult]:
        return [r for r in self.rules if r.passed is False]

    @property
    def skipped_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.skipped:
            out[s["reason"]] = out.get(s["reason"], 0) + 1
        return out


@dataclass
class CheckResult:
    """The outcome of :func:`compare`.

    Attributes:
        verdict: ``"pass"``, ``"regression"`` or ``"cannot_compare"``.
        baseline, candidate: ``{"ref", "run_id", "step", "model", "accuracy", "methods"}``.
        methods: one :class:`MethodReport` per compared method.
        rules: global rules (``accuracy_drop``).
        reasons: why the sides cannot be compared (verdict ``cannot_compare``).
        policy: the policy used (as a dict).
        created: ISO time of the check.
    """

    verdict: Verdict
    baseline: dict[str, Any] = field(default_factory=dict)
    candidate: dict[str, Any] = field(default_factory=dict)
    methods: list[MethodReport] = field(default_factory=list)
    rules: list[RuleResult] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    policy: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    # ------------------------------------------------------------ accessors
    @property
    def exit_code(self) -> int:
        """0 pass, 1 regression, 2 cannot compare."""
        return EXIT_CODES[self.verdict]

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def method(self, name: str) -> MethodReport:
        for m in self.methods:
            if m.method == name:
                return m
        raise KeyError(f"no method {name!r} in this check; it has {[m.method for m in self.methods]}")

    @property
    def failed_rules(self) -> list[tuple[str, RuleResult]]:
        """``[(method or "global", rule)]`` of every failed rule."""
        out = [(m.method, r) for m in self.methods for r in m.failed_rules]
        return out + [("global", r) for r in self.rules if r.passed is False]

    def message(self) -> str:
        """One line: the verdict and why."""
        if self.verdict == "cannot_compare":
            return "cannot compare: " + "; ".join(self.reasons)
        if self.verdict == "regression":
            failed = self.failed_rules
            shown = "; ".join(f"{m}: {r.describe()}" for m, r in failed[:3])
            more = f"; and {len(failed) - 3} more failed rule(s)" if len(failed) > 3 else ""
            return f"attribution regression ({len(failed)} failed rule(s)): {shown}{more}"
        n = sum(1 for m in self.methods for r in m.rules if r.passed) + sum(1 for r in self.rules if r.passed)
        return f"attribution check passed ({n} rules over {len(self.methods)} method(s))"

    # ------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["exit_code"] = self.exit_code
        d["format"] = "attrib-mlops/check"
        d["schema_version"] = 1
        return json_clean(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CheckResult:
        def rules(xs):
            return [RuleResult(**x) for x in xs or []]

        methods = []
        for m in d.get("methods", []):
            m = dict(m)
            m["rules"] = rules(m.get("rules"))
            methods.append(MethodReport(**m))
        return cls(verdict=d["verdict"], baseline=dict(d.get("baseline", {})), candidate=dict(d.get("candidate", {})),
                   methods=methods, rules=rules(d.get("rules")), reasons=list(d.get("reasons", [])),
                   policy=dict(d.get("policy", {})), created=d.get("created", ""))

    def to_json(self, indent: int | None = 2) -> str:
        """The machine-readable report (``from_dict(json.loads(...))`` restores it)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> CheckResult:
        return cls.from_dict(json.loads(text))

    def to_junit_xml(self, suite_name: str = "attrib-mlops check") -> str:
        """JUnit XML: one test case per (method, rule); a failed rule is a ``<failure>``,
        a rule not evaluated is ``<skipped>``, a side that cannot be compared is an ``<error>``."""
        cases: list[ET.Element] = []
        n_fail = n_err = n_skip = 0

        def case(classname: str, name: str) -> ET.Element:
            el = ET.Element("testcase", classname=classname, name=name, time="0")
            cases.append(el)
            return el

        for reason in self.reasons:
            if not any(reason in m.reasons for m in self.methods):
                el = case("attrib_mlops.check", "compare")
                ET.SubElement(el, "error", message=reason, type="cannot_compare").text = reason
                n_err += 1
        for m in self.methods:
            cls = f"attrib_mlops.check.{m.method}"
            for reason in m.reasons:
                el = case(cls, "compare")
                ET.SubElement(el, "error", message=reason, type="cannot_compare").text = reason
                n_err += 1
            worst = _worst_text(m, limit=3)
            for r in m.rules:
                el = case(cls, r.name)
                if r.passed is False:
                    n_fail += 1
                    f = ET.SubElement(el, "failure", message=f"{m.method}: {r.describe()}", type="regression")
                    f.text = f"{m.method}: {r.describe()}\n{worst}"
                elif r.passed is None:
                    n_skip += 1
                    ET.SubElement(el, "skipped", message=r.note or "not evaluated")
        for r in self.rules:
            el = case("attrib_mlops.check.global", r.name)
            if r.passed is False:
                n_fail += 1
                ET.SubElement(el, "failure", message=r.describe(), type="regression").text = r.describe()
            elif r.passed is None:
                n_skip += 1
                ET.SubElement(el, "skipped", message=r.note or "not evaluated")
        if not cases:  # keep the file meaningful for CI systems
            case("attrib_mlops.check", "compare")
        root = ET.Element("testsuites", name=suite_name, tests=str(len(cases)), failures=str(n_fail),
                          errors=str(n_err), skipped=str(n_skip))
        suite = ET.SubElement(root, "testsuite", name=suite_name, tests=str(len(cases)), failures=str(n_fail),
                              errors=str(n_err), skipped=str(n_skip), time="0",
                              timestamp=self.created or now_iso())
        props = ET.SubElement(suite, "properties")
        for k, v in (("verdict", self.verdict), ("baseline", self.baseline.get("ref")),
                     ("candidate", self.candidate.get("ref"))):
            ET.SubElement(props, "property", name=k, value=str(v))
        suite.extend(cases)
        ET.SubElement(suite, "system-out").text = self.summary_text()
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

    def summary_text(self) -> str:
        """Human summary: verdict, sides, per method the rules and the samples that regressed most."""
        lines = [f"attribution check: {self.verdict.upper().replace('_', ' ')}"]
        for side in ("baseline", "candidate"):
            d = getattr(self, side)
            about = [f"step {d['step']}" if d.get("step") is not None else "",
                     f"model '{d['model']}'" if d.get("model") else "",
                     f"accuracy {_f(d['accuracy'])}" if d.get("accuracy") is not None else ""]
            about = ", ".join(a for a in about if a)
            lines.append(f"  {side:<9}: {d.get('ref', '?')}" + (f" ({about})" if about else ""))
        for reason in self.reasons:
            lines.append(f"  cannot compare: {reason}")
        for r in self.rules:
            lines.append(f"  {_mark(r)} {r.describe()}")
        for m in self.methods:
            lines.append("")
            head = (f"method {m.method}: {m.verdict.upper().replace('_', ' ')} -- {m.n_compared} of {m.n_shared} "
                    f"shared samples compared")
            if m.n_truncated:
                head += f" ({m.n_truncated} on a common target prefix only)"
            lines.append(head)
            if m.skipped:
                counts = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in m.skipped_counts.items())
                lines.append(f"  skipped {len(m.skipped)}: {counts}")
            for reason in m.reasons:
                lines.append(f"  cannot compare: {reason}")
            for r in m.rules:
                lines.append(f"  {_mark(r)} {r.describe()}")
            if m.worst and m.verdict == "regression":
                lines.append("  samples that changed most:")
                lines.append(_worst_text(m, indent="    "))
        return "\n".join(lines)


def _mark(r: RuleResult) -> str:
    return {True: "pass", False: "FAIL", None: "----"}[r.passed]


def _worst_text(m: MethodReport, limit: int | None = None, indent: str = "  ") -> str:
    out = []
    for w in m.worst[:limit]:
        before = " ".join(f"{t['token']}@{t['pos']}" for t in w["top_baseline"])
        after = " ".join(f"{t['token']}@{t['pos']}" for t in w["top_candidate"])
        parts = [f"importance corr {_f(w['importance_corr'])}", f"spearman {_f(w['spearman'])}",
                 f"top tokens {before} -> {after}"]
        if w.get("truth_tokens"):
            parts.append(f"truth {' '.join(w['truth_tokens'])}")
        parts.append(f"target '{' '.join(w['target_tokens']).strip()}'")
        if w.get("probability_baseline") is not None or w.get("probability_candidate") is not None:
            parts.append(f"p {_f(w.get('probability_baseline'))} -> {_f(w.get('probability_candidate'))}")
        out.append(f"{indent}{w['id']}: " + "; ".join(parts))
        out.append(f"{indent}  prompt: {' '.join(w['prompt_tokens'])}")
    return "\n".join(out)


def _f(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.3f}"
    return str(x)


# =========================================================================== comparison
def _by_id(results: Sequence[AttributionResult]) -> dict[str, AttributionResult]:
    out: dict[str, AttributionResult] = {}
    for i, r in enumerate(results):
        sid = str(r.sample_id) if r.sample_id is not None else str(i)
        out.setdefault(sid, r)
    return out


def _first_diff(a: Sequence[str], b: Sequence[str]) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"position {i}: {x!r} vs {y!r}"
    return f"lengths {len(a)} vs {len(b)}"


def _truncate(r: AttributionResult, p: int) -> AttributionResult:
    """The result restricted to the first ``p`` target tokens (and the source rows they can see)."""
    n_prompt = int(r.n_prompt)
    rows = n_prompt + p if r.is_decoder_only else len(r.source_tokens)
    return dataclasses.replace(
        r, matrix=r.matrix[:rows, :p], source_tokens=r.source_tokens[:rows], target_tokens=r.target_tokens[:p],
        step_scores={k: v[:p] for k, v in r.step_scores.items()}, n_prompt=n_prompt,
    )


def _importance(r: AttributionResult) -> np.ndarray:
    """``|I(x_i)|`` per source row (NaN for rows without a defined cell)."""
    from .analysis import source_importance

    return np.abs(source_importance(r)).astype(np.float64)


def _importance_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two importance vectors over the rows defined in both.

    Dominated by the tokens that carry the mass, unlike a rank correlation. A constant
    vector has no correlation: 1.0 if both are constant, 0.0 if one is; NaN if nothing is defined.
    """
    keep = ~(np.isnan(a) | np.isnan(b))
    x, y = a[keep], b[keep]
    if x.size == 0:
        return math.nan
    cx, cy = x.size < 2 or np.ptp(x) == 0, y.size < 2 or np.ptp(y) == 0
    if cx or cy:
        return 1.0 if cx and cy else 0.0
    return float(np.clip(np.corrcoef(x, y)[0, 1], -1.0, 1.0))


def _topk(r: AttributionResult, imp: np.ndarray, k: int) -> list[dict[str, Any]]:
    """The ``k`` most important source tokens (position, token, share of the total importance)."""
    defined = ~np.isnan(imp)
    total = float(imp[defined].sum()) if defined.any() else 0.0
    order = np.argsort(-np.where(defined, imp, -np.inf), kind="stable")
    return [{"pos": int(i), "token": r.source_tokens[i], "share": float(imp[i] / total) if total else None}
            for i in order[: min(k, int(defined.sum()))]]


def _nanmean(xs: Sequence[float | None]) -> float | None:
    a = np.array([x for x in xs if x is not None], dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else None


def _rule(name: str, value: float | None, op: str, threshold: float | None, missing: str = "",
          context: str = "") -> RuleResult | None:
    if threshold is None:
        return None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return RuleResult(name, None, op, threshold, None, missing or "no defined values")
    passed = value >= threshold if op == ">=" else value <= threshold
    return RuleResult(name, float(value), op, float(threshold), bool(passed), context)


def _compare_method(method: str, base: Sequence[AttributionResult], cand: Sequence[AttributionResult],
                    gt: Mapping[str, list[int]], policy: Policy) -> MethodReport:
    from .analysis import common_prefix_alignment, drift, ground_truth_alignment, mean_target_probability

    b, c = _by_id(base), _by_id(cand)
    shared = [sid for sid in b if sid in c]
    rep = MethodReport(method, "pass", n_baseline=len(b), n_candidate=len(c), n_shared=len(shared))
    if not shared:
        rep.verdict = "cannot_compare"
        rep.reasons.append(f"method '{method}': no shared samples (baseline ids {_short_list(list(b), 5)}, "
                           f"candidate ids {_short_list(list(c), 5)})")
        return rep
    k = policy.k
    rows: list[dict[str, Any]] = []
    for sid in shared:
        rb, rc = b[sid], c[sid]
        if rb.prompt_tokens != rc.prompt_tokens or int(rb.n_prompt) != int(rc.n_prompt):
            rep.skipped.append({"id": sid, "reason": "different_prompt_tokens",
                                "detail": _first_diff(rb.prompt_tokens, rc.prompt_tokens)})
            continue
        p = common_prefix_alignment(rb.target_tokens, rc.target_tokens)
        if p == 0:
            rep.skipped.append({"id": sid, "reason": "different_continuation",
                                "detail": _first_diff(rb.target_tokens, rc.target_tokens)})
            continue
        truncated = p < len(rb.target_tokens) or p < len(rc.target_tokens)
        if truncated:
            rb, rc = _truncate(rb, p), _truncate(rc, p)
        ib, ic = _importance(rb), _importance(rc)
        d = drift(rb, rc, k=k)
        row: dict[str, Any] = {"id": sid, "importance_corr": _importance_corr(ib, ic), "spearman": d["spearman"],
                               "topk_overlap": d["topk_overlap"], "js": d["js"], "truncated": truncated}
        tb, tc = _topk(rb, ib, k), _topk(rc, ic, k)
        row["top_baseline"], row["top_candidate"] = tb, tc
        row["topk_set_changed"] = {t["pos"] for t in tb} != {t["pos"] for t in tc}
        row["topk_changed"] = bool(tb) and tb[0]["pos"] not in {t["pos"] for t in tc}
        truth = gt.get(sid)
        row["truth_tokens"] = []
        if truth:
            try:
                hits = {(name, kk): ground_truth_alignment(r, truth, k=kk)[f"hit@{kk}"]
                        for name, r in (("baseline", rb), ("candidate", rc)) for kk in (1, k)}
            except AttribError:  # positions out of range (e.g. another tokenisation of the prompt)
                pass
            else:
                row["hit_baseline"], row["hit_candidate"] = hits["baseline", 1], hits["candidate", 1]
                row["hit_k_baseline"], row["hit_k_candidate"] = hits["baseline", k], hits["candidate", k]
                row["truth_tokens"] = [f"{rb.source_tokens[q]}@{q}" for q in truth]
        for name, r in (("baseline", rb), ("candidate", rc)):
            if "probability" in r.step_scores:
                row[f"probability_{name}"] = mean_target_probability(r)
        row["prompt_tokens"] = rb.prompt_tokens
        row["target_tokens"] = rb.target_tokens
        rows.append(row)
        rep.n_truncated += int(truncated)
    rep.n_compared = len(rows)
    if not rows:
        rep.verdict = "cannot_compare"
        counts = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in rep.skipped_counts.items())
        rep.reasons.append(f"method '{method}': none of the {len(shared)} shared samples is comparable ({counts}); "
                           "different tokenisation or continuations are never compared cell by cell")
        return rep
    if len(rows) < policy.min_samples:
        rep.verdict = "cannot_compare"
        rep.reasons.append(f"method '{method}': only {len(rows)} comparable samples, the policy needs "
                           f"min_samples={policy.min_samples}")
        return rep

    def mean(key: str, subset: Sequence[dict[str, Any]] = rows) -> float | None:
        return _nanmean([r.get(key) for r in subset])

    def drop(a: float | None, b: float | None) -> float | None:
        return a - b if a is not None and b is not None else None

    m: dict[str, float | None] = {}
    m["mean_importance_corr"] = mean("importance_corr")
    m["mean_spearman"] = mean("spearman")
    m["mean_topk_overlap"] = mean("topk_overlap")
    m["mean_js"] = mean("js")
    m["topk_changed_share"] = float(np.mean([r["topk_changed"] for r in rows]))
    m["topk_set_changed_share"] = float(np.mean([r["topk_set_changed"] for r in rows]))
    with_gt = [r for r in rows if "hit_baseline" in r]
    m["n_ground_truth"] = float(len(with_gt))
    m["hit_at_1_baseline"], m["hit_at_1"] = mean("hit_baseline", with_gt), mean("hit_candidate", with_gt)
    m["hit_at_1_drop"] = drop(m["hit_at_1_baseline"], m["hit_at_1"])
    m["hit_at_k_baseline"], m["hit_at_k"] = mean("hit_k_baseline", with_gt), mean("hit_k_candidate", with_gt)
    m["hit_at_k_drop"] = drop(m["hit_at_k_baseline"], m["hit_at_k"])
    with_p = [r for r in rows if "probability_baseline" in r and "probability_candidate" in r]
    m["probability_baseline"], m["probability"] = mean("probability_baseline", with_p), mean(
        "probability_candidate", with_p)
    m["probability_drop"] = drop(m["probability_baseline"], m["probability"])
    rep.metrics = m

    th = policy.for_method(method)
    no_gt = "no ground truth for the compared samples"
    no_p = "no 'probability' step scores on both sides"

    def ctx(a: str, b: str) -> str:
        return f"baseline {_f(m[a])}, candidate {_f(m[b])}"

    rules = [
        _rule("mean_importance_corr", m["mean_importance_corr"], ">=", th["min_mean_importance_corr"]),
        _rule("mean_spearman", m["mean_spearman"], ">=", th["min_mean_spearman"]),
        _rule("topk_changed_share", m["topk_changed_share"], "<=", th["max_topk_changed_share"]),
        _rule("hit_at_1", m["hit_at_1"], ">=", th["min_hit_at_1"], no_gt),
        _rule("hit_at_1_drop", m["hit_at_1_drop"], "<=", th["max_hit_at_1_drop"], no_gt,
              ctx("hit_at_1_baseline", "hit_at_1")),
        _rule(f"hit_at_{k}_drop", m["hit_at_k_drop"], "<=", th["max_hit_at_k_drop"], no_gt,
              ctx("hit_at_k_baseline", "hit_at_k")),
        _rule("probability_drop", m["probability_drop"], "<=", th["max_probability_drop"], no_p,
              ctx("probability_baseline", "probability")),
    ]
    rep.rules = [r for r in rules if r is not None]
    rep.verdict = "regression" if rep.failed_rules else "pass"

    def key(r: dict[str, Any]) -> tuple[float, float]:  # most changed first: lowest importance correlation
        a, o = r["importance_corr"], r["topk_overlap"]
        return (math.inf if a is None or math.isnan(a) else a, math.inf if o is None or math.isnan(o) else o)

    keep = ("id", "importance_corr", "spearman", "topk_overlap", "js", "truncated", "topk_changed",
            "topk_set_changed", "top_baseline", "top_candidate", "hit_baseline", "hit_candidate", "hit_k_baseline",
            "hit_k_candidate", "truth_tokens", "probability_baseline", "probability_candidate", "prompt_tokens",
            "target_tokens")
    rep.worst = [{kk: r.get(kk) for kk in keep} for r in sorted(rows, key=key)[: policy.n_worst]]
    return rep


def compare(
    baseline: Any,
    candidate: Any,
    policy: Policy | Mapping[str, Any] | str | os.PathLike | None = None,
    methods: Sequence[str] | None = None,
    *,
    tracking_uri: str | None = None,
    ground_truth: Mapping[str, Sequence[int]] | None = None,
    baseline_accuracy: float | None = None,
    candidate_accuracy: float | None = None,
) -> CheckResult:
    """Compare the candidate's attribution to the baseline's under ``policy``.

    Args:
        baseline, candidate: a REF string (``runs:/<run_id>@<step>``, a results folder,
            see the module docstring), a :class:`Ref`, :class:`Attributions`,
            ``{method: [AttributionResult]}``, or a flat list of results (grouped by method).
        policy: :class:`Policy`, a dict of policy keys, or the path of a YAML policy file
            (default: ``Policy()``).
        methods: compare only these (default: every method of either side; a method present
            on one side only makes the check ``cannot_compare``).
        tracking_uri: MLflow tracking URI for ``runs:/`` references.
        ground_truth: ``{sample_id: source positions}``, added to what the sides carry.
        baseline_accuracy, candidate_accuracy: accuracies for the ``accuracy_drop`` rule.

    Returns:
        :class:`CheckResult`. Problems with the sides (unknown run, missing step or method,
        nothing shared or comparable) give ``verdict == "cannot_compare"`` with the reasons;
        this function does not raise :class:`CannotCompare`.

    Raises:
        SpecError: an invalid policy.
    """
    pol = _as_policy(policy)
    if isinstance(methods, str):
        methods = [methods]
    methods = list(dict.fromkeys(methods)) if methods else None
    result = CheckResult("pass", policy=pol.model_dump(mode="json"), created=now_iso())
    sides: dict[str, Attributions] = {}
    for side, x in (("baseline", baseline), ("candidate", candidate)):
        label = str(x) if isinstance(x, (str, os.PathLike, Ref)) else "in-memory"
        try:
            sides[side] = _as_attributions(x, side, tracking_uri, methods, pol)
        except CannotCompare as e:
            result.reasons.append(str(e))
            setattr(result, side, {"ref": label})
        else:
            setattr(result, side, sides[side].describe())
    if result.reasons:
        result.verdict = "cannot_compare"
        return result
    b, c = sides["baseline"], sides["candidate"]
    wanted = methods or list(dict.fromkeys(list(b.results) + list(c.results)))
    if not wanted:
        result.reasons.append("neither side holds any attribution results")
    for meth in wanted:
        missing = [s for s, a in (("baseline", b), ("candidate", c)) if meth not in a.results]
        for s in missing:
            other = sorted((b if s == "baseline" else c).results)
            hint = "" if methods else "; pass the methods both sides have with --method / methods=[...]"
            result.reasons.append(f"method '{meth}' is missing on the {s} side ({s} has {other}){hint}")
    if result.reasons:
        result.verdict = "cannot_compare"
        return result

    gt: dict[str, list[int]] = dict(c.ground_truth)
    gt.update(b.ground_truth)
    for sid, pos in (ground_truth or {}).items():
        gt[str(sid)] = [int(p) for p in pos]
    for meth in wanted:
        rep = _compare_method(meth, b.results[meth], c.results[meth], gt, pol)
        result.methods.append(rep)
        result.reasons.extend(rep.reasons)

    acc_b = baseline_accuracy if baseline_accuracy is not None else b.accuracy
    acc_c = candidate_accuracy if candidate_accuracy is not None else c.accuracy
    result.baseline["accuracy"], result.candidate["accuracy"] = acc_b, acc_c
    if pol.accuracy_tolerance is not None and acc_b is not None and acc_c is not None:
        result.rules.append(_rule("accuracy_drop", float(acc_b) - float(acc_c), "<=", pol.accuracy_tolerance))

    if result.reasons:
        result.verdict = "cannot_compare"
    elif result.failed_rules:
        result.verdict = "regression"
    return result


def assert_no_regression(baseline: Any, candidate: Any, policy: Any = None, methods: Sequence[str] | None = None,
                         **kwargs: Any) -> CheckResult:
    """:func:`compare`, then fail loudly: ``AssertionError`` with the readable summary on a
    regression, :class:`CannotCompare` (with the reasons) when the sides cannot be compared.

    Returns the :class:`CheckResult` when the check passes.
    """
    result = compare(baseline, candidate, policy, methods, **kwargs)
    if result.verdict == "cannot_compare":
        raise CannotCompare("; ".join(result.reasons))
    if result.verdict == "regression":
        raise AssertionError(result.message() + "\n\n" + result.summary_text())
    return result


# =========================================================================== logging back
def log_verdict(result: CheckResult, run_id: str, tracking_uri: str | None = None, *, client: Any = None) -> str:
    """Record a check on an MLflow run: tags and the reports as artifacts.

    Tags: ``attrib_mlops.check.verdict``, ``.exit_code``, ``.baseline`` (REF),
    ``.baseline_step``, ``.step`` (candidate step), ``.failed`` (``method:rule`` list, or
    ``-``), ``.report`` (artifact folder). Artifacts under
    ``<attribution root>/checks/step-<candidate step>/`` (``checks/latest/`` without a step):
    ``report.json``, ``junit.xml`` and ``summary.txt``; a later check of the same step replaces them.

    Returns:
        The artifact folder the reports went to.
    """
    if client is None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
    from .tracking import layout as L

    run = client.get_run(run_id)
    root = run.data.tags.get(L.TAG_ARTIFACT_ROOT) or L.DEFAULT_ROOT
    step = result.candidate.get("step")
    folder = L.join(root, CHECKS_DIR, f"step-{int(step):010d}" if step is not None else "latest")
    with tempfile.TemporaryDirectory(prefix="attrib-check-") as tmp:
        (Path(tmp) / "report.json").write_text(result.to_json(), encoding="utf-8")
        (Path(tmp) / "junit.xml").write_text(result.to_junit_xml(), encoding="utf-8")
        (Path(tmp) / "summary.txt").write_text(result.summary_text() + "\n", encoding="utf-8")
        client.log_artifacts(run_id, tmp, artifact_path=folder)
    failed = ",".join(f"{m}:{r.name}" for m, r in result.failed_rules) or "-"
    tags = {
        "verdict": result.verdict,
        "exit_code": str(result.exit_code),
        "baseline": str(result.baseline.get("ref", "")),
        "baseline_step": str(result.baseline.get("step", "")),
        "step": str(step if step is not None else ""),
        "failed": failed[:4000],
        "report": folder,
        "checked": result.created or now_iso(),
    }
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(TAG_PREFIX + k, v) for k, v in tags.items()])
    return folder


# =========================================================================== live check
class LiveCheck:
    """Compare freshly computed results with a baseline run during training (used by the callbacks).

    Which baseline step: a REF with an explicit step (``runs:/<id>@200``) always uses that step;
    ``@latest`` always the baseline's last step; a REF without a step (``runs:/<id>``) the same
    step as the one being checked when the baseline has it, else the baseline's last step. The
    baseline of a step is loaded once and kept in memory. A results folder works as a baseline too.
    """

    def __init__(self, baseline: str | Ref, policy: Any = None, tracking_uri: str | None = None,
                 methods: Sequence[str] | None = None):
        self.ref = parse_ref(baseline)
        self.policy = _as_policy(policy)
        self.tracking_uri = tracking_uri
        self.methods = list(methods) if methods else None
        self._reader = None
        self._cache: dict[int | None, Attributions] = {}

    def baseline(self, step: int | None) -> Attributions:
        """The baseline results to compare ``step`` with (loaded once per baseline step)."""
        if self.ref.kind == "mlflow" and self._reader is None:
            from .tracking import AttributionReader

            self._tmp = tempfile.TemporaryDirectory(prefix="attrib-live-check-")  # removed with this object
            self._reader = AttributionReader(self.tracking_uri, cache_dir=self._tmp.name)
        key = None  # the one baseline step of a folder, an explicit step or @latest
        if self.ref.kind == "mlflow" and self.ref.step is None and not self.ref.latest and step is not None:
            try:  # resolve first, so that steps the baseline lacks share its latest step's entry
                steps = self._reader.steps(self.ref.run_id)
                key = int(step) if int(step) in steps or not steps else steps[-1]
            except AttribError:
                key = int(step)  # load_ref below raises CannotCompare with the reason
        if key not in self._cache:
            self._cache[key] = load_ref(self.ref, side="baseline", tracking_uri=self.tracking_uri,
                                        methods=self.methods, match_step=key, reader=self._reader)
        return self._cache[key]

    def check(self, step: int, results: Sequence[AttributionResult] | Mapping[str, Sequence[AttributionResult]],
              ground_truth: Mapping[str, Sequence[int]] | None = None) -> CheckResult:
        """:func:`compare` the baseline (see the class docstring) with ``results`` of ``step``."""
        base = self.baseline(int(step))
        cand = _as_attributions(results, "candidate", None, None, self.policy)
        cand = dataclasses.replace(cand, label=f"in-memory step {int(step)}", step=int(step),
                                   results={m: v for m, v in cand.results.items()
                                            if self.methods is None or m in self.methods})
        if ground_truth:
            cand.ground_truth = {str(k): [int(p) for p in v] for k, v in ground_truth.items()}
        return compare(base, cand, self.policy, self.methods)
