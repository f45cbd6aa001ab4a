"""The job service's HTTP API (FastAPI): create, watch, fetch and cancel attribution jobs.

==========================================  =================================================
``POST /api/jobs``                          a job spec as JSON (the YAML's keys), optionally
                                            ``inputs`` (inline samples); 201 ``{"id", "status"}``;
                                            422 names the bad key
``GET /api/jobs``                           the service's jobs, newest first
``GET /api/jobs/{id}/status``               ``{"status": QUEUED|RUNNING|FINISHED|FAILED|KILLED,
                                            "progress": 0..1, "message", "error", ...}``
``GET /api/jobs/{id}/results``              the seed's result document
                                            (:mod:`attrib_mlops.service.results`), ``?offset=&limit=``
``DELETE /api/jobs/{id}``                   cancel (KILLED in MLflow; cached results kept)
``WS /api/ws/jobs/{id}``                    status and progress events until the job is over
``GET /api/health``                         ``{"status": "ok"}`` (no token needed)
``GET /docs``, ``/redoc``, ``/openapi.json`` API documentation, served from local files
==========================================  =================================================

Errors are JSON ``{"detail": "..."}``: 401 without the bearer token, 404 for an
unknown job id, 409 for results of an unfinished job or cancelling a finished one,
422 for an invalid spec. The documentation pages load Swagger UI and ReDoc from the
``fastapi-offline`` package's files, never from a CDN, and are open (they describe
the API, they hold no data); everything under ``/api`` except ``/api/health`` needs
the token when the service has one.

Example:
    >>> from attrib_mlops.service import JobRegistry, create_app                      # doctest: +SKIP
    >>> app = create_app(JobRegistry(tracking_uri="sqlite:///mlflow.db", workdir="svc"), token=None)  # doctest: +SKIP
    >>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8000)                 # doctest: +SKIP
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route signatures' annotations,
# which refer to names imported inside create_app (fastapi is imported only when an app is built).
import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Any

from ..errors import AttribError, SpecError
from .auth import token_matches
from .events import FINAL_STATUSES, EventHub
from .registry import JobConflict, JobNotFound, JobRegistry

__all__ = ["create_app", "job_request_schema"]

_EXAMPLE = {
    "name": "tiny-check",
    "models": [{"name": "tiny", "ref": "models/tiny-kv"}],
    "methods": ["saliency", "integrated_gradients"],
    "inputs": [{"id": "s0", "prompt": "k3 = v7 ; k1 = v2 ; k3 ?", "target": " v7"}],
    "options": {"batch_size": 8},
}


def job_request_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """JSON schema of a job request (the job spec plus ``inputs``) and the component schemas it refers to."""
    from ..jobs.spec import JobSpec

    schema = JobSpec.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    schema["properties"]["samples"] = {**schema["properties"]["samples"],
                                       "description": "Where the samples come from (optional with 'inputs')."}
    schema["required"] = [k for k in schema.get("required", []) if k != "samples"]
    schema["properties"]["inputs"] = {
        "description": "Inline samples (instead of samples.source): prompts, or objects with id, prompt, "
                       "target and ground_truth (prompt-token positions).",
        "type": "array",
        "items": {"anyOf": [{"type": "string"}, {
            "type": "object", "additionalProperties": False, "required": ["prompt"],
            "properties": {"id": {"type": "string"}, "prompt": {"type": "string"}, "target": {"type": "string"},
                           "ground_truth": {"type": "array", "items": {"type": "integer"}}}}]},
    }
    schema["example"] = _EXAMPLE
    return schema, defs


def create_app(registry: JobRegistry, token: str | None, *, title: str = "attrib-mlops job service") -> Any:
    """The FastAPI app serving ``registry``; ``token`` = the bearer token (None: no authentication).

    The app's lifespan starts the registry (if not started yet) and stops it on shutdown.
    """
    from fastapi import Depends, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
    from fastapi.concurrency import run_in_threadpool
    from fastapi.openapi.utils import get_openapi
    from fastapi.responses import JSONResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from fastapi_offline import FastAPIOffline

    hub = EventHub()
    registry.publish = hub.publish

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        hub.attach(asyncio.get_running_loop())
        if not registry.started:
            await run_in_threadpool(registry.start)
        try:
            yield
        finally:
            await run_in_threadpool(registry.stop)

    app = FastAPIOffline(title=title, lifespan=lifespan, swagger_ui_parameters={"validatorUrl": None},
                         description="Attribution jobs over HTTP: the job runner of `attrib-mlops run`, records "
                                     "in MLflow. Send `Authorization: Bearer <token>` on every /api call.")
    bearer = HTTPBearer(auto_error=False, description="The service token (--token / ATTRIB_MLOPS_SERVICE_TOKEN).")

    def require_token(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if token is None:
            return
        if creds is None or not secrets.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(JobNotFound)
    async def _not_found(_r: Request, e: JobNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=404)

    @app.exception_handler(JobConflict)
    async def _conflict(_r: Request, e: JobConflict) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=409)

    @app.exception_handler(SpecError)
    async def _invalid(_r: Request, e: SpecError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=422)

    @app.exception_handler(AttribError)
    async def _bad(_r: Request, e: AttribError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=400)

    auth = [Depends(require_token)]

    @app.get("/api/health", tags=["service"])
    def health() -> dict[str, str]:
        """Liveness: ``{"status": "ok"}`` (no token needed, no data)."""
        return {"status": "ok"}

    @app.post("/api/jobs", status_code=201, dependencies=auth, tags=["jobs"], openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/JobRequest"}}}}})
    async def create_job(request: Request) -> dict[str, Any]:
        """Queue a job: the job spec of `attrib-mlops run` as JSON, samples from `samples` or inline `inputs`."""
        try:
            body = await request.json()
        except ValueError as e:
            raise SpecError(f"invalid job spec: the request body is not JSON ({e})") from None
        job_id = await run_in_threadpool(registry.submit, body)
        return {"id": job_id, "status": "QUEUED"}

    @app.get("/api/jobs", dependencies=auth, tags=["jobs"])
    def list_jobs(limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        """The service's jobs (newest first) with status and progress; includes jobs of earlier service runs."""
        return {"jobs": registry.list(limit)}

    @app.get("/api/jobs/{job_id}/status", dependencies=auth, tags=["jobs"])
    def job_status(job_id: str) -> dict[str, Any]:
        """Status (QUEUED, RUNNING, FINISHED, FAILED, KILLED), progress in [0, 1], message and error."""
        return registry.status(job_id)

    @app.get("/api/jobs/{job_id}/results", dependencies=auth, tags=["jobs"])
    def job_results(job_id: str, offset: int = Query(0, ge=0),
                    limit: int | None = Query(None, ge=1)) -> dict[str, Any]:
        """Results of a FINISHED job: one entry per (model, method, sample), in that order (409 before)."""
        return registry.results(job_id, offset, limit)

    @app.delete("/api/jobs/{job_id}", dependencies=auth, tags=["jobs"])
    def cancel_job(job_id: str) -> dict[str, Any]:
        """Cancel: a queued job is KILLED at once, a running one after its unit in flight (cache kept)."""
        return registry.cancel(job_id)

    @app.websocket("/api/ws/jobs/{job_id}")
    async def job_events(websocket: WebSocket, job_id: str) -> None:
        if token is not None:
            given = websocket.query_params.get("token")
            ok = token_matches(websocket.headers.get("authorization"), token) or (
                given is not None and secrets.compare_digest(given.encode(), token.encode()))
            if not ok:
                await websocket.close(code=1008)  # before accept: the handshake is refused (HTTP 403)
                return
        await websocket.accept()
        q = hub.subscribe(job_id)
        try:
            try:
                doc = await run_in_threadpool(registry.status, job_id)
            except JobNotFound as e:
                await websocket.send_json({"detail": str(e), "status_code": 404})
                await websocket.close(code=4404)
                return
            await websocket.send_json(doc)
            status = doc["status"]
            while status not in FINAL_STATUSES:
                event = await q.get()
                await websocket.send_json(event)
                status = event.get("status")
            await websocket.close(code=1000)
        except WebSocketDisconnect:
            pass
        finally:
            hub.unsubscribe(job_id, q)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=_version(), description=app.description,
                                 routes=app.routes)
            request_schema, defs = job_request_schema()
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            comps.update(defs)
            comps["JobRequest"] = request_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _version() -> str:
    from .. import __version__

    return str(__version__)
