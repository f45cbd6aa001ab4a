"""The attribution job service: a FastAPI app (REST + WebSocket) over the job runner, records in MLflow.

``app`` builds the FastAPI app, ``registry`` keeps the jobs (one MLflow run each) and
runs them, ``results`` shapes the result document, ``events`` carries progress to
WebSocket clients, ``auth`` checks tokens and bind addresses, ``serve`` is the
``attrib-mlops serve`` command. Needs the ``[service]`` extra.

Example:
    >>> from attrib_mlops.service import JobRegistry, create_app                       # doctest: +SKIP
    >>> app = create_app(JobRegistry(tracking_uri="sqlite:///mlflow.db", workdir="svc"), token=None)  # doctest: +SKIP
"""

from __future__ import annotations

from .app import create_app
from .registry import JobConflict, JobNotFound, JobRegistry

__all__ = ["create_app", "JobRegistry", "JobNotFound", "JobConflict"]
