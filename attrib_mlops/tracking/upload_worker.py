"""The background uploader's child process: commits one run's spool when the parent asks.

Rendering a step's view and talking to MLflow is Python-heavy work; in a thread of the
training process it would compete with training for the GIL. The
:class:`~attrib_mlops.tracking.uploader.BackgroundUploader` therefore runs it here, in
``python -m attrib_mlops.tracking.upload_worker``, started once per writer. Protocol:
one command per line on stdin (``flush``: one commit pass over the spool, ``stop``),
one JSON line ``{"ready": true, "cpu_s": float}`` once started, then one reply per pass on stdout:
``{"ok": bool, "error": str | null, "cpu_s": float}`` (``cpu_s``: CPU seconds the worker has used so far). End of stdin
(the parent ended) stops the worker after its current pass; everything it did not
commit stays in the spool. Anything else the process prints goes to stderr.

The worker runs at the training's priority unless ``--nice`` (or the environment
variable ``ATTRIB_MLOPS_UPLOAD_NICE``) says otherwise: at nice 19 on a busy machine it
got almost no CPU during training, so the end of training waited for all its work
(12.6 s of a 42 s training in ``benchmarks/callback_overhead.py``, against 1.1 s at nice 0).

Example:
    $ echo flush | python -m attrib_mlops.tracking.upload_worker --tracking-uri sqlite:///mlflow.db \\
          --run-id <run> --spool-dir ~/.cache/attrib-mlops/spool
    {"ready": true, "cpu_s": 2.1}
    {"ok": true, "error": null, "cpu_s": 3.4}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

__all__ = ["main", "command"]


def command(tracking_uri: str, run_id: str, spool_dir: str, artifact_root: str, k: int,
            max_html_samples: int) -> list[str]:
    """The command line that starts a worker for these writer settings."""
    return [sys.executable, "-m", "attrib_mlops.tracking.upload_worker", "--tracking-uri", tracking_uri,
            "--run-id", run_id, "--spool-dir", spool_dir, "--artifact-root", artifact_root, "--k", str(k),
            "--max-html-samples", str(max_html_samples)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracking-uri", required=True)
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--spool-dir", required=True)
    ap.add_argument("--artifact-root", default="attribution")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--max-html-samples", type=int, default=50)
    ap.add_argument("--nice", type=int, default=int(os.environ.get("ATTRIB_MLOPS_UPLOAD_NICE", "0")),
                    help="niceness increment of the worker (default 0, or $ATTRIB_MLOPS_UPLOAD_NICE)")
    args = ap.parse_args(argv)
    if hasattr(os, "nice") and args.nice:
        os.nice(args.nice)
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")  # the protocol's channel ...
    os.dup2(2, 1)  # ... and whatever else is printed goes to stderr
    sys.stdout = sys.stderr

    from mlflow.tracking import MlflowClient

    from attrib_mlops.tracking.writer import AttributionWriter

    writer = AttributionWriter(MlflowClient(tracking_uri=args.tracking_uri), args.run_id, args.artifact_root,
                               spool_dir=args.spool_dir, k=args.k, max_html_samples=args.max_html_samples)
    writer._refresh_each_pass = True  # the parent, ``attrib-mlops sync`` or another writer may commit too
    try:  # imports done: the parent's patience starts now
        replies.write(json.dumps({"ready": True, "cpu_s": time.process_time()}) + "\n")
        replies.flush()
    except BrokenPipeError:  # the parent ended while this worker started: nothing to do
        return 0
    for line in sys.stdin:
        if line.strip() != "flush":
            break
        try:
            failure = writer._flush_pass()
            error = None if failure is None else f"{type(failure).__name__}: {str(failure)[:500]}"
        except Exception as e:  # noqa: BLE001 - reported to the parent, which keeps the spool
            error = f"{type(e).__name__}: {str(e)[:500]}"
        try:
            replies.write(json.dumps({"ok": error is None, "error": error, "cpu_s": time.process_time()}) + "\n")
            replies.flush()
        except BrokenPipeError:  # the parent is gone: what is not committed stays in the spool
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
