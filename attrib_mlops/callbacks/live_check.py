"""The training hooks' live regression check: compare each logged step with a baseline run.

:class:`LiveCheckHook` wraps :class:`attrib_mlops.check.LiveCheck` for the monitor:
it runs the check on the results of a logged step, logs the verdict as the metric
``attrib/check/pass`` (``attrib/<model>/check/pass`` for a named model) at that
step, remembers the last verdict and whether a regression was ever found, and
tells the HF callback when to stop training (``stop_on_regression``). A check
that cannot run is logged and skipped like an attribution failure.

Example:
    >>> hook = LiveCheckHook("runs:/abc123", None, tracking_uri=uri, methods=["saliency"])  # doctest: +SKIP
    >>> hook.check(200, results, probe, client, run_id, "model", strict=False, failures=[])  # doctest: +SKIP
    >>> hook.regressed                                                                        # doctest: +SKIP
    False
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger("attrib_mlops.callbacks")

__all__ = ["LiveCheckHook"]


class LiveCheckHook:
    """A baseline check at every logged step (see the module docstring).

    Args:
        baseline_run: a REF (``runs:/<run_id>``, ``runs:/<run_id>@<step>``, ``@latest`` or a results folder).
        check_policy: :class:`~attrib_mlops.check.Policy`, dict or YAML path (default policy).
        tracking_uri: where the baseline run lives.
        methods: the monitored methods (checked against the baseline now, not mid-training).
        stop_on_regression: :meth:`should_stop` answers True after a regression at that step.

    Raises:
        AttribError: a malformed REF or policy (at once, not mid-training).
    """

    def __init__(self, baseline_run: str, check_policy: Any = None, *, tracking_uri: str | None = None,
                 methods: Sequence[str] = (), stop_on_regression: bool = False) -> None:
        from ..check import LiveCheck

        self.baseline_run = baseline_run
        self.check_policy = check_policy
        self.stop_on_regression = bool(stop_on_regression)
        self.last_check = None  # CheckResult of the last checked step
        self.regressed = False  # True once a check found a regression
        self._live = LiveCheck(baseline_run, check_policy, tracking_uri=tracking_uri, methods=list(methods))

    def check(self, step: int, results: Any, probe: Any, client: Any, run_id: str | None, model_name: str, *,
              strict: bool, failures: list[tuple[int, str]]) -> None:
        """Compare ``results`` with the baseline; log ``attrib/check/pass`` at ``step``.

        A check that cannot run (baseline unreadable, nothing comparable) is appended to
        ``failures`` and skipped (``strict=True`` raises).
        """
        from ..check import CannotCompare
        from ..tracking.layout import metric_key

        try:
            gt = {s.id: s.ground_truth for s in probe if s.ground_truth}
            result = self._live.check(step, results, ground_truth=gt)
            self.last_check = result
            if result.verdict == "cannot_compare":
                raise CannotCompare("; ".join(result.reasons))
            if result.verdict == "regression":
                self.regressed = True
                logger.warning("attribution regression at step %d against %s: %s", step, self.baseline_run,
                               result.message())
            if client is not None:
                from mlflow.entities import Metric

                value = 1.0 if result.verdict == "pass" else 0.0
                key = metric_key("check", "pass", model_name)
                client.log_batch(run_id, metrics=[Metric(key, value, int(time.time() * 1000), step)])
        except Exception as e:  # noqa: BLE001 - never crash the user's training
            if strict:
                raise
            failures.append((step, f"check: {type(e).__name__}: {e}"))
            logger.warning("attribution check at step %d failed and was skipped (strict=False): %s", step, e)

    def should_stop(self, step: int) -> bool:
        """True when ``stop_on_regression`` is on and the check of ``step`` found a regression."""
        check = self.last_check
        return (self.stop_on_regression and check is not None and check.candidate.get("step") == step
                and check.verdict == "regression")
