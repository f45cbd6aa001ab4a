"""Former home of the job runner; the names live in :mod:`attrib_mlops.jobs` now (kept for existing imports).

Example:
    >>> from attrib_mlops.job import run_job, JobSpec   # same objects as attrib_mlops.jobs.*
"""

from __future__ import annotations

from .jobs import (
    JobOutcome,
    JobSpec,
    LocalFolderSink,
    ModelSpec,
    PairOutcome,
    ResultCache,
    ResultSink,
    SamplesSpec,
    cache_key,
    load_job,
    load_local_results,
    model_fingerprint,
    parse_job,
    run_job,
    summarize_results,
    tokenizer_fingerprint,
)

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
    "load_local_results",
    "summarize_results",
    "PairOutcome",
    "JobOutcome",
    "run_job",
]
