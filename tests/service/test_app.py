"""The job service driven over real HTTP (httpx) and WebSocket (websockets) against ``attrib-mlops serve``."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

REPO = Path(__file__).resolve().parents[2]

PROBE = [{"id": "a", "prompt": "w1 w2 w3 w4", "target": " w5 w6"},
         {"id": "b", "prompt": "w7 w8 w9", "target": " w10"},
         {"id": "c", "prompt": "w11 w12 w13 w14 w15", "target": " w16 w17 w18"}]


def _run(coro):
    """Run a coroutine on a fresh loop in its own thread.

    The session-wide Playwright browser (tests/conftest.py) keeps an event loop running in the main thread, where
    ``asyncio.run`` refuses to start a second one.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _job(tiny_dir, name="svc-job", methods=("saliency", "attention"), inputs=PROBE, **options) -> dict:
    return {"name": name, "models": [{"name": "tiny", "ref": str(tiny_dir)}], "methods": list(methods),
            "inputs": list(inputs), "options": {"batch_size": 2, **options}}


def _wait_status(svc, job_id, want, timeout=240.0) -> dict:
    deadline = time.monotonic() + timeout
    doc = {}
    while time.monotonic() < deadline:
        doc = httpx.get(f"{svc.url}/api/jobs/{job_id}/status", headers=svc.headers, timeout=60).json()
        if doc["status"] in want:
            return doc
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} not in {want} after {timeout}s: {doc}")


async def _events(svc, job_id, headers) -> list[dict]:
    out = []
    async with websockets.connect(f"ws://127.0.0.1:{svc.port}/api/ws/jobs/{job_id}",
                                  additional_headers=headers, open_timeout=60) as ws:
        async for msg in ws:
            out.append(json.loads(msg))
    return out


def test_auth_unknown_ids_invalid_specs_and_local_docs(service, tiny_dir):
    url, h = service.url, service.headers
    c = httpx.Client(timeout=120)
    assert c.get(url + "/api/jobs").status_code == 401
    r = c.get(url + "/api/jobs", headers={"Authorization": "Bearer wrong-token-123456789"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert c.get(url + "/api/health").json() == {"status": "ok"}

    r = c.get(url + "/api/jobs/0123456789abcdef0123456789abcdef/status", headers=h)
    assert r.status_code == 404 and "no job with id" in r.json()["detail"]
    assert c.get(url + "/api/jobs/nope/results", headers=h).status_code == 404
    assert c.delete(url + "/api/jobs/nope", headers=h).status_code == 404

    bad = _job(tiny_dir)
    bad["options"]["batch_sise"] = 3
    r = c.post(url + "/api/jobs", headers=h, json=bad)
    assert r.status_code == 422 and "unknown key 'options.batch_sise'" in r.json()["detail"]
    r = c.post(url + "/api/jobs", headers=h, json={**_job(tiny_dir), "methods": ["saliency", "telepathy"]})
    assert r.status_code == 422 and "'methods.1'" in r.json()["detail"] and "telepathy" in r.json()["detail"]
    r = c.post(url + "/api/jobs", headers=h, json={**_job(tiny_dir), "inputs": [{"prompt": "w1", "tagret": "x"}]})
    assert r.status_code == 422 and "'inputs.0.tagret'" in r.json()["detail"]
    remote = _job(tiny_dir)
    remote["models"][0]["trust_remote_code"] = True
    r = c.post(url + "/api/jobs", headers=h, json=remote)
    assert r.status_code == 422 and "'models.0.trust_remote_code'" in r.json()["detail"]
    r = c.post(url + "/api/jobs", headers=h, content=b"{not json", )
    assert r.status_code == 422
    assert c.get(url + "/api/jobs", headers=h).json() == {"jobs": []}  # nothing invalid was recorded

    async def ws_refused():
        with pytest.raises(InvalidStatus) as e:
            await _events(service, "nope", {})
        return e.value.response.status_code

    assert _run(ws_refused()) == 403

    async def ws_unknown():
        async with websockets.connect(f"ws://127.0.0.1:{service.port}/api/ws/jobs/nope?token={service.token}",
                                      open_timeout=60) as ws:
            msg = json.loads(await ws.recv())
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            return msg, ws.close_code

    msg, code = _run(ws_unknown())
    assert msg["status_code"] == 404 and code == 4404

    html = c.get(url + "/docs").text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html) + re.findall(r"url: '([^']+)'", html)
    assert len(assets) >= 3
    for a in assets:
        assert a.startswith("/") and not a.startswith("//"), a  # served here, never from a CDN
        assert c.get(url + a).status_code == 200, a
    assert "cdn" not in html.lower() and "https://" not in html
    schema = c.get(url + "/openapi.json").json()
    req = schema["components"]["schemas"]["JobRequest"]
    assert {"models", "methods", "inputs", "options"} <= set(req["properties"])
    assert "/api/jobs/{job_id}/results" in schema["paths"]


def test_job_over_http_and_websocket_matches_direct_attribution(service, tiny_dir, tiny):
    from attrib_mlops.api import attribute

    url, h = service.url, service.headers
    r = httpx.post(url + "/api/jobs", headers=h, json=_job(tiny_dir), timeout=120)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert r.json()["status"] == "QUEUED"

    events = _run(_events(service, job_id, h))
    assert events[0]["id"] == job_id and events[-1]["status"] == "FINISHED"
    statuses = [e["status"] for e in events]
    assert set(statuses) <= {"QUEUED", "RUNNING", "FINISHED"}
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == 1.0

    status = httpx.get(f"{url}/api/jobs/{job_id}/status", headers=h, timeout=60).json()
    assert status["status"] == "FINISHED" and status["progress"] == 1.0 and status["completed_at"]

    doc = httpx.get(f"{url}/api/jobs/{job_id}/results", headers=h, timeout=120).json()
    assert doc["job_id"] == job_id and doc["created_at"] and doc["completed_at"]
    assert doc["options"] == {"batch_size": 2} and doc["total"] == 2 * len(PROBE)
    assert [(e["model"], e["method"], e["sample_id"]) for e in doc["results"]] == [
        ("tiny", m, s["id"]) for m in ("saliency", "attention") for s in PROBE]
    model, tok = tiny
    for method in ("saliency", "attention"):
        ref = attribute(model, tok, [s["prompt"] for s in PROBE], [s["target"] for s in PROBE], [method], "native",
                        sample_ids=[s["id"] for s in PROBE])
        got = [e for e in doc["results"] if e["method"] == method]
        for e, r_ in zip(got, ref):
            assert e["input"] == {"text": r_.prompt, "tokens": r_.source_tokens[: r_.n_prompt]}
            assert e["output"] == {"text": r_.target, "tokens": r_.target_tokens}
            raw = np.array([[np.nan if v is None else v for v in row] for row in e["attribution"]["raw"]])
            np.testing.assert_allclose(raw, r_.matrix, rtol=1e-5, atol=1e-7)
            imp = e["attribution"]["aggregated"]["token_importance"]
            np.testing.assert_allclose(imp["output"], np.nansum(r_.matrix, axis=0), rtol=1e-5, atol=1e-7)
            assert len(imp["input"]) == len(r_.source_tokens)
            np.testing.assert_allclose(e["step_scores"]["probability"], r_.step_scores["probability"], rtol=1e-5)

    page = httpx.get(f"{url}/api/jobs/{job_id}/results?offset=2&limit=3", headers=h, timeout=120).json()
    assert [(e["method"], e["sample_id"]) for e in page["results"]] == [
        ("saliency", "c"), ("attention", "a"), ("attention", "b")]
    jobs = httpx.get(url + "/api/jobs", headers=h, timeout=60).json()["jobs"]
    assert [j["id"] for j in jobs] == [job_id]


@pytest.mark.slow
def test_cancel_keeps_the_cache_and_a_restarted_service_lists_and_resumes(service, tiny_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    url, h = service.url, service.headers
    many = [{"id": f"m{i}", "prompt": " ".join(f"w{(i + k) % 40}" for k in range(8)), "target": " w1 w2"}
            for i in range(40)]
    slow = _job(tiny_dir, name="to-cancel", methods=["integrated_gradients"], inputs=many, n_steps=64)
    killed_id = httpx.post(url + "/api/jobs", headers=h, json=slow, timeout=120).json()["id"]
    doc = _wait_status(service, killed_id, {"RUNNING"})
    deadline = time.monotonic() + 240
    while doc["progress"] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
        doc = httpx.get(f"{url}/api/jobs/{killed_id}/status", headers=h, timeout=60).json()
    assert 0 < doc["progress"] < 1, doc
    r = httpx.delete(f"{url}/api/jobs/{killed_id}", headers=h, timeout=60)
    assert r.status_code == 200
    doc = _wait_status(service, killed_id, {"KILLED", "FINISHED", "FAILED"})
    assert doc["status"] == "KILLED" and doc["progress"] < 1
    client = MlflowClient(service.tracking_uri)
    assert client.get_run(killed_id).info.status == "KILLED"
    cached = list((service.workdir / "cache" / "results").rglob("*.json"))
    assert 2 <= len(cached) < len(many)  # what was computed before the cancel is kept
    assert httpx.get(f"{url}/api/jobs/{killed_id}/results", headers=h, timeout=60).status_code == 409
    assert httpx.delete(f"{url}/api/jobs/{killed_id}", headers=h, timeout=60).status_code == 409

    # a job interrupted by a crash resumes after a restart, from the cache
    resumed = _job(tiny_dir, name="to-resume", methods=["integrated_gradients"], inputs=many[:24], n_steps=48)
    resumed_id = httpx.post(url + "/api/jobs", headers=h, json=resumed, timeout=120).json()["id"]
    _wait_status(service, resumed_id, {"RUNNING"})
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/api/jobs/{resumed_id}/status", headers=h, timeout=60).json()["progress"] > 0.3:
            break
        time.sleep(0.2)
    before = {j["id"] for j in httpx.get(url + "/api/jobs", headers=h, timeout=60).json()["jobs"]}
    service.kill()  # a crash: the run stays RUNNING in MLflow
    assert client.get_run(resumed_id).info.status == "RUNNING"
    service.start()
    listed = {j["id"]: j for j in httpx.get(url + "/api/jobs", headers=h, timeout=60).json()["jobs"]}
    assert listed[killed_id]["status"] == "KILLED"
    assert listed[resumed_id]["status"] in {"QUEUED", "RUNNING", "FINISHED"}
    assert set(listed) == before and len(before) >= 2  # every job of the store, earlier tests' ones too
    doc = _wait_status(service, resumed_id, {"FINISHED", "FAILED", "KILLED"})
    assert doc["status"] == "FINISHED", doc
    computed, from_cache = map(int, re.findall(r"(\d+) computed, (\d+) from the cache", doc["message"])[0])
    assert computed + from_cache == 24 and from_cache > 0  # resumed: the crash lost only what was in flight
    results = httpx.get(f"{url}/api/jobs/{resumed_id}/results", headers=h, timeout=120).json()
    assert results["total"] == 24 and len(results["results"]) == 24


def test_serve_refuses_a_public_address_without_a_token(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("ATTRIB_MLOPS_SERVICE_TOKEN", None)
    proc = subprocess.run([sys.executable, "-m", "attrib_mlops.cli", "serve", "--address", "0.0.0.0", "--port", "1",
                           "--workdir", str(tmp_path / "w")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "refusing to serve on 0.0.0.0 without a token" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()


@pytest.mark.slow
def test_service_runs_jobs_on_ray(ray_cluster, tiny_dir, tmp_path, service_process):
    svc = service_process(tmp_path, args=("--executor", "ray", "--ray-address", ray_cluster.address, "--ray-workers",
                                         "1", "--cpus-per-worker", "0.5"), env=ray_cluster.driver_env())
    svc.start()
    try:
        r = httpx.post(svc.url + "/api/jobs", headers=svc.headers, json=_job(tiny_dir, methods=["saliency"]),
                       timeout=120)
        job_id = r.json()["id"]
        events = _run(_events(svc, job_id, svc.headers))
        assert events[-1]["status"] == "FINISHED", events[-1]
        doc = httpx.get(f"{svc.url}/api/jobs/{job_id}/results", headers=svc.headers, timeout=120).json()
        assert [e["sample_id"] for e in doc["results"]] == [s["id"] for s in PROBE]
        assert all(e["engine"] == "native" and e["attribution"]["raw"] for e in doc["results"])
    finally:
        svc.stop()
