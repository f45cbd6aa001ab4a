"""Callback overhead: the demo's training without the attribution callback, with it uploading inline, and
with its background uploader (the default).

Run:  python benchmarks/callback_overhead.py [--steps 600] [--log-every 100] [--repeats 3] [--threads 1]

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

Training uses ``--threads`` torch threads (default 1, as ``attrib-mlops demo`` trains;
0 keeps torch's default, one per core). Each callback run logs the demo's three methods
on a 16-sample probe set to a fresh run of a throwaway local MLflow store, and the
benchmark checks that every step was committed.

Prints per repeat the wall times and the ratios to the plain run of the same repeat,
then the medians, the median overhead, whether the losses are identical in every run,
and where the overhead comes from (medians over the repeats), which stays readable on a
noisy machine:

* seconds spent inside the callback on the training thread: attribution, logging
  (metrics, staging in the spool; the first event also sets the writer up), the
  end-of-training wait for uploads, and the rest (hooks, live check);
* CPU seconds of the upload worker process (its start-up imports, then the uploads);
* contention: the wall-time overhead not spent on the training thread (the worker and
  the callback's memory traffic slowing training down), i.e. overhead minus in-thread time.
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
HOOKS = ("on_init_end", "on_train_begin", "on_epoch_begin", "on_step_begin", "on_pre_optimizer_step",
         "on_optimizer_step", "on_substep_end", "on_step_end", "on_epoch_end", "on_log", "on_evaluate",
         "on_save", "on_train_end")


def _timed(cb, spent: list[float]) -> None:
    """Wrap every Trainer hook of ``cb`` so that the time spent in it adds to ``spent[0]``."""
    for name in HOOKS:
        fn = getattr(cb, name, None)
        if fn is None:
            continue

        def wrapper(*a, _fn=fn, **kw):
            t = time.perf_counter()
            try:
                return _fn(*a, **kw)
            finally:
                spent[0] += time.perf_counter() - t

        setattr(cb, name, wrapper)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of training (0: torch's default)")
    ap.add_argument("--flush-timeout", type=float, default=10.0,
                    help="the callback's flush_timeout_s (its default: 10 s without upload progress)")
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
    losses: dict[str, list[list[float]]] = {m: [] for m in args.modes}
    # per mode, per repeat: where the time went (seconds)
    parts: dict[str, list[dict[str, float]]] = {m: [] for m in args.modes}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        client = MlflowClient(uri)
        reader = AttributionReader(uri, cache_dir=f"{tmp}/cache")

        def train(mode: str) -> float:
            cbs, run_id, spent = [], None, [0.0]
            if mode != "plain":
                run_id = get_or_create_run(client=client, experiment="overhead",
                                           artifact_location=f"{tmp}/a").run_id
                cbs = [AttributionCallback(probe, methods=args.methods, every_n_steps=args.log_every,
                                           on_save=False, run_id=run_id, tracking_uri=uri,
                                           spool_dir=f"{tmp}/spool", background_upload=mode == "background",
                                           flush_timeout_s=args.flush_timeout)]
                _timed(cbs[0], spent)
            model, tok = build_tiny_model(keyvalue_vocab(), **DEFAULT_MODEL)
            ch = resource.getrusage(resource.RUSAGE_CHILDREN)
            t, c = time.perf_counter(), time.process_time()
            res = train_keyvalue(model, tok, data, max_steps=args.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                                 seed=0, logging_steps=25, callbacks=cbs, num_threads=args.threads or None)
            dt = time.perf_counter() - t
            cpu = time.process_time() - c
            up = cbs[0].monitor._writer._uploader if cbs else None
            if up is not None and up._thread is not None:
                up._thread.join(60)  # close() stopped it: it ends the worker process
            up_cpu = getattr(up, "worker_cpu_s", 0.0)  # as the worker reported it
            ch2 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the same, once the worker is reaped
            p = {"wall": dt, "cpu": cpu, "in_thread": spent[0],
                 "worker_cpu": max(up_cpu, ch2.ru_utime + ch2.ru_stime - ch.ru_utime - ch.ru_stime),
                 "worker_startup_cpu": getattr(up, "startup_cpu_s", float("nan"))}
            if cbs:
                mon = cbs[0].monitor
                tm = getattr(mon, "timings", None)  # None: a version before this breakdown (for before/after runs)
                nan = float("nan")
                p.update(attribute=sum(mon.costs), events=len(mon.costs),
                         log=sum(x["log_s"] for x in tm) if tm is not None else nan,
                         setup=sum(x["setup_s"] for x in tm) if tm is not None else nan,
                         close=getattr(mon, "close_s", nan))
                p["other"] = p["in_thread"] - p["attribute"] - p["log"] - p["close"]
                n = len(reader.steps(run_id, refresh=True))
                assert n == len(mon.costs), f"{mode}: {n} steps committed of {len(mon.costs)}"
            parts[mode].append(p)
            losses[mode].append([h["loss"] for h in res["loss_history"]])
            return dt

        print(f"training {args.steps} steps with {args.threads or 'default'} torch thread(s), attribution every "
              f"{args.log_every} steps ({len(probe)} samples x {len(args.methods)} methods), {args.repeats} "
              "interleaved repeats")
        train("plain")  # warm-up (first-use costs of torch and the tokenizer), not counted
        for m in args.modes:
            times[m], losses[m], parts[m] = [], [], []
        for rep in range(args.repeats):
            k = rep % len(args.modes)  # rotate the order so no mode always runs first
            row = {m: train(m) for m in args.modes[k:] + args.modes[:k]}
            row = {m: row[m] for m in args.modes}
            for m, v in row.items():
                times[m].append(v)
            ratios = "  ".join(f"{m} {row[m] / row['plain']:.3f}" for m in args.modes if "plain" in row)
            print(f"  repeat {rep + 1}: " + "  ".join(f"{m} {v:6.1f} s" for m, v in row.items())
                  + (f"   (ratio to plain: {ratios})" if ratios else ""), flush=True)
            print("    in the callback on the training thread: " + "  ".join(
                f"{m} {parts[m][-1]['in_thread']:.2f} s" for m in args.modes if m != "plain")
                + "; upload worker CPU: " + "  ".join(
                f"{m} {parts[m][-1]['worker_cpu']:.2f} s" for m in args.modes if m != "plain"), flush=True)

    med = {m: statistics.median(v) for m, v in times.items()}
    print("median wall time: " + "  ".join(f"{m} {v:.1f} s" for m, v in med.items()))
    base = med.get("plain")
    if base:
        for m in args.modes:
            if m != "plain":
                per = sorted(a / b for a, b in zip(times[m], times["plain"]))
                print(f"  {m:10s}: {statistics.median(per) - 1:+.1%} wall time vs plain (median of the per-repeat "
                      f"ratios {', '.join(f'{r:.3f}' for r in per)}); ratio of the medians {med[m] / base - 1:+.1%}")

    def mp(m: str, key: str) -> float:
        return statistics.median(p[key] for p in parts[m])

    print("where the time goes (medians over the repeats; % of the plain run's median wall time):")
    pct = (lambda s: f" ({s / base:+.1%})") if base else (lambda s: "")
    for m in args.modes:
        if m == "plain":
            continue
        ev = int(mp(m, "events"))
        print(f"  {m}:")
        print(f"    on the training thread: {mp(m, 'in_thread'):.2f} s{pct(mp(m, 'in_thread'))} in {ev} events = "
              f"attribution {mp(m, 'attribute'):.2f} s{pct(mp(m, 'attribute'))} + logging (metrics, staging; "
              f"set-up {mp(m, 'setup'):.2f} s) {mp(m, 'log'):.2f} s{pct(mp(m, 'log'))} + end-of-training "
              f"wait {mp(m, 'close'):.2f} s{pct(mp(m, 'close'))} + other {mp(m, 'other'):.2f} s")
        if m == "background":
            print(f"    upload worker process: {mp(m, 'worker_cpu'):.2f} CPU s (start-up "
                  f"{mp(m, 'worker_startup_cpu'):.2f} s)")
        if base:
            over = [p["wall"] - b["wall"] for p, b in zip(parts[m], parts["plain"])]
            cont = [o - p["in_thread"] for o, p in zip(over, parts[m])]
            print(f"    contention (overhead not spent on the training thread): median "
                  f"{statistics.median(cont):+.2f} s{pct(statistics.median(cont))} per repeat")
        cpu_over = mp(m, "cpu") - mp("plain", "cpu") if "plain" in parts else float("nan")
        print(f"    CPU time of the training process: {cpu_over:+.2f} s vs plain")
    ref = next(iter(losses.values()))[0]
    same = all(ls == ref for runs in losses.values() for ls in runs)
    print(f"identical losses in every run: {same} ({len(ref)} logged losses per run)")
    assert same, "the callback changed the losses"


if __name__ == "__main__":
    main()
