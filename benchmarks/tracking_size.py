"""Storage size and read latency of the MLflow attribution layout.

Logs ``--steps`` steps of ``--samples`` synthetic probe samples (one method) to a
local SQLite MLflow store in a temporary directory with
:class:`attrib_mlops.tracking.AttributionWriter`, then measures:

* artifact bytes per matrix cell of one step (Parquet only, and every file of the step),
* time to write one step (metrics + Parquet + summary + HTML + upload),
* with a fresh :class:`AttributionReader`: time to load one sample of one step
  (``load_sample``), one whole step (``load``), and all steps of the run.

Synthetic matrices: prompt 24-40 tokens, continuation 8-16 tokens, log-normal
values (heavy tailed like gradient norms) with the decoder-only NaN future mask,
drifting slowly from step to step.

Usage::

    python benchmarks/tracking_size.py --samples 1000 --steps 20
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def make_probe(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    shapes = [(int(rng.integers(24, 41)), int(rng.integers(8, 17))) for _ in range(n)]
    base = [rng.lognormal(mean=-3.0, sigma=1.0, size=(p + t, t)).astype(np.float32) for p, t in shapes]
    return shapes, base


def make_step(step: int, shapes, base, method: str = "saliency"):
    from attrib_mlops.result import AttributionResult, future_mask

    rng = np.random.default_rng(1000 + step)
    out = []
    for i, ((p, t), b) in enumerate(zip(shapes, base)):
        m = b * rng.lognormal(0.0, 0.05 * (1 + step) ** 0.5, size=b.shape).astype(np.float32)
        m[future_mask(p + t, t, p)] = np.nan
        toks = [f"tok{(i * 7 + k) % 500}" for k in range(p + t)]
        out.append(AttributionResult(
            m, toks, toks[p:], method, "native",
            step_scores={"probability": rng.random(t).astype(np.float32), "entropy": rng.random(t).astype(np.float32)},
            n_prompt=p, prompt=" ".join(toks[:p]), target=" ".join(toks[p:]), sample_id=f"s{i:05d}",
        ))
    return out


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--keep", action="store_true", help="keep the temporary MLflow store and print its path")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.ERROR)

    from mlflow.tracking import MlflowClient

    from attrib_mlops.tracking import AttributionReader, AttributionWriter, write_results
    from attrib_mlops.tracking.runs import get_or_create_run

    tmp = Path(tempfile.mkdtemp(prefix="attrib-bench-"))
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db")
    run_id = get_or_create_run(client=client, experiment="bench", artifact_location=str(tmp / "artifacts")).run_id
    writer = AttributionWriter(client, run_id, spool_dir=tmp / "spool")

    shapes, base = make_probe(args.samples)
    writer.log_probe_set([{"id": f"s{i:05d}", "prompt": "", "target": ""} for i in range(args.samples)])
    cells = sum((p + t) * t for p, t in shapes)
    defined = sum(p * t + t * (t + 1) // 2 for p, t in shapes)

    print(f"attrib-mlops tracking benchmark: {args.samples} samples x {args.steps} steps, 1 method, "
          f"{cells} cells per step ({defined} defined), store {tmp}")
    write_times = []
    for step in range(args.steps):
        results = make_step(step, shapes, base)
        t0 = time.perf_counter()
        s = writer.log_step(step * 100, results)
        write_times.append(time.perf_counter() - t0)
        assert s.logged, "step not committed"
    writer.flush()

    art = Path(client.get_run(run_id).info.artifact_uri) / "attribution"
    step_dir = art / "steps" / f"{(args.steps // 2) * 100:010d}"
    parquet = step_dir / "model" / "saliency.parquet"
    sizes = {p.name: p.stat().st_size for p in step_dir.rglob("*") if p.is_file()}
    total_step = sum(sizes.values())
    f32 = tmp / "f32.parquet"
    write_results(make_step(0, shapes, base), f32, include_f32=True)
    run_total = sum(p.stat().st_size for p in art.rglob("*") if p.is_file())

    print("\n== size (one step) ==")
    print(f"  Parquet (float16 + scale)      {fmt_bytes(parquet.stat().st_size):>10}  "
          f"{parquet.stat().st_size / cells:.2f} B/cell  ({parquet.stat().st_size / defined:.2f} B/defined cell)")
    print(f"  Parquet with matrix_f32 too    {fmt_bytes(f32.stat().st_size):>10}  "
          f"{f32.stat().st_size / cells:.2f} B/cell")
    for name in ("summary.json", "view.html"):
        print(f"  {name:<30} {fmt_bytes(sizes[name]):>10}")
    print(f"  all files of the step          {fmt_bytes(total_step):>10}  {total_step / cells:.2f} B/cell")
    print(f"  manifest.json                  {fmt_bytes((art / 'manifest.json').stat().st_size):>10}")
    print(f"  whole run ({args.steps} steps)          {fmt_bytes(run_total):>10}")

    print("\n== write ==")
    print(f"  log_step: median {statistics.median(write_times):.2f} s, max {max(write_times):.2f} s "
          f"(metrics, drift x2, Parquet, summary, HTML, upload, manifest, log_batch)")

    print("\n== read (fresh reader, cold cache, local artifact store read in place) ==")
    mid = (args.steps // 2) * 100
    sid = f"s{args.samples // 2:05d}"
    reader = AttributionReader(client=client, cache_dir=tmp / "cache")
    t0 = time.perf_counter()
    steps = reader.steps(run_id)
    t_manifest = time.perf_counter() - t0
    t0 = time.perf_counter()
    one = reader.load_sample(run_id, mid, "model", "saliency", sid)
    t_sample = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(20):
        reader.load_sample(run_id, mid, "model", "saliency", sid)
    t_sample_warm = (time.perf_counter() - t0) / 20
    t0 = time.perf_counter()
    step_results = reader.load(run_id, mid)
    t_step = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_all = sum(len(reader.load(run_id, s)) for s in steps)
    t_all = time.perf_counter() - t0
    assert one.sample_id == sid and len(step_results) == args.samples and n_all == args.samples * args.steps
    print(f"  manifest + steps()             {t_manifest * 1000:8.1f} ms  ({len(steps)} steps)")
    print(f"  load_sample (1 of 1 step)      {t_sample * 1000:8.1f} ms  (warm: {t_sample_warm * 1000:.1f} ms)")
    print(f"  load (1 step, all samples)     {t_step * 1000:8.1f} ms  ({args.samples} results)")
    print(f"  load (all {len(steps)} steps)            {t_all * 1000:8.1f} ms  ({n_all} results)")
    print(f"  ratio all steps / one sample   {t_all / t_sample:8.0f} x")

    print("\n== read through MLflow downloads (artifact copy into the reader cache) ==")
    remote = AttributionReader(client=client, cache_dir=tmp / "cache2")
    st = remote._state(run_id)
    st.local_dir = None  # force the download path a remote store uses
    t0 = time.perf_counter()
    remote.load_sample(run_id, mid, "model", "saliency", sid)
    t_dl_sample = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s in steps:
        remote.load(run_id, s)
    t_dl_all = time.perf_counter() - t0
    print(f"  load_sample (download 1 file)  {t_dl_sample * 1000:8.1f} ms")
    print(f"  load all steps (download all)  {t_dl_all * 1000:8.1f} ms")
    if args.keep:
        print(f"\nkept: {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
