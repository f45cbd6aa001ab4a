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

Layout: ``refs`` (REF grammar), ``loaders`` (the two sides), ``rules`` and ``policy``
(thresholds, derived from the metric registry), ``compare`` (the check, per method by the
results' kind), ``token_matrix`` (the token-matrix kind's check), ``report`` (JSON, JUnit,
text), ``live`` (the live check of the callbacks, logging a verdict to MLflow).

Verdicts and exit codes: ``pass`` (0) every evaluated rule holds; ``regression``
(1) at least one rule fails; ``cannot_compare`` (2) a side cannot be loaded
(unknown run id, step not logged, not a results folder), a method is missing on
one side, no sample is shared, or no shared sample is comparable. Every reason is
spelled out in :attr:`CheckResult.reasons`.
"""

from __future__ import annotations

from .compare import assert_no_regression, compare
from .live import CHECKS_DIR, TAG_PREFIX, LiveCheck, log_verdict
from .loaders import Attributions, load_ref
from .policy import MethodPolicy, Policy, load_policy
from .refs import CannotCompare, Ref, parse_ref
from .report import EXIT_CODES, CheckResult, MethodReport
from .rules import RuleResult

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
    "CHECKS_DIR",
]
