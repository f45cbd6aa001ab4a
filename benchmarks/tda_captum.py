"""Per-example gradient throughput: attrib-mlops vs Captum's TracInCP, identical work.

Run:  python benchmarks/tda_captum.py [--n 256] [--checkpoints 3] [--repeats 3] [--threads 1]

A tiny GPT-2 (2 layers, 64 wide, untied output head) trained on the key-value
task, C checkpoints, N training examples, the same parameters (the last block
and the output head), the same per-example loss (mean NLL of the target token)
and the same learning rates on both sides. Three measurements:

1. per-example gradients: Captum's public
   ``TracInCP.compute_intermediate_quantities(train_loader)`` (the lr-scaled
   per-example gradients at every checkpoint: one forward per batch, one
   ``autograd.grad`` per example, the only mode Captum has for GPT-2's Conv1D
   layers) vs attrib-mlops' ``GradComputer.per_example`` (torch.func vmap) with
   the checkpoint weights bound functionally, at batch sizes 8, 32 and 128 (each
   library's best is compared as well: Captum's per-example backward passes each
   traverse the whole batch, so it does not gain from larger batches). Both give
   the same N x (C x P) matrix: compared in float32.
2. TracIn-CP scores of one query, end to end: Captum's ``influence`` vs
   ``build_training_index(..., projection="identity")`` (no projection, so the
   scores are comparable; float16 storage is the only difference) plus
   ``attribute_training_data``. attrib-mlops also writes a reusable index here.
3. a second query: Captum recomputes every training gradient; attrib-mlops
   reuses its index.

Timings are medians of interleaved repeats.

On a GPU the same script runs unchanged with ``--device cuda`` (both sides move
the model there).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256, help="training examples")
    ap.add_argument("--checkpoints", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import numpy as np
    import torch
    from captum.influence import TracInCP
    from safetensors.torch import load_file
    from torch.utils.data import TensorDataset

    from attrib_mlops.demo.tasks import keyvalue_vocab, make_keyvalue_dataset
    from attrib_mlops.demo.tiny import build_tiny_model
    from attrib_mlops.demo.train import encode_keyvalue, train_keyvalue
    from attrib_mlops.training_data import attribute_training_data, build_training_index
    from attrib_mlops.engines.prep import model_guard
    from attrib_mlops.training_data.checkpoints import bind_weights, quiet_loading, read_weights
    from attrib_mlops.training_data.grads import GradComputer
    from attrib_mlops.training_data.subset import select_params

    torch.set_num_threads(args.threads)
    model, tok = build_tiny_model(keyvalue_vocab(), n_layer=2, n_embd=64, n_head=4, n_positions=64, seed=0)
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(model.transformer.wte.weight.detach().clone())
    data = make_keyvalue_dataset(args.n, seed=0)
    tmp = Path(tempfile.mkdtemp(prefix="tda-captum-"))
    steps = 20 * args.checkpoints
    train_keyvalue(model, tok, data, max_steps=steps, batch_size=32, lr=3e-3, lr_scheduler_type="constant",
                   warmup_steps=0, output_dir=str(tmp / "ckpts"), save_steps=20, logging_steps=10, num_threads=1)
    ckpts = sorted((tmp / "ckpts").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    lrs = [3e-3] * len(ckpts)
    model.to(args.device).eval()
    query = make_keyvalue_dataset(1, seed=777)[0]
    params = [n for n, _ in model.named_parameters() if n.startswith("transformer.h.1.")] + ["lm_head.weight"]
    n_params = sum(p.numel() for n, p in model.named_parameters() if n in params)

    # ---- Captum
    rows = encode_keyvalue(tok, data)
    ids = torch.tensor([r["input_ids"] for r in rows], device=args.device)
    labels = torch.tensor([r["labels"] for r in rows], device=args.device)
    q = encode_keyvalue(tok, make_keyvalue_dataset(1, seed=777))[0]
    q_ids = torch.tensor([q["input_ids"]], device=args.device)
    q_labels = torch.tensor([q["labels"]], device=args.device)

    class Wrapped(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.model = m

        def forward(self, input_ids):
            return self.model(input_ids=input_ids, use_cache=False).logits

    def per_example_nll(logits, lab):  # [B] mean NLL over the labelled tokens, shifted as the LM head does
        lp = torch.log_softmax(logits[:, :-1].float(), -1)
        tgt = lab[:, 1:]
        valid = tgt >= 0
        picked = lp.gather(-1, torch.where(valid, tgt, 0)[..., None])[..., 0]
        return -(picked * valid).sum(1) / valid.sum(1)

    wrapped = Wrapped(model)

    def load(m, path):
        state = load_file(str(Path(path) / "model.safetensors"))
        m.model.load_state_dict(state, strict=False)
        return lrs[0]

    def run_captum():
        tracin = TracInCP(wrapped, TensorDataset(ids, labels), [str(c) for c in ckpts], checkpoints_load_func=load,
                          layers=["model.transformer.h.1", "model.lm_head"], loss_fn=per_example_nll,
                          batch_size=args.batch_size, sample_wise_grads_per_batch=False)
        return tracin.influence((q_ids, q_labels)).detach().cpu().numpy()[0]

    saved = {k: v.clone() for k, v in model.state_dict().items()}

    def captum_grads(bs):
        tracin = TracInCP(wrapped, TensorDataset(ids, labels), [str(c) for c in ckpts], checkpoints_load_func=load,
                          layers=["model.transformer.h.1", "model.lm_head"], loss_fn=per_example_nll,
                          batch_size=bs, sample_wise_grads_per_batch=False)
        loader = torch.utils.data.DataLoader(TensorDataset(ids, labels), batch_size=bs)
        return tracin.compute_intermediate_quantities(loader).detach()

    specs = select_params(model, params)
    seqs, labs = [r["input_ids"] for r in rows], [r["labels"] for r in rows]

    def our_grads(bs):
        gc = GradComputer(model, specs, mode="vmap")
        per_ck = []
        with model_guard(model):
            for c, lr in zip(ckpts, lrs):
                state, partial = read_weights(c)
                w = bind_weights(model, state, required=[s.name for s in specs], partial=partial)
                parts = [gc.per_example(w, seqs[a:a + bs], labs[a:a + bs]) for a in range(0, len(seqs), bs)]
                per_ck.append(lr * torch.cat([torch.cat([p[s.name] for s in specs], dim=1) for p in parts]))
        return torch.cat(per_ck, dim=1)

    index_dir = tempfile.mkdtemp(prefix="tda-captum-index-")

    def run_ours():
        with quiet_loading():
            idx = build_training_index([str(c) for c in ckpts], tok, data, lrs, model=model, params=params,
                                       projection="identity", per_layer="never", batch_size=args.batch_size,
                                       out_dir=tempfile.mkdtemp(dir=index_dir), show_progress=False,
                                       add_special_tokens=False)
            return idx, attribute_training_data(idx, model, tok, query["prompt"], query["target"]).scores

    def again(idx):
        return attribute_training_data(idx, model, tok, query2["prompt"], query2["target"]).scores

    query2 = make_keyvalue_dataset(1, seed=778)[0]
    q2 = encode_keyvalue(tok, make_keyvalue_dataset(1, seed=778))[0]
    sizes = sorted({8, args.batch_size, 128})
    t = {k: [] for k in ("c", "o", "c2", "o2")}
    for bs in sizes:
        t[f"cg{bs}"], t[f"og{bs}"] = [], []

    def timed(key, fn, *a):
        t0 = time.perf_counter()
        out = fn(*a)
        t[key].append(time.perf_counter() - t0)
        model.load_state_dict(saved)  # Captum loads checkpoints into the model; put the weights back
        return out

    for _ in range(args.repeats):
        for bs in sizes:
            g_c = timed(f"cg{bs}", captum_grads, bs)
            g_o = timed(f"og{bs}", our_grads, bs)
        s_c = timed("c", run_captum)
        idx, s_o = timed("o", run_ours)
        s_c2 = timed("c2", lambda: TracInCP(wrapped, TensorDataset(ids, labels), [str(c) for c in ckpts],
                                            checkpoints_load_func=load,
                                            layers=["model.transformer.h.1", "model.lm_head"],
                                            loss_fn=per_example_nll, batch_size=args.batch_size,
                                            sample_wise_grads_per_batch=False).influence(
            (torch.tensor([q2["input_ids"]], device=args.device), torch.tensor([q2["labels"]], device=args.device)))
            .detach().cpu().numpy()[0])
        s_o2 = timed("o2", again, idx)
    shutil.rmtree(index_dir, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in t.items()}
    work = args.n * len(ckpts)
    g_err = float((g_c - g_o).abs().max() / g_c.abs().max())

    def cmp(a, b):
        return (float(np.abs(a - b).max() / np.abs(a).max()), float(np.corrcoef(a, b)[0, 1]),
                set(np.argsort(-a)[:10]) == set(np.argsort(-b)[:10]))

    print(f"{args.n} training examples x {len(ckpts)} checkpoints, {n_params} parameters "
          f"(last block + output head), batch {args.batch_size}, {args.threads} thread(s), {args.device}, "
          f"medians of {args.repeats} interleaved runs")
    print("1. per-example gradients (N x C x P matrix), by batch size")
    for bs in sizes:
        c, o = med[f"cg{bs}"], med[f"og{bs}"]
        print(f"   batch {bs:3d}: captum compute_intermediate_quantities {c:6.2f} s ({work / c:7.1f} ex-grads/s) | "
              f"attrib-mlops GradComputer (vmap) {o:6.2f} s ({work / o:7.1f} ex-grads/s) | {c / o:5.1f}x")
    best_c = min(med[f"cg{bs}"] for bs in sizes)
    best_o = min(med[f"og{bs}"] for bs in sizes)
    print(f"   best batch size of each: {best_c / best_o:.1f}x;  max |captum - ours| / max |captum| = {g_err:.2e} "
          "(float32, last batch size)")
    e, r, same = cmp(s_c, s_o)
    print("2. TracIn-CP scores of one query, end to end")
    print(f"   captum TracInCP.influence               : {med['c']:7.2f} s")
    print(f"   attrib-mlops build index + query        : {med['o']:7.2f} s  (index written: identity, float16)")
    print(f"   speed-up {med['c'] / med['o']:.1f}x;  scores: max rel diff {e:.2e}, Pearson r {r:.6f}, same top-10 {same}")
    e2, r2, same2 = cmp(s_c2, s_o2)
    print("3. a second query")
    print(f"   captum TracInCP.influence (recomputes)  : {med['c2']:7.2f} s")
    print(f"   attrib-mlops query on the index         : {med['o2']:7.2f} s")
    print(f"   speed-up {med['c2'] / med['o2']:.1f}x;  scores: max rel diff {e2:.2e}, Pearson r {r2:.6f}, "
          f"same top-10 {same2}")


if __name__ == "__main__":
    main()
