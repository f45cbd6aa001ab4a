"""Batched source ablations vs one forward per mask (ContextCite's loop), on identical masks.

Run:  python benchmarks/sources_ablation.py                 (tiny and small models, both modes)
      python benchmarks/sources_ablation.py --models small --repeats 7 --device cuda

For each model and ablation mode (``mask``: attention mask, positions kept;
``remove``: text removed and re-tokenised), the same ``--n-ablations`` random
keep/drop masks over ``--n-sources`` sentence sources are evaluated

* batched: many masks per forward (the engine of ``attribute_sources``),
* loop: one forward per mask (ContextCite's default ``batch_size=1``),

through the same code, so the outcomes must be identical up to float rounding
(``max |diff|`` of the per-token log-probabilities). Printed per row: median
wall time of each over ``--repeats`` interleaved repeats, the speed-up
(loop / batched), the cost of all the ablations in units of one plain forward of
the full prompt (``x one fwd``; one forward is timed as the median of 5 calls per
repeat), and the peak resident-memory growth of one call
of each (CPU; on CUDA the peak allocated memory).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import sys
import time
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
sys.path.insert(0, os.path.dirname(__file__))

from engine_vs_inseq import PeakRSS  # noqa: E402

from attrib_mlops.demo.tiny import build_tiny_model  # noqa: E402
from attrib_mlops.sources.ablation import _Rows, random_masks  # noqa: E402
from attrib_mlops.sources.forward import Forwarder, encode_prompt  # noqa: E402
from attrib_mlops.sources.splitting import split_text  # noqa: E402

MODELS = {
    "tiny": dict(n_layer=2, n_embd=64, n_head=4),
    "small": dict(n_layer=6, n_embd=256, n_head=8),
}


def build(name: str, device: str, n_sources: int, words: int):
    vocab = [f"w{i}" for i in range(200)] + ["."]
    model, tok = build_tiny_model(vocab, n_positions=1024, seed=0, **MODELS[name])
    model.to(device)
    rng = np.random.default_rng(0)
    sents = [" ".join(f"w{int(i)}" for i in rng.integers(0, 200, words)) + " ." for _ in range(n_sources)]
    prompt = " ".join(sents)
    target = " " + " ".join(f"w{int(i)}" for i in rng.integers(0, 200, 8))
    return model, tok, prompt, target


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t, out


def peak(fn, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    with PeakRSS() as p:
        fn()
    return p.mb


def run(name: str, mode: str, args) -> dict:
    model, tok, prompt, target = build(name, args.device, args.n_sources, args.words)
    dev = torch.device(args.device)
    s = encode_prompt(tok, prompt, target, add_special_tokens=True, limit=None)
    spans = split_text(prompt, "sentence")
    assert len(spans) == args.n_sources, (len(spans), args.n_sources)
    masks = random_masks(np.random.default_rng(0), args.n_ablations, len(spans), 0.5)
    batched = _Rows(Forwarder(model, tok, dev, args.max_tokens), s, spans, mode)
    loop = _Rows(Forwarder(model, tok, dev, max_tokens_per_forward=1), s, spans, mode)  # one row per forward
    full = _Rows(Forwarder(model, tok, dev), s, spans, mode)
    one = np.ones((1, len(spans)), bool)
    with torch.no_grad():
        batched(masks), loop(masks[:2]), full(one)  # warm-up
        tb, tl, t1 = [], [], []
        for _ in range(args.repeats):  # interleaved
            t, a = timed(lambda: batched(masks))
            tb.append(t)
            t, b = timed(lambda: loop(masks))
            tl.append(t)
            t1.append(statistics.median(timed(lambda: full(one))[0] for _ in range(5)))
        gc.collect()
        mb_b = peak(lambda: batched(masks), args.device)
        mb_l = peak(lambda: loop(masks), args.device)
    mb, ml, m1 = statistics.median(tb), statistics.median(tl), statistics.median(t1)
    return {
        "model": name, "mode": mode, "tokens": s.n_prompt + s.n_target, "batched_s": mb, "loop_s": ml,
        "speedup": ml / mb, "x_one_fwd": mb / m1, "loop_x_one_fwd": ml / m1,
        "diff": float(np.abs(a - b).max()), "peak_mb_batched": mb_b, "peak_mb_loop": mb_l,
        "forwards": batched.fwd.n_calls // (args.repeats + 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--modes", nargs="+", default=["mask", "remove"], choices=["mask", "remove"])
    ap.add_argument("--n-ablations", type=int, default=64)
    ap.add_argument("--n-sources", type=int, default=16)
    ap.add_argument("--words", type=int, default=10, help="words per source sentence")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=8192, help="max_tokens_per_forward of the batched engine")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {args.device}; "
          f"{args.n_ablations} masks over {args.n_sources} sources; median of {args.repeats} interleaved repeats")
    head = (f"{'model':6s} {'mode':6s} {'tokens':>6s} {'batched s':>9s} {'loop s':>8s} {'speed-up':>8s} "
            f"{'x one fwd':>9s} {'loop x1':>8s} {'max |diff|':>10s} {'peak MB b/l':>12s} {'fwd calls':>9s}")
    print(head)
    for name in args.models:
        for mode in args.modes:
            r = run(name, mode, args)
            print(f"{r['model']:6s} {r['mode']:6s} {r['tokens']:6d} {r['batched_s']:9.3f} {r['loop_s']:8.3f} "
                  f"{r['speedup']:7.1f}x {r['x_one_fwd']:9.1f} {r['loop_x_one_fwd']:8.1f} {r['diff']:10.1e} "
                  f"{r['peak_mb_batched']:5.0f}/{r['peak_mb_loop']:<6.0f} {r['forwards']:9d}")


if __name__ == "__main__":
    main()
