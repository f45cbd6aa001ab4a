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

Printed: the median times, ``ablation / at2`` (the brief asks for >= 30x) and both in
units of one forward, and the peak memory growth of one call of each.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
sys.path.insert(0, os.path.dirname(__file__))

from sources_ablation import peak, timed  # noqa: E402

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sentences", type=int, default=24)
    ap.add_argument("--words", type=int, default=10)
    ap.add_argument("--n-ablations", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    model, tok, prompt, target = build(args.device, args.sentences, args.words)
    est = SourceEstimator.uniform_for(model)  # the weights do not change the cost
    n_tokens = len(tok(prompt + target)["input_ids"])
    ids = torch.tensor([tok(prompt + target)["input_ids"]], device=args.device)

    def forward():
        with torch.no_grad():
            return model(input_ids=ids).logits

    def at2():
        return attribute_sources(model, tok, prompt, target, "sentence", method="at2", estimator=est)

    def ablation():
        return attribute_sources(model, tok, prompt, target, "sentence", ablation="mask",
                                 n_ablations=args.n_ablations, n_holdout=0, evaluate=False)

    at2(), ablation(), forward()  # warm up (imports, allocator, eager switch)
    times: dict[str, list[float]] = {"forward": [], "at2": [], "ablation": []}
    for _ in range(args.repeats):  # interleaved: drifting machine load hits all three alike
        times["forward"].append(statistics.median(timed(forward)[0] for _ in range(3)))
        times["at2"].append(timed(at2)[0])
        dt, res = timed(ablation)
        times["ablation"].append(dt)
    med = {k: statistics.median(v) for k, v in times.items()}
    [r] = res
    mem = {"at2": peak(at2, args.device), "ablation": peak(ablation, args.device)}
    print(f"model: GPT-2-small-sized random GPT-2 (12 layers, 768 wide, 12 heads, sdpa), device {args.device}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"prompt+target: {n_tokens} tokens, {r.n_sources} sentence sources, 8 target tokens; "
          f"ablation rows: {r.info['n_forwards']} in {r.info['n_forward_calls']} forward calls")
    print(f"{'':10s} {'median s':>9s} {'x one fwd':>10s} {'peak MB':>8s}")
    print(f"{'forward':10s} {med['forward']:9.3f} {1.0:10.1f} {'':>8s}")
    for k in ("at2", "ablation"):
        print(f"{k:10s} {med[k]:9.3f} {med[k] / med['forward']:10.1f} {mem[k]:8.0f}")
    print(f"ablation / at2 = {med['ablation'] / med['at2']:.1f}x  (repeats: {args.repeats}; "
          f"per-repeat ratios {[round(a / b, 1) for a, b in zip(times['ablation'], times['at2'])]})")


if __name__ == "__main__":
    main()
