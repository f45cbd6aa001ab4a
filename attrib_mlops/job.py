"""Former home of the job runner; the names live in :mod:`attrib_mlops.jobs` now (kept for existing imports).

Example:
    >>> from attrib_mlops.job import run_job, JobSpec   # same objects as attrib_mlops.jobs.*
"""

from __future__ import annotations

from .jobs import *  # noqa: F403 - this module only hands the names on
from .jobs import __all__  # noqa: F401
