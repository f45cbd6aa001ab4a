"""Training-data index during training: the cost of ``TrainingIndexCallback`` at each save.

Run:  python benchmarks/tda_callback_overhead.py [--steps 200] [--save-every 50] [--subset 256] [--dim 256]
      [--repeats 3]

Trains the demo's tiny GPT-2 on the key-value task with checkpoints every
``--save-every`` steps, plain and with ``TrainingIndexCallback`` (a ``--subset``
of the training rows, projection ``--dim``, logging to a throwaway SQLite MLflow
store), interleaved ``--repeats`` times (both variants save the same
checkpoints). Prints the median wall times, the overhead per save and per indexed
example, and whether the losses are identical.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--save-every", type=int, default=50)
    ap.add_argument("--subset", type=int, default=256)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from mlflow.tracking import MlflowClient

    from attrib_mlops.callbacks import TrainingIndexCallback
    from attrib_mlops.demo.tasks import keyvalue_vocab, make_keyvalue_dataset
    from attrib_mlops.demo.tiny import build_tiny_model
    from attrib_mlops.demo.train import DEFAULT_MODEL, train_keyvalue

    data = make_keyvalue_dataset(args.steps * 16, n_pairs=4, seed=0)

    def train(tmp, name, callbacks):
        model, tok = build_tiny_model(keyvalue_vocab(), **DEFAULT_MODEL)
        t = time.perf_counter()
        res = train_keyvalue(model, tok, data, max_steps=args.steps, batch_size=16, lr=3e-3, seed=0,
                             logging_steps=10, save_steps=args.save_every, output_dir=f"{tmp}/{name}",
                             callbacks=callbacks, num_threads=1)
        return time.perf_counter() - t, [h["loss"] for h in res["loss_history"]]

    plain, indexed, same = [], [], True
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        client = MlflowClient(uri)
        exp = client.create_experiment("tda-overhead", artifact_location=f"{tmp}/art")
        for r in range(args.repeats):
            t0, l0 = train(tmp, f"plain-{r}", [])
            run_id = client.create_run(exp).info.run_id
            cb = TrainingIndexCallback({"dataset": data, "subset": args.subset, "projection_dim": args.dim},
                                       run_id=run_id, tracking_uri=uri, strict=True)
            t1, l1 = train(tmp, f"indexed-{r}", [cb])
            plain.append(t0)
            indexed.append(t1)
            same = same and l0 == l1
    saves = args.steps // args.save_every
    mp, mi = statistics.median(plain), statistics.median(indexed)
    print(f"{args.steps} steps, {saves} saves, index over {args.subset} examples at dim {args.dim}, "
          f"median of {args.repeats} interleaved repeats")
    print(f"plain training      {mp:8.2f} s")
    print(f"with the index      {mi:8.2f} s   (x{mi / mp:.2f})")
    print(f"per save            {(mi - mp) / saves:8.2f} s   ({1000 * (mi - mp) / saves / args.subset:.2f} ms "
          "per indexed example, upload included)")
    print(f"losses identical    {same}")


if __name__ == "__main__":
    main()
