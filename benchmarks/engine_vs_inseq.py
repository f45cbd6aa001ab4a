"""Native engine vs Inseq on identical work: time ratio, max cell difference, peak memory.

Run:  python benchmarks/engine_vs_inseq.py            (tiny + GPT-2-small-sized)
      python benchmarks/engine_vs_inseq.py --models tiny --methods saliency

For each model and method, both engines attribute the same samples (same
model object, same prompts of ``--prompt-len`` tokens, same teacher-forced
targets of ``--target-len`` tokens, same options). Printed per row:

* ``native s`` / ``inseq s``: wall time of one call (after a warm-up call; on the
  tiny model the best of ``--repeats`` calls),
* ``speed-up``: inseq time / native time,
* ``max |diff|`` and ``rel``: largest cell difference, absolute and relative
  to the largest cell,
* ``peak MB``: peak resident-memory growth during the call (sampled every 2 ms),
* for the native gradient methods, ``GFLOP/s`` achieved (FLOPs counted by
  ``torch.utils.flop_counter``) and that as a fraction of a plain large
  float32 matmul's FLOP/s measured on the same machine in the same run.

On a GPU pass ``--device cuda``: Inseq still runs batch size 1 and one target
at a time, while the native path runs all targets and samples of a batch in
one forward and (with ``vjp=vmap``) one batched backward, so the gap grows with
the hardware's parallelism.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import threading
import time
import warnings

import numpy as np
import psutil
import torch

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

from attrib_mlops import attribute  # noqa: E402
from attrib_mlops.demo.tiny import build_word_tokenizer  # noqa: E402

METHODS = ["saliency", "input_x_gradient", "integrated_gradients", "attention", "occlusion"]
GRADIENT = {"saliency", "input_x_gradient", "integrated_gradients"}


class PeakRSS:
    """Peak growth of the process's resident memory while the block runs."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.proc = psutil.Process(os.getpid())

    def __enter__(self):
        gc.collect()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 2**20


def build(kind: str, device: str):
    from transformers import GPT2Config, GPT2LMHeadModel

    vocab = [f"w{i}" for i in range(2000 if kind == "gpt2-small" else 200)]
    tok = build_word_tokenizer(vocab)
    if kind == "tiny":
        cfg = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=64, n_layer=2, n_head=4)
    else:  # GPT-2 small architecture; vocab of GPT-2 (50257) so the LM head costs what it costs in reality
        cfg = GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)
    cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg).to(device).eval()
    return model, tok


def make_samples(n: int, prompt_len: int, target_len: int, vocab: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    prompts, targets = [], []
    for _ in range(n):
        ids = rng.integers(0, vocab, prompt_len + target_len)
        words = [f"w{i}" for i in ids]
        prompts.append(" ".join(words[:prompt_len]))
        targets.append(" " + " ".join(words[prompt_len:]))
    return prompts, targets


def matmul_flops(device: str, n: int = 2048, reps: int = 5) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def timed(fn, repeats: int = 1):
    """Best wall time of ``repeats`` calls (the least disturbed by other processes) and peak memory."""
    best, peak, out = float("inf"), 0.0, None
    for _ in range(repeats):
        with PeakRSS() as mem:
            t = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t
        best, peak = min(best, dt), max(peak, mem.mb)
    return out, best, peak


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["tiny", "gpt2-small"], choices=["tiny", "gpt2-small"])
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=48)
    ap.add_argument("--target-len", type=int, default=16)
    ap.add_argument("--ig-steps", type=int, default=16, help="integrated-gradients steps (both engines)")
    ap.add_argument("--batch-size", type=int, default=8, help="native batch size")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per engine on the tiny model (best is kept)")
    args = ap.parse_args()

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    peak = matmul_flops(args.device)
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, device {args.device}")
    print(f"plain float32 matmul (2048^3): {peak / 1e9:.1f} GFLOP/s")
    print(
        f"work: {args.samples} samples x ({args.prompt_len} prompt + {args.target_len} target tokens), "
        f"IG steps {args.ig_steps}"
    )
    header = (
        f"{'model':<11} {'method':<21} {'native s':>9} {'inseq s':>9} {'speed-up':>9} "
        f"{'max|diff|':>10} {'rel':>8} {'nat MB':>8} {'inseq MB':>9} {'GFLOP/s':>8} {'of peak':>8}"
    )
    print(header)
    print("-" * len(header))
    for kind in args.models:
        model, tok = build(kind, args.device)
        vocab = 2000 if kind == "gpt2-small" else 200
        prompts, targets = make_samples(args.samples, args.prompt_len, args.target_len, vocab)
        for method in args.methods:
            kw = {"n_steps": args.ig_steps} if method == "integrated_gradients" else {}

            def nat():
                return attribute(model, tok, prompts, targets, methods=method, engine="native",
                                 batch_size=args.batch_size, **kw)

            def ins():
                return attribute(model, tok, prompts, targets, methods=method, engine="inseq", **kw)

            # warm-up on one sample each (imports, kernels, LM-head split check)
            attribute(model, tok, prompts[:1], targets[:1], methods=method, engine="native", **kw)
            attribute(model, tok, prompts[:1], targets[:1], methods=method, engine="inseq", **kw)
            reps = args.repeats if kind == "tiny" else 1
            a, t_nat, m_nat = timed(nat, reps)
            b, t_ins, m_ins = timed(ins, reps)
            diff = max(float(np.nanmax(np.abs(x.matrix - y.matrix))) for x, y in zip(a, b))
            scale = max(float(np.nanmax(np.abs(y.matrix))) for y in b)
            flops_s = frac = ""
            if method in GRADIENT:
                fl = count_flops(nat)
                flops_s = f"{fl / t_nat / 1e9:8.1f}"
                frac = f"{fl / t_nat / peak:8.2f}"
            print(
                f"{kind:<11} {method:<21} {t_nat:9.2f} {t_ins:9.2f} {t_ins / t_nat:8.1f}x "
                f"{diff:10.2e} {diff / scale:8.1e} {m_nat:8.0f} {m_ins:9.0f} {flops_s:>8} {frac:>8}",
                flush=True,
            )
        del model
        gc.collect()


if __name__ == "__main__":
    main()
