"""AT2 inference vs 64-mask ablation: cost of one source attribution, in one run.

Run:  python benchmarks/at2_cost.py                       (GPT-2-small-sized model, ~260-token prompt)
      python benchmarks/at2_cost.py --repeats 5 --device cuda --sentences 40

Model: a randomly initialised GPT-2 with GPT-2 small's shape (12 layers, 768 wide,
12 heads; 85M parameters in the blocks) over a 200-word vocabulary, so the
transformer blocks, not the embedding or LM head, carry the compute; loaded with
the default ``sdpa`` attention. The prompt is ``--sentences`` sentences of
``--words`` words (sources = sentences), the target 8 tokens. Compute dominates
fixed overhead here: one plain forward takes a few hundred milliseconds on a CPU.

Timed end to end through the public API (``attribute_sources``), median of
``--repeats`` interleaved repeats:

* ``at2``: ``method="at2"`` with an estimator for the model: one forward with
  ``output_attentions=True`` (switched to eager attention for the call and back);
* ``ablation``: ``method="ablation"``, ``ablation="mask"``, 64 masks, no held-out
  masks and no top-k check (the cheapest ablation result: 64 masks + the full prompt);
* ``forward``: one plain forward of prompt + target (the unit).

Printed: the median wall-clock and CPU (process) times, ``ablation / at2`` (the brief
asks for >= 30x) and both in units of one forward. On a machine shared with other
work the CPU-time ratio is the steadier figure (``--threads 1``, the default, keeps
thread hand-offs out of it); on an idle machine the two agree.
"""

from __future__ import annotations

import argparse
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


from attrib_mlops import attribute_sources  # noqa: E402
from attrib_mlops.demo.tiny import build_tiny_model  # noqa: E402
from attrib_mlops.sources.at2.estimator import SourceEstimator  # noqa: E402

GPT2_SMALL = dict(n_layer=12, n_embd=768, n_head=12)


def build(device: str, sentences: int, words: int):
    vocab = [f"w{i}" for i in range(200)] + ["."]
    model, tok = build_tiny_model(vocab, n_positions=1024, seed=0, attn_implementation="sdpa", **GPT2_SMALL)
    model.to(device)
    rng = np.random.default_rng(0)
    prompt = " ".join(" ".join(f"w{int(i)}" for i in rng.integers(0, 200, words)) + " ." for _ in range(sentences))
    target = " " + " ".join(f"w{int(i)}" for i in rng.integers(0, 200, 8))
    return model, tok, prompt, target


def timed(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t, time.process_time() - c, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sentences", type=int, default=24)
    ap.add_argument("--words", type=int, default=10)
    ap.add_argument("--n-ablations", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tok, prompt, target = build(args.device, args.sentences, args.words)
    est = SourceEstimator.uniform_for(model)  # the weights do not change the cost
    n_tokens = len(tok(prompt + target)["input_ids"])
    ids = torch.tensor([tok(prompt + target)["input_ids"]], device=args.device)

    def forward():
        with torch.no_grad():
            return model(input_ids=ids).logits

    def at2():
        return attribute_sources(model, tok, prompt, target, "sentence", method="at2", estimator=est)

    def ablation(n: int = args.n_ablations):
        return attribute_sources(model, tok, prompt, target, "sentence", ablation="mask",
                                 n_ablations=n, n_holdout=0, evaluate=False)

    at2(), ablation(2), forward()  # warm up (imports, allocator, eager switch, the ablation code path)
    wall: dict[str, list[float]] = {"forward": [], "at2": [], "ablation": []}
    cpu: dict[str, list[float]] = {"forward": [], "at2": [], "ablation": []}
    res = None
    for _ in range(args.repeats):  # interleaved: drifting machine load hits all three alike
        for name, fn in (("forward", forward), ("at2", at2), ("ablation", ablation)):
            w, c, out = timed(fn)
            wall[name].append(w)
            cpu[name].append(c)
            res = out if name == "ablation" else res
    [r] = res
    print(f"model: GPT-2-small-sized random GPT-2 (12 layers, 768 wide, 12 heads, sdpa), device {args.device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"prompt+target: {n_tokens} tokens, {r.n_sources} sentence sources, 8 target tokens; "
          f"ablation rows: {r.info['n_forwards']} in {r.info['n_forward_calls']} forward calls")
    print(f"{'':10s} {'wall s':>8s} {'x fwd':>7s} {'cpu s':>8s} {'x fwd':>7s}   (medians of {args.repeats} repeats)")
    for k in ("forward", "at2", "ablation"):
        mw, mc = statistics.median(wall[k]), statistics.median(cpu[k])
        print(f"{k:10s} {mw:8.3f} {mw / statistics.median(wall['forward']):7.1f} {mc:8.3f} "
              f"{mc / statistics.median(cpu['forward']):7.1f}")
    for label, t in (("wall", wall), ("cpu", cpu)):
        ratios = [round(a / b, 1) for a, b in zip(t["ablation"], t["at2"])]
        print(f"ablation / at2 ({label}) = {statistics.median(t['ablation']) / statistics.median(t['at2']):.1f}x"
              f"  per repeat {ratios}")


if __name__ == "__main__":
    main()
