"""Callback overhead: the demo's training without the attribution callback, with it uploading inline, and
with its background uploader (the default).

Run:  python benchmarks/callback_overhead.py [--steps 600] [--log-every 100] [--repeats 3]

Trains the demo's tiny GPT-2 on the key-value task with the same seed in three modes,
interleaved (after one warm-up run; the order rotates between repeats) so that a
machine whose load changes affects every mode alike:

* ``plain``: no callback;
* ``inline``: ``AttributionCallback(background_upload=False)``: each step's Parquet,
  summary, HTML view and metrics are written to MLflow inside the training step (the
  behaviour before the background uploader);
* ``background``: the default: the step is staged in the local spool and a child
  process renders the view and uploads while training goes on; the end of training
  waits for it (at most ``flush_timeout_s``).

Each callback run logs the demo's three methods on a 16-sample probe set to a fresh run
of a throwaway local MLflow store. Prints per repeat the wall times and the ratios to the
plain run of the same repeat, then the medians, the median overhead, and whether the
losses are identical in every run.
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

MODES = ("plain", "inline", "background")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--methods", nargs="+", default=["saliency", "input_x_gradient", "attention"])
    args = ap.parse_args()

    from mlflow.tracking import MlflowClient

    from attrib_mlops.callbacks import AttributionCallback
    from attrib_mlops.demo.tasks import keyvalue_vocab, probe_set
    from attrib_mlops.demo.tiny import build_tiny_model
    from attrib_mlops.demo.train import DEFAULT_MODEL, train_keyvalue
    from attrib_mlops.demo_runner import DemoConfig, train_data
    from attrib_mlops.tracking import AttributionReader
    from attrib_mlops.tracking.runs import get_or_create_run

    cfg = DemoConfig(max_steps=args.steps, log_every=args.log_every)
    data = train_data("clean", cfg)
    probe = probe_set(n=cfg.n_probe, shortcut=True)
    times: dict[str, list[float]] = {m: [] for m in args.modes}
    cpu: dict[str, list[float]] = {m: [] for m in args.modes}  # CPU s of this process (all threads)
    child_cpu: dict[str, list[float]] = {m: [] for m in args.modes}  # CPU s of the upload worker processes
    losses: dict[str, list[list[float]]] = {m: [] for m in args.modes}
    attrib: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        client = MlflowClient(uri)
        reader = AttributionReader(uri, cache_dir=f"{tmp}/cache")

        def train(mode: str) -> float:
            cbs, run_id = [], None
            if mode != "plain":
                run_id = get_or_create_run(client=client, experiment="overhead",
                                           artifact_location=f"{tmp}/a").run_id
                cbs = [AttributionCallback(probe, methods=args.methods, every_n_steps=args.log_every,
                                           on_save=False, run_id=run_id, tracking_uri=uri,
                                           spool_dir=f"{tmp}/spool", background_upload=mode == "background")]
            model, tok = build_tiny_model(keyvalue_vocab(), **DEFAULT_MODEL)
            ch = resource.getrusage(resource.RUSAGE_CHILDREN)
            t, c = time.perf_counter(), time.process_time()
            res = train_keyvalue(model, tok, data, max_steps=args.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                                 seed=0, logging_steps=25, callbacks=cbs)
            dt = time.perf_counter() - t
            cpu[mode].append(time.process_time() - c)
            if cbs:
                cbs[0].monitor._writer._uploader and cbs[0].monitor._writer._uploader._end_child()
            ch2 = resource.getrusage(resource.RUSAGE_CHILDREN)
            child_cpu[mode].append(ch2.ru_utime + ch2.ru_stime - ch.ru_utime - ch.ru_stime)
            losses[mode].append([h["loss"] for h in res["loss_history"]])
            if cbs:
                attrib.extend(cbs[0].monitor.costs)
                n = len(reader.steps(run_id, refresh=True))
                assert n == len(cbs[0].monitor.costs), f"{mode}: {n} steps committed"
            return dt

        print(f"training {args.steps} steps, attribution every {args.log_every} steps "
              f"({len(probe)} samples x {len(args.methods)} methods), {args.repeats} interleaved repeats")
        train("plain")  # warm-up (first-use costs of torch and the tokenizer), not counted
        for m in args.modes:
            times[m], cpu[m], child_cpu[m], losses[m] = [], [], [], losses[m][:0]
        for rep in range(args.repeats):
            k = rep % len(args.modes)  # rotate the order so no mode always runs first
            row = {m: train(m) for m in args.modes[k:] + args.modes[:k]}
            row = {m: row[m] for m in args.modes}
            for m, v in row.items():
                times[m].append(v)
            ratios = "  ".join(f"{m} {row[m] / row['plain']:.3f}" for m in args.modes if "plain" in row)
            print(f"  repeat {rep + 1} CPU s (training process; upload worker process): "
                  + "  ".join(f"{m} {cpu[m][-1]:.1f}; {child_cpu[m][-1]:.1f}" for m in args.modes))
            print(f"  repeat {rep + 1}: " + "  ".join(f"{m} {v:6.1f} s" for m, v in row.items())
                  + (f"   (ratio to plain: {ratios})" if ratios else ""))
    med = {m: statistics.median(v) for m, v in times.items()}
    print("median wall time: " + "  ".join(f"{m} {v:.1f} s" for m, v in med.items()))
    if "plain" in med:
        for m in args.modes:
            if m != "plain":
                per = sorted(a / b for a, b in zip(times[m], times["plain"]))
                print(f"  {m:10s}: {med[m] / med['plain'] - 1:+.1%} wall time vs plain (median of medians); "
                      f"per-repeat ratios {', '.join(f'{r:.3f}' for r in per)}")
    if "plain" in med:
        for m in args.modes:
            if m != "plain":
                r = statistics.median(cpu[m]) / statistics.median(cpu["plain"]) - 1
                print(f"  {m:10s}: {r:+.1%} CPU time of the training process vs plain (median); the upload "
                      f"worker process used {statistics.median(child_cpu[m]):.1f} CPU s (median)")
    if attrib:
        print(f"attribution compute: {statistics.median(attrib):.2f} s per event (median)")
    ref = next(iter(losses.values()))[0]
    same = all(ls == ref for runs in losses.values() for ls in runs)
    print(f"identical losses in every run: {same} ({len(ref)} logged losses per run)")


if __name__ == "__main__":
    main()
