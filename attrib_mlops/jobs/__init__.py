"""Jobs: models x methods x samples x options, cached on disk and written to sinks.

``spec`` validates job specs, ``cache`` hashes content and caches results,
``kinds`` says what a job does per attribution kind, ``executor`` computes work
units, ``runner`` runs a job (cache, sinks, progress, status), ``sinks`` holds
the sink protocol and the MLflow step sink. See :func:`run_job`.

Example:
    >>> from attrib_mlops.jobs import load_job, run_job                    # doctest: +SKIP
    >>> run_job(load_job("recipes/job_keyvalue.yaml"), progress=False).status  # doctest: +SKIP
    'FINISHED'
"""

from __future__ import annotations

from ..analysis.summary import summarize_results
from ..tracking.folder import LocalFolderSink, load_local_results
from .cache import ResultCache, cache_key, model_fingerprint, tokenizer_fingerprint
from .executor import Executor, LocalExecutor, WorkUnit
from .kinds import TaskKind, task_kind
from .runner import JobEvent, JobOutcome, PairOutcome, run_job
from .sinks import ResultSink, StepSink
from .spec import JobSpec, ModelSpec, SamplesSpec, load_job, parse_job

__all__ = [
    "ModelSpec",
    "SamplesSpec",
    "JobSpec",
    "load_job",
    "parse_job",
    "ResultCache",
    "cache_key",
    "model_fingerprint",
    "tokenizer_fingerprint",
    "ResultSink",
    "LocalFolderSink",
    "StepSink",
    "load_local_results",
    "summarize_results",
    "PairOutcome",
    "JobOutcome",
    "JobEvent",
    "Executor",
    "LocalExecutor",
    "WorkUnit",
    "TaskKind",
    "task_kind",
    "run_job",
]
