"""Recipe: an attribution regression check catches a shortcut that accuracy does not see.

Trains three tiny GPT-2 models on the synthetic key-value task (CPU, about a
minute in total), each with :class:`~attrib_mlops.callbacks.AttributionCallback`
logging attribution of the same probe set to a local SQLite MLflow store:

* ``clean``          seed 0, clean training data (the baseline);
* ``clean-reseed``   seed 1 (other initialisation, data and data order), clean data;
* ``shortcut``       seed 0, training data with a spurious cue: ``hint <answer> ;``
  before the question, so the model can answer without reading the asked key's value.

The probe prompts carry the hint (correct) for every model, so accuracy is
comparable: all three answer (nearly) every probe right. The recipe then runs
:func:`attrib_mlops.check.compare` with the default policy:

* clean vs clean-reseed must PASS,
* clean vs shortcut must be a REGRESSION on attribution rules while the two
  accuracies differ by less than the policy's ``accuracy_tolerance``.

The reseed and shortcut runs also run the *live* check against the clean run at
every logged step (metric ``attrib/check/pass``), and the final verdicts are
logged back to the candidate runs (tags ``attrib_mlops.check.*``, reports under
``attribution/checks/``). Exit code 0 when the story holds, 1 otherwise.

Usage::

    python recipes/regression_check.py [--store ./mlruns-check/mlflow.db] [--steps 400]
    mlflow ui --backend-store-uri sqlite:///mlruns-check/mlflow.db      # to look at the runs
    attrib-mlops check --tracking-uri sqlite:///mlruns-check/mlflow.db \\
        --baseline runs:/<clean run id> --candidate runs:/<shortcut run id>

Training runs with one torch thread: for a model this small, intra-op threads
cost more than they save, and with other processes on the machine two threads
were 8x slower in our measurements. The previous thread count is restored.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

#: What the recipe trains and checks (the README's numbers come from these values).
CONFIG: dict[str, Any] = dict(
    steps=400,  # the clean model reaches 100% probe accuracy by step ~250 (measured); DEFAULT_TRAIN uses 1500
    batch_size=32,
    lr=3e-3,
    n_probe=32,
    probe_seed=1234,
    log_every=100,
    methods=("saliency", "input_x_gradient", "attention"),
    experiment="attrib-mlops-regression-check",
)
#: The three models: name -> (kind, seed).
MODELS: dict[str, tuple[str, int]] = {
    "clean": ("clean", 0),
    "clean-reseed": ("clean", 1),
    "shortcut": ("shortcut", 0),
}
#: MLflow metric holding the probe accuracy (logged at every attribution step).
ACCURACY_METRIC = "probe_accuracy"


@contextlib.contextmanager
def _one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def probe(n: int | None = None, seed: int | None = None):
    """The probe set: held-out prompts WITH a correct hint (same prompts for every model)."""
    from attrib_mlops.demo.tasks import probe_set

    return probe_set(n or CONFIG["n_probe"], seed=CONFIG["probe_seed"] if seed is None else seed, shortcut=True)


def policy():
    """The policy of the story: the default one, with accuracy read from the runs."""
    from attrib_mlops.check import Policy

    return Policy(accuracy_metric=ACCURACY_METRIC)


def store_uri(store: str | os.PathLike) -> str:
    path = Path(store).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def train_one(
    name: str,
    tracking_uri: str,
    *,
    steps: int | None = None,
    baseline_run: str | None = None,
    experiment: str | None = None,
    spool_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train one of :data:`MODELS` with the attribution callback logging to a new MLflow run.

    With ``baseline_run`` (a REF) the callback also runs the live check at every logged step.
    Returns ``{"name", "run_id", "accuracy", "clean_accuracy", "seconds", "live_check": {step: 1.0/0.0},
    "accuracy_history": {step: probe accuracy}, "failures": [...]}``.
    """
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient
    from transformers import TrainerCallback

    from attrib_mlops.callbacks import AttributionCallback
    from attrib_mlops.demo.tasks import keyvalue_vocab, make_keyvalue_dataset, probe_set
    from attrib_mlops.demo.tiny import build_tiny_model
    from attrib_mlops.demo.train import DEFAULT_DATA, DEFAULT_MODEL, SHORTCUT_DATA, keyvalue_accuracy, train_keyvalue
    from attrib_mlops.tracking.runs import get_or_create_run

    kind, seed = MODELS[name]
    steps = int(steps or CONFIG["steps"])
    client = MlflowClient(tracking_uri=tracking_uri)
    db_dir = Path(tracking_uri[len("sqlite:///"):]).parent if tracking_uri.startswith("sqlite:///") else Path(".")
    run_id = get_or_create_run(client=client, experiment=experiment or CONFIG["experiment"],
                               artifact_location=(db_dir / "artifacts").resolve().as_uri(), run_name=name,
                               tags={"recipe": "regression_check", "kind": kind, "seed": str(seed)}).run_id
    model, tok = build_tiny_model(keyvalue_vocab(), **dict(DEFAULT_MODEL, seed=seed))
    data = make_keyvalue_dataset(**dict(SHORTCUT_DATA if kind == "shortcut" else DEFAULT_DATA,
                                        n=steps * CONFIG["batch_size"], seed=seed))
    probe_ds = probe()
    history: dict[int, float] = {}

    class ProbeAccuracy(TrainerCallback):
        """Log the probe accuracy next to the attribution (same steps), for the accuracy rule."""

        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step % CONFIG["log_every"] == 0 or state.global_step == state.max_steps:
                acc = history[state.global_step] = keyvalue_accuracy(model, tok, probe_ds)
                client.log_batch(run_id, metrics=[Metric(ACCURACY_METRIC, acc, int(time.time() * 1000),
                                                         state.global_step)])

    cb = AttributionCallback(
        probe_ds, methods=list(CONFIG["methods"]), every_n_steps=CONFIG["log_every"], on_save=False,
        tracking_uri=tracking_uri, run_id=run_id, spool_dir=spool_dir or (db_dir / "spool"),
        baseline_run=baseline_run, check_policy=policy() if baseline_run else None,
    )
    t0 = time.perf_counter()
    with _one_thread():
        # ProbeAccuracy first: the accuracy of a step is logged before its attribution is checked
        train_keyvalue(model, tok, data, max_steps=steps, batch_size=CONFIG["batch_size"], lr=CONFIG["lr"],
                       seed=seed, callbacks=[ProbeAccuracy(), cb])
        accuracy = keyvalue_accuracy(model, tok, probe_ds)
        clean_accuracy = keyvalue_accuracy(model, tok, probe_set(CONFIG["n_probe"], seed=CONFIG["probe_seed"]))
    seconds = time.perf_counter() - t0
    client.set_terminated(run_id, "FINISHED")
    live = {}
    if baseline_run:
        live = {int(m.step): m.value for m in client.get_metric_history(run_id, "attrib/check/pass")}
    return {"name": name, "run_id": run_id, "accuracy": accuracy, "clean_accuracy": clean_accuracy,
            "seconds": seconds, "live_check": dict(sorted(live.items())), "accuracy_history": history,
            "failures": list(cb.monitor.failures)}


def run_story(store: str | os.PathLike = "./mlruns-check/mlflow.db", *, steps: int | None = None,
              log_back: bool = True) -> dict[str, Any]:
    """Train the three models, compare, and return every number the recipe prints.

    Returns ``{"tracking_uri", "models": {name: train_one(...)}, "checks": {"clean-reseed": CheckResult,
    "shortcut": CheckResult}, "holds": bool, "why": [str], "seconds": float}``.
    """
    from attrib_mlops.check import compare, log_verdict

    t0 = time.perf_counter()
    uri = store_uri(store)
    models = {"clean": train_one("clean", uri, steps=steps)}
    baseline = f"runs:/{models['clean']['run_id']}"
    for name in ("clean-reseed", "shortcut"):
        models[name] = train_one(name, uri, steps=steps, baseline_run=baseline)
    checks = {}
    for name in ("clean-reseed", "shortcut"):
        result = compare(baseline, f"runs:/{models[name]['run_id']}", policy(), tracking_uri=uri)
        if log_back:
            log_verdict(result, models[name]["run_id"], uri)
        checks[name] = result
    holds, why = story_holds(models, checks)
    return {"tracking_uri": uri, "models": models, "checks": checks, "holds": holds, "why": why,
            "seconds": time.perf_counter() - t0}


def story_holds(models: dict[str, Any], checks: dict[str, Any]) -> tuple[bool, list[str]]:
    """The issue's criterion: reseed passes; shortcut fails on attribution while accuracy stays within
    the tolerance (or, if accuracy drops, the live attribution check fired at an earlier step)."""
    why = []
    pol = policy()
    reseed, shortcut = checks["clean-reseed"], checks["shortcut"]
    if reseed.verdict != "pass":
        why.append(f"clean vs clean-reseed should pass, got {reseed.verdict}: {reseed.message()}")
    if shortcut.verdict != "regression":
        why.append(f"clean vs shortcut should be a regression, got {shortcut.verdict}: {shortcut.message()}")
    attribution_failed = [(m, r) for m, r in shortcut.failed_rules if m != "global"]
    if shortcut.verdict == "regression" and not attribution_failed:
        why.append("clean vs shortcut failed only on accuracy, not on attribution")
    gap = abs(models["clean"]["accuracy"] - models["shortcut"]["accuracy"])
    if gap >= pol.accuracy_tolerance:
        first_attr = _first_failure(models["shortcut"]["live_check"])
        first_acc = _first_accuracy_drop(models)
        if first_attr is None or (first_acc is not None and first_attr >= first_acc):
            why.append(f"accuracies differ by {gap:.3f} >= tolerance {pol.accuracy_tolerance} and the attribution "
                       f"check did not fire earlier (attribution step {first_attr}, accuracy step {first_acc})")
    return not why, why


def _first_failure(live: dict[int, float]) -> int | None:
    return next((s for s, v in sorted(live.items()) if v < 0.5), None)


def _first_accuracy_drop(models: dict[str, Any]) -> int | None:
    """First logged step at which the shortcut's probe accuracy is below the clean one's by the tolerance."""
    tol = policy().accuracy_tolerance
    base, cand = models["clean"]["accuracy_history"], models["shortcut"]["accuracy_history"]
    return next((s for s in sorted(set(base) & set(cand)) if base[s] - cand[s] > tol), None)


def report(out: dict[str, Any]) -> str:
    """The text the recipe prints: accuracies, live checks, verdicts and the failing metric values."""
    lines = [f"MLflow store: {out['tracking_uri']}", ""]
    lines.append(f"{'model':<14}{'run id':<34}{'probe acc':>10}{'no-hint acc':>13}{'train s':>9}")
    for name, m in out["models"].items():
        lines.append(f"{name:<14}{m['run_id']:<34}{m['accuracy']:>10.3f}{m['clean_accuracy']:>13.3f}"
                     f"{m['seconds']:>9.1f}")
    steps = sorted(set().union(*(m["accuracy_history"] for m in out["models"].values())))
    lines += ["", "by step (probe accuracy; live check against the clean run's same step):",
              f"{'step':<24}" + "".join(f"{s:>7}" for s in steps)]
    for name, m in out["models"].items():
        acc = m["accuracy_history"]
        lines.append(f"{name + ' accuracy':<24}" + "".join(f"{acc[s]:>7.2f}" if s in acc else f"{'-':>7}"
                                                          for s in steps))
        if m["live_check"]:
            live = m["live_check"]
            lines.append(f"{name + ' check':<24}" + "".join(
                f"{('pass' if live[s] >= 0.5 else 'FAIL') if s in live else '-':>7}" for s in steps))
    lines.append("")
    for name, result in out["checks"].items():
        lines.append(f"== clean vs {name}: {result.verdict.upper()} (exit code {result.exit_code})")
        for r in result.rules:
            lines.append(f"   {'(accuracy)':<18} {_mark(r)} {r.describe()}")
        for m in result.methods:
            for r in m.rules:
                lines.append(f"   {m.method:<18} {_mark(r)} {r.describe()}")
        lines.append("")
    lines.append(f"story holds: {out['holds']}" + ("" if out["holds"] else " -- " + "; ".join(out["why"])))
    lines.append(f"total {out['seconds']:.0f} s")
    return "\n".join(lines)


def _mark(r: Any) -> str:
    return {True: "pass", False: "FAIL", None: "----"}[r.passed]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default="./mlruns-check/mlflow.db", help="SQLite file of the MLflow store")
    parser.add_argument("--steps", type=int, default=CONFIG["steps"], help="training steps per model")
    parser.add_argument("--no-log", action="store_true", help="do not log the verdicts back to the runs")
    parser.add_argument("--details", action="store_true", help="also print the full check summaries")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("alembic", "mlflow", "transformers", "inseq", "attrib_mlops.callbacks"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    out = run_story(args.store, steps=args.steps, log_back=not args.no_log)
    print(report(out))
    if args.details:
        for name, result in out["checks"].items():
            print(f"\n---- clean vs {name}\n{result.summary_text()}")
    return 0 if out["holds"] else 1


if __name__ == "__main__":
    sys.exit(main())
