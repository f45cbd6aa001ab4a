"""Scale-out: one job on the local executor vs the Ray executor with N workers, as a ratio in one run.

Run:  python benchmarks/scale_ray.py [--samples 1000] [--repeats 3] [--workers 2] [--batch-size 8]

The job: the demo's tiny GPT-2 (key-value vocabulary, 2 layers, 64 dims) over ``demo:keyvalue``
samples (``--samples``) x three native methods (saliency, input_x_gradient,
integrated_gradients with ``--n-steps`` steps), batches of ``--batch-size`` samples; every
run starts from an empty result cache, writes each unit to it (as ``attrib-mlops run``
does) and no other sink. Local = the local executor in this process (torch's default
threads, or ``--local-threads``); Ray = a loopback Ray head started here (``--workers`` CPUs) and ``--workers``
actors of one CPU each (one torch thread each), created once before the timed runs
(startup reported apart). Runs are interleaved (local, ray, local, ray, ...) and the
median of ``--repeats`` is reported, with the per-unit cost (wall time / units) and
the speed-up local/ray. The results of the two executors are checked to be equal.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--n-steps", type=int, default=16)
    ap.add_argument("--local-threads", type=int, default=None,
                    help="torch threads of the local executor (default: torch's, one per core)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    from attrib_mlops.demo.tasks import keyvalue_vocab
    from attrib_mlops.demo.tiny import build_tiny_model, save_tiny
    from attrib_mlops.jobs import ResultCache, run_job
    from attrib_mlops.jobs.ray_cluster import LocalRayCluster

    methods = ["saliency", "input_x_gradient", "integrated_gradients"]
    tmp = Path(tempfile.mkdtemp(prefix="scale-ray-"))
    save_tiny(*build_tiny_model(keyvalue_vocab(), n_layer=2, n_embd=64, n_head=4, seed=0), tmp / "model")

    def spec(tag: str, i: int) -> dict:
        return {"name": "scale", "models": [{"name": "tiny", "ref": str(tmp / "model")}], "methods": methods,
                "samples": {"source": "demo:keyvalue", "n": args.samples},
                "options": {"batch_size": args.batch_size, "n_steps": args.n_steps},
                "cache_dir": str(tmp / f"cache-{tag}-{i}")}

    units = len(methods) * -(-args.samples // args.batch_size)
    import torch

    if args.local_threads:
        torch.set_num_threads(args.local_threads)
    t0 = time.perf_counter()
    cluster = LocalRayCluster(num_cpus=args.workers).start()
    os.environ.update(cluster.driver_env({}))
    from attrib_mlops.jobs.ray_executor import RayExecutor

    ex = RayExecutor(cluster.address, workers=args.workers, cpus_per_worker=1)
    ex.worker_pids()  # actors up (imports done) before timing
    startup = time.perf_counter() - t0
    times: dict[str, list[float]] = {"local": [], "ray": []}
    outcomes = {}
    try:
        for i in range(args.repeats):
            for tag in ("local", "ray"):
                s = spec(tag, i)
                if tag == "ray":
                    ex.cache = ResultCache(s["cache_dir"])
                t = time.perf_counter()
                out = run_job(s, sinks=[], progress=False, executor=ex if tag == "ray" else None)
                times[tag].append(time.perf_counter() - t)
                assert out.computed == args.samples * len(methods), out
                outcomes[tag] = s["cache_dir"]
                print(f"  run {i + 1} {tag:5s} {times[tag][-1]:7.1f} s", flush=True)
        same = _same_cache(Path(outcomes["local"]), Path(outcomes["ray"]))
        put_ms, read_ms, entry_kb = _driver_costs(Path(outcomes["ray"]), tmp / "cache-rewrite")
    finally:
        ex.close()
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    fig = {
        "local_threads": torch.get_num_threads(),
        "samples": args.samples, "methods": methods, "batch_size": args.batch_size, "n_steps": args.n_steps,
        "units": units, "workers": args.workers, "repeats": args.repeats, "cpu_count": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
        "local_s": med["local"], "ray_s": med["ray"], "all_local_s": times["local"], "all_ray_s": times["ray"],
        "local_per_unit_ms": 1000 * med["local"] / units, "ray_per_unit_ms": 1000 * med["ray"] / units,
        "speedup_local_over_ray": med["local"] / med["ray"], "ray_startup_s": startup,
        "same_cache_entries": same,
        "driver_cache_put_ms_per_result": put_ms, "driver_cache_read_ms_per_result": read_ms,
        "cache_entry_kb": entry_kb,
    }
    print(f"{args.samples} samples x {len(methods)} methods = {units} units of {args.batch_size} samples, "
          f"median of {args.repeats} interleaved runs (1-min load average at the end: {fig['load_avg_1min']:.1f} on "
          f"{os.cpu_count()} CPUs)")
    print(f"  local executor ({torch.get_num_threads()} thr) {med['local']:7.1f} s   {fig['local_per_unit_ms']:7.1f} ms/unit")
    print(f"  ray, {args.workers} workers        {med['ray']:7.1f} s   {fig['ray_per_unit_ms']:7.1f} ms/unit   "
          f"speed-up x{fig['speedup_local_over_ray']:.2f}")
    print(f"  ray startup (head node + {args.workers} actors, not timed above): {startup:.1f} s")
    print(f"  same cache entries (keys) from both executors: {same}")
    print(f"  driver side per result: cache write {put_ms:.2f} ms, read {read_ms:.2f} ms; entry {entry_kb:.1f} KB")
    if args.json:
        args.json.write_text(json.dumps(fig, indent=2))


def _driver_costs(src: Path, dst: Path, n: int = 600) -> tuple[float, float, float]:
    """Per result: ms to read an entry, ms to write it atomically (what the driver does per sample), KB on disk."""
    from attrib_mlops.jobs import ResultCache

    files = sorted((src / "results").rglob("*.json"))[:n]
    a, b = ResultCache(src), ResultCache(dst)
    t = time.perf_counter()
    results = [(p.stem, a.get(p.stem)) for p in files]
    read = time.perf_counter() - t
    t = time.perf_counter()
    for key, r in results:
        b.put(key, r)
    put = time.perf_counter() - t
    size = sum(p.stat().st_size for p in files) / 1024
    return 1000 * put / len(files), 1000 * read / len(files), size / len(files)


def _same_cache(a: Path, b: Path) -> bool:
    keys = lambda d: sorted(p.name for p in (d / "results").rglob("*.json"))  # noqa: E731
    return keys(a) == keys(b) and len(keys(a)) > 0


if __name__ == "__main__":
    main()
