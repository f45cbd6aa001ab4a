"""Query speed and memory over a large training-data index (synthetic 1,000,000 x 1,024 float16 rows).

Run:  python benchmarks/tda_query.py [--n 1000000] [--dim 1024] [--chunk-rows 65536] [--repeats 5]

Writes a synthetic one-checkpoint index with the package's own writer
(random rows, stored as the index stores real ones: float16 rows scaled to
max |value| 1, a float32 scale per row), then times TracIn scoring of one
query over it: a chunked matrix-vector product over memory-mapped
safetensors shards (``safe_open(...).get_slice(...)[a:b]``), float16 x float16
with float32 accumulation on the CPU (``compute="auto"``) and, for reference,
float32 conversion of each chunk (``compute="float32"``). Memory: the peak of
the process's *anonymous* resident memory (RssAnon, sampled every 5 ms) above
its level before the query; file-backed pages of the memory map are page cache
the kernel can drop, so the anonymous peak is what an index larger than RAM
costs. It is measured for N and N/4 rows to show it does not grow with N.
Also prints the index size (N x d x 2 bytes for the rows, plus 12 bytes of
per-row extras for one layer) and the error of the float16 path against a
float64 product.

GPU: the same code runs with ``--device cuda`` (chunks are moved to the GPU
and multiplied in float32 there).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time


def rss_anon_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


class PeakAnon:
    """Samples RssAnon in a thread; ``peak - base`` in MB after the block."""

    def __enter__(self):
        self.base = self.peak = rss_anon_kb()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon_kb())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_anon_kb())
        self.mb = (self.peak - self.base) / 1024


def build(path: str, n: int, dim: int, shard_rows: int) -> None:
    import torch

    from attrib_mlops.training_data.storage import FORMAT, VERSION, IndexWriter
    from attrib_mlops.training_data.subset import ParamSpec

    spec = ParamSpec("synthetic", (dim,))
    manifest = {"format": FORMAT, "version": VERSION, "n_examples": n, "dtype": "float16", "shard_rows": shard_rows,
                "params": [spec.to_dict()], "projection": {"kind": "identity", "dim": dim, "seed": 0},
                "per_layer": False, "train": {"fingerprint": "synthetic"}, "model": {"fingerprint": "synthetic"},
                "tokenizer": {"fingerprint": "synthetic"}, "checkpoints": []}
    writer = IndexWriter(path, manifest, [{"id": str(i), "text": ""} for i in range(n)])
    entry = {"name": "synthetic", "ref": "synthetic", "learning_rate": 1.0, "step": 0}
    cw = writer.add_checkpoint(entry, [spec], per_layer=False)
    g = torch.Generator().manual_seed(0)
    for a in range(0, n, shard_rows):
        x = torch.randn(min(shard_rows, n - a), dim, generator=g)
        cw.add(x, {"synthetic": x})
    writer.commit(entry, cw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--chunk-rows", type=int, default=65536)
    ap.add_argument("--shard-rows", type=int, default=65536)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (on a busy machine 1 avoids thread "
                    "wake-up latency on every small operation)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dir", default=None, help="keep the synthetic indexes in this folder and reuse them on the "
                    "next run (default: a temporary folder, deleted)")
    args = ap.parse_args()

    import numpy as np
    import torch

    from attrib_mlops.training_data.scoring import tracin
    from attrib_mlops.training_data.storage import TrainingIndex

    torch.set_num_threads(args.threads)
    root = args.dir or tempfile.mkdtemp(prefix="tda-query-")
    try:
        t = time.perf_counter()
        for name, n in (("big", args.n), ("small", args.n // 4)):
            path = os.path.join(root, name)
            done = os.path.exists(os.path.join(path, "manifest.json"))
            if done and TrainingIndex(path).n_examples != n:
                shutil.rmtree(path)
                done = False
            if not done:
                build(path, n, args.dim, args.shard_rows)
        t_build = time.perf_counter() - t
        big, small = TrainingIndex(os.path.join(root, "big")), TrainingIndex(os.path.join(root, "small"))
        size = big.size_bytes()
        q = torch.randn(args.dim, generator=torch.Generator().manual_seed(1))

        def run(idx, compute, chunk=args.chunk_rows):
            return tracin(idx, [[q]], chunk_rows=chunk, compute=compute, device=args.device)[0]

        times = {"auto": [], "float32": []}
        cpu = {"auto": [], "float32": []}
        run(big, "auto")  # page the file in once; the figures below are warm-cache
        for _ in range(args.repeats):
            for compute in ("auto", "float32"):
                t, c = time.perf_counter(), time.process_time()
                run(big, compute)
                times[compute].append(time.perf_counter() - t)
                cpu[compute].append(time.process_time() - c)
        mem = {}
        for name, idx in (("N", big), ("N/4", small)):
            with PeakAnon() as pk:
                run(idx, "auto")
            mem[name] = pk.mb
        with PeakAnon() as pk16:
            run(big, "auto", chunk=16384)

        # accuracy of the float16 path on the first 100k rows, against float64
        ref = []
        for start, g, sc in big.row_chunks(0, args.chunk_rows):
            ref.append((g.double() @ q.double()) * sc.double())
            if start + g.shape[0] >= 100_000:
                break
        ref = torch.cat(ref)[:100_000].numpy()
        fast, exact = run(big, "auto")[:100_000], run(big, "float32")[:100_000]
        err16 = float(np.abs(fast - ref).max() / np.abs(ref).max())
        err32 = float(np.abs(exact - ref).max() / np.abs(ref).max())
        t_auto, t_f32 = statistics.median(times["auto"]), statistics.median(times["float32"])
        print(f"index: {args.n:,} rows x {args.dim} dims, float16, {len(big.checkpoints)} checkpoint, "
              f"shards of {args.shard_rows:,} rows; written (or reused) in {t_build:.1f} s")
        print(f"size: rows N x d x 2 = {size['projected'] / 1e9:.3f} GB, per-row extras {size['row_extras'] / 1e6:.1f} MB"
              f" (scale, norm, sqnorm: 12 B/row), on disk {size['total'] / 1e9:.3f} GB")
        load = os.getloadavg()[0]
        print(f"query (TracIn, 1 query vector), {args.threads} threads, chunks of {args.chunk_rows:,} rows, "
              f"warm page cache, median of {args.repeats} (load average {load:.1f} on {os.cpu_count()} cores):")
        print(f"  compute=auto    (float16 gemv, float32 accumulation): wall {t_auto:.3f} s, CPU "
              f"{statistics.median(cpu['auto']):.3f} s   wall runs {[round(x, 3) for x in times['auto']]}")
        print(f"  compute=float32 (chunk converted to float32)       : wall {t_f32:.3f} s, CPU "
              f"{statistics.median(cpu['float32']):.3f} s   wall runs {[round(x, 3) for x in times['float32']]}")
        print(f"accuracy vs float64 on 100k rows (max |err| / max |score|): auto {err16:.1e}, float32 {err32:.1e}")
        print(f"peak anonymous memory above baseline: N rows {mem['N']:.0f} MB, N/4 rows {mem['N/4']:.0f} MB, "
              f"N rows with 16,384-row chunks {pk16.mb:.0f} MB (index {size['total'] / 1e6:.0f} MB, memory-mapped)")
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
