"""How long the dashboard takes to show the first sample of a big run, measured in real Chromium.

Builds (once, then reused) a local SQLite MLflow store with one run of 1,000 probe samples x
20 steps x 2 methods written by :class:`~attrib_mlops.tracking.AttributionWriter` (synthetic
matrices, 16-24 prompt tokens and 4-8 target tokens per sample), serves the dashboard with
``attrib-mlops dashboard`` and opens it in Debian's Chromium (headless) several times, each in a
fresh browser context (empty cache):

* **deep link**: navigation to ``/?tab=explorer&run=<id>`` until the first sample's source
  tokens are visible (the page lists nothing else first);
* **from the overview**: navigation to ``/`` until the runs table shows the run, then a click on
  the run until the explorer shows its first sample (reported as both the click-to-sample time and
  the total).

Times are taken in the browser (``performance.now()`` when the condition first holds, polled every
animation frame), from the start of the navigation.

    python benchmarks/dashboard_load.py                      # builds /tmp/attrib-dashboard-bench on first use
    python benchmarks/dashboard_load.py --store DIR --repeat 7

Needs Debian's Chromium at /usr/bin/chromium (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

#: Finds a visible source token anywhere in the page, also inside shadow roots; returns performance.now().
_DEEP_FIND = """
(sel) => {
  const seen = [];
  const find = (root) => {
    const hit = root.querySelector(sel);
    if (hit && hit.getBoundingClientRect().width > 0) return hit;
    for (const el of root.querySelectorAll('*')) {
      if (el.shadowRoot) { const h = find(el.shadowRoot); if (h) return h; }
    }
    return null;
  };
  return find(document) ? performance.now() : false;
}
"""


def build_store(root: Path, n_samples: int, n_steps: int, methods: tuple[str, ...]) -> tuple[str, str]:
    """Write the benchmark run; returns ``(tracking_uri, run_id)`` (reused when ``root/run.json`` exists)."""
    marker = root / "run.json"
    uri = f"sqlite:///{root}/mlflow.db"
    if marker.exists():
        return uri, json.loads(marker.read_text())["run_id"]
    from mlflow.tracking import MlflowClient

    from attrib_mlops.result import AttributionResult, future_mask
    from attrib_mlops.tracking import AttributionWriter
    from attrib_mlops.tracking.runs import get_or_create_run

    root.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri)
    run_id = get_or_create_run(client=client, experiment="dashboard-bench", artifact_location=str(root / "artifacts"),
                               run_name=f"bench-{n_samples}x{n_steps}").run_id
    rng = np.random.default_rng(0)
    shapes = [(int(rng.integers(16, 25)), int(rng.integers(4, 9))) for _ in range(n_samples)]
    toks = [[f"w{(7 * k + i) % 97}" for i in range(p + t)] for k, (p, t) in enumerate(shapes)]
    writer = AttributionWriter(client, run_id=run_id, spool_dir=root / "spool")
    writer.log_probe_set([{"id": f"s{k}", "prompt": " ".join(tk[:p]), "target": " " + " ".join(tk[p:])}
                          for k, ((p, _t), tk) in enumerate(zip(shapes, toks))])
    for s in range(n_steps):
        step = 100 * (s + 1)
        t0 = time.perf_counter()
        results = []
        for method in methods:
            for k, ((p, t), tk) in enumerate(zip(shapes, toks)):
                m = rng.random((p + t, t)).astype(np.float32)
                m[future_mask(p + t, t, p)] = np.nan
                results.append(AttributionResult(
                    m, tk, tk[p:], method, "native", n_prompt=p, sample_id=f"s{k}",
                    step_scores={"probability": rng.random(t).astype(np.float32),
                                 "entropy": rng.random(t).astype(np.float32)},
                    prompt=" ".join(tk[:p]), target=" " + " ".join(tk[p:])))
        writer.log_step(step, results)
        print(f"  logged step {step} ({len(results)} results) in {time.perf_counter() - t0:.1f} s", flush=True)
    client.set_terminated(run_id, "FINISHED")
    marker.write_text(json.dumps({"run_id": run_id, "samples": n_samples, "steps": n_steps,
                                  "methods": list(methods)}))
    return uri, run_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(uri: str, port: int, log: Path) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("attrib-mlops")
    cmd = [str(exe) if exe.exists() else "attrib-mlops", "dashboard", "--tracking-uri", uri, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the dashboard exited:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10):
                return proc
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"the dashboard did not answer:\n{log.read_text()[-2000:]}") from None
            time.sleep(0.2)


def measure(url: str, run_id: str, repeat: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    out: dict[str, list[float]] = {"deep link": [], "overview listed": [], "click to sample": [],
                                   "overview + click": []}
    token = ".attrib-tok[data-role=source]"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        errors: list[str] = []
        for k in range(repeat + 1):  # the first round warms the server (imports, first SQL queries)
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{url}/?tab=explorer&run={run_id}", wait_until="commit")
            deep = page.wait_for_function(_DEEP_FIND, arg=token, polling="raf", timeout=60_000).json_value()
            ctx.close()

            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            page.goto(f"{url}/", wait_until="commit")
            row = page.locator(".overview-table .tabulator-row").first
            row.wait_for(timeout=60_000)
            listed = page.evaluate("performance.now()")
            row.click()
            shown = page.wait_for_function(_DEEP_FIND, arg=token, polling="raf", timeout=60_000).json_value()
            ctx.close()
            if k:
                out["deep link"].append(deep / 1000)
                out["overview listed"].append(listed / 1000)
                out["click to sample"].append((shown - listed) / 1000)
                out["overview + click"].append(shown / 1000)
        browser.close()
    if errors:
        print("browser console errors:", *errors[:5], sep="\n  ")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, default=Path("/tmp/attrib-dashboard-bench"))
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"Chromium not found at {CHROMIUM}; apt-get install chromium")
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

    t0 = time.perf_counter()
    uri, run_id = build_store(args.store / f"{args.samples}x{args.steps}", args.samples, args.steps,
                              ("saliency", "attention"))
    print(f"store: {uri} (run {run_id}), ready in {time.perf_counter() - t0:.1f} s")
    port = free_port()
    proc = serve(uri, port, args.store / "server.log")
    try:
        res = measure(f"http://127.0.0.1:{port}", run_id, args.repeat)
    finally:
        proc.terminate()
        proc.wait(15)
    print(f"\nrun with {args.samples} samples x {args.steps} steps x 2 methods; {args.repeat} fresh browser "
          f"contexts; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for name, xs in res.items():
        print(f"  {name:<18} median {statistics.median(xs):.2f} s   (min {min(xs):.2f}, max {max(xs):.2f})")
    print(f"\nfirst sample visible {statistics.median(res['deep link']):.2f} s after navigating to the run "
          f"(median), {statistics.median(res['click to sample']):.2f} s after clicking it in the overview")


if __name__ == "__main__":
    main()
