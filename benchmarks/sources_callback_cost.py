"""Cost of one ``sources=`` event of the callback: ablation ground truth vs AT2 vs naive attention.

Run:  python benchmarks/sources_callback_cost.py [--n-probe 16] [--n-ablations 64] [--repeats 5]

On the demo's tiny GPT-2 (random weights: cost does not depend on training) and a
key-value probe set whose sources are each pair, the hint and the question
(``demo.source_truth.keyvalue_sources``), one :class:`~attrib_mlops.callbacks.sources.SourceHook`
event is timed per source method, interleaved over ``--repeats`` repeats (median):

* ``ablation``: ``--n-ablations`` + 32 held-out masks per probe, mask mode (the ground truth);
* ``at2``: one forward per batch with an estimator (uniform weights here: same cost as a trained one);
* ``attention``: naive attention averaging (the same forward).

Printed: median seconds per event and the ratio to ``at2``, i.e. how much cheaper AT2 every
event is than ablation every event (the reason for ``ablation_every`` > 1).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-probe", type=int, default=16)
    ap.add_argument("--n-ablations", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    from attrib_mlops.callbacks.sources import SourceHook
    from attrib_mlops.demo.source_truth import keyvalue_sources
    from attrib_mlops.demo.tasks import keyvalue_vocab, make_keyvalue_dataset
    from attrib_mlops.demo.tiny import build_tiny_model
    from attrib_mlops.demo.train import DEFAULT_MODEL
    from attrib_mlops.samples import ProbeSet
    from attrib_mlops.sources.at2.estimator import SourceEstimator

    model, tok = build_tiny_model(keyvalue_vocab(), **DEFAULT_MODEL)
    model.eval()
    rows = []
    for row in make_keyvalue_dataset(args.n_probe, shortcut=True, seed=1234):
        srcs, truth, _ = keyvalue_sources(row)
        rows.append({"id": row["id"], "prompt": row["prompt"], "target": row["target"], "sources": srcs,
                     "true_sources": [truth]})
    probe = ProbeSet.coerce(rows)
    targets = [r["target"] for r in rows]
    est = SourceEstimator.uniform_for(model)
    opts = {"n_ablations": args.n_ablations, "ablation": "mask"}
    hooks = {
        "ablation": SourceHook({"methods": ["ablation"], "options": opts}, probe),
        "at2": SourceHook({"methods": ["at2"], "estimator": None, "refit_at": [-1]}, probe),
        "attention": SourceHook({"methods": ["attention"]}, probe),
    }
    hooks["at2"].estimator = est
    times: dict[str, list[float]] = {k: [] for k in hooks}
    for _ in range(args.repeats):
        for name, hook in hooks.items():
            t = time.perf_counter()
            hook.on_event(model, tok, step=0, targets=targets)
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"tiny GPT-2 {DEFAULT_MODEL}, {args.n_probe} probes, {len(rows[0]['sources'])} sources each, "
          f"{args.n_ablations} + 32 held-out masks, median of {args.repeats} interleaved repeats")
    for name, v in med.items():
        print(f"  {name:10s} {v:8.3f} s/event   {v / med['at2']:7.1f} x at2")


if __name__ == "__main__":
    main()
