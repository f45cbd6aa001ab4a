"""The check during training and after it: :class:`LiveCheck` (used by the callbacks) and
:func:`log_verdict` (a check's verdict and reports recorded on the candidate's MLflow run).

Example:
    >>> live = LiveCheck("runs:/<baseline run>", policy={"max_probability_drop": 0.2})  # doctest: +SKIP
    >>> live.check(step=200, results=results).verdict                                   # doctest: +SKIP
    'pass'
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._util import now_iso
from ..errors import AttribError
from ..result import AttributionResult
from .compare import compare
from .loaders import Attributions, as_attributions, load_ref
from .policy import as_policy
from .refs import Ref, parse_ref
from .report import CheckResult

__all__ = ["TAG_PREFIX", "CHECKS_DIR", "log_verdict", "LiveCheck"]

#: Prefix of the MLflow run tags :func:`log_verdict` sets.
TAG_PREFIX = "attrib_mlops.check."
#: Artifact folder (under the run's attribution root) of the reports :func:`log_verdict` logs.
CHECKS_DIR = "checks"


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
    from ..tracking import layout as L

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
        self.policy = as_policy(policy)
        self.tracking_uri = tracking_uri
        self.methods = list(methods) if methods else None
        self._reader = None
        self._cache: dict[int | None, Attributions] = {}

    def baseline(self, step: int | None) -> Attributions:
        """The baseline results to compare ``step`` with (loaded once per baseline step)."""
        if self.ref.kind == "mlflow" and self._reader is None:
            from ..tracking import AttributionReader

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
        cand = as_attributions(results, "candidate", None, None)
        cand = dataclasses.replace(cand, label=f"in-memory step {int(step)}", step=int(step),
                                   results={m: v for m, v in cand.results.items()
                                            if self.methods is None or m in self.methods})
        if ground_truth:
            cand.ground_truth = {str(k): [int(p) for p in v] for k, v in ground_truth.items()}
        return compare(base, cand, self.policy, self.methods)
