"""Where attribution lives in an MLflow run: the storage contract, schema version 1.

Every run that carries attribution has, under the artifact root ``attribution/``
(configurable per writer; the root in use is in the run tag
``attrib_mlops.artifact_root``)::

    attribution/
      manifest.json                                  # what exists: the only file a reader trusts first
      steps/
        0000000010/                                  # step, zero padded to 10 digits (sorts as text)
          summary.json                               # aggregated + per-sample metrics, token importances
          view.html                                  # self-contained Bokeh page the MLflow UI shows inline
          <model>/<method>.parquet                   # one row per probe sample (see columnar.py)
        0000000020/
          ...

``manifest.json`` (UTF-8 JSON object)::

    {
      "format": "attrib-mlops/attribution",
      "schema_version": 1,
      "artifact_root": "attribution",
      "created": "2025-01-01T00:00:00+00:00",   "updated": "...",     # ISO 8601, UTC
      "versions": {"attrib-mlops": "0.1.0", "mlflow": "...", "pyarrow": "...", "numpy": "..."},
      "probe": {
        "n": 3, "fingerprint": "<sha256 of the canonical JSON of the samples>",
        "samples": [{"id": "s0", "prompt": "...", "target": "...", "ground_truth": [2] | null}, ...],
        "tokens": {"<model>": {"s0": {"source_tokens": [...], "target_tokens": [...], "n_prompt": 4}}}
      },
      "models": {"<model>": {"path": "<safe model name>"}},
      "methods": {"<method>": {"path": "<safe method name>"}},
      "steps": [
        {"step": 10, "revision": 1, "logged": "<ISO time>",
         "models": {"<model>": ["saliency", "attention"]},
         "files": {"<model>": {"saliency": "steps/0000000010/<model>/saliency.parquet"}},
         "summary": "steps/0000000010/summary.json", "view": "steps/0000000010/view.html",
         "n_samples": 3}
      ]
    }

The token matrix is one *kind* of attribution; the manifest's additive
``"kinds": {"<kind>": {"version": n}}`` lists the kinds a run holds (absent in
manifests of the first v1 writer: token matrices only). Other kinds keep their
files, summary and view under ``steps/<step>/<kind>/`` and their entry under the
step record's ``"kinds"``; see :mod:`attrib_mlops.tracking.kinds`.

Paths inside the manifest are relative to the artifact root. ``steps`` is sorted
by step. A step's ``revision`` grows when a later call adds another model or
method to the same step (``summary.json`` and ``view.html`` are then rewritten
to cover everything; the Parquet files never change once listed).

Atomicity: a writer uploads all files of a step first and rewrites
``manifest.json`` only afterwards, so **a reader trusts only the steps listed in
the manifest** and never sees a half-written step. Files present under
``steps/`` but not listed are leftovers of an interrupted upload and are
ignored (the next retry overwrites them).

Name sanitising (model and method names become path components): a name made
only of lowercase ASCII letters, digits, ``.``, ``_`` and ``-``, not starting
with ``.``, at most 80 characters and not one of the step's own file names is
used as is. Any other name is lowercased, each run of other characters becomes
``_``, it is cut to 80 characters and gets ``-`` plus the first 8 hex digits of
``sha1(name)`` appended, so two different names never share a path (also on
case-insensitive file systems). The manifest maps every original name to its
path, so readers never need to recompute this.

MLflow metric keys: ``attrib/<method>/<metric>`` for the default model name
``"model"``, ``attrib/<model>/<method>/<metric>`` otherwise, and
``attrib/[<model>/]agreement/<m1>_vs_<m2>`` for method agreement. Characters
MLflow does not allow in keys (anything but letters, digits, ``_ - . :``, space)
and ``/`` inside a name become ``_``.

Run tags kept up to date by the writer (so listing runs needs no download):
``attrib_mlops.schema_version``, ``attrib_mlops.artifact_root``,
``attrib_mlops.steps`` (count), ``attrib_mlops.last_step``,
``attrib_mlops.methods`` and ``attrib_mlops.models`` (JSON lists),
``attrib_mlops.n_probe``.

See ``docs/storage.md`` for the same description aimed at readers that do not
use this package.
"""

from __future__ import annotations

import hashlib
import re

from attrib_mlops.errors import InputError

__all__ = [
    "SCHEMA_VERSION",
    "FORMAT_ID",
    "DEFAULT_ROOT",
    "DEFAULT_MODEL",
    "MANIFEST_NAME",
    "SUMMARY_NAME",
    "VIEW_NAME",
    "STEPS_DIR",
    "TAG_SCHEMA_VERSION",
    "TAG_ARTIFACT_ROOT",
    "TAG_STEPS",
    "TAG_LAST_STEP",
    "TAG_METHODS",
    "TAG_MODELS",
    "TAG_N_PROBE",
    "safe_name",
    "step_dirname",
    "join",
    "manifest_path",
    "step_path",
    "results_relpath",
    "summary_relpath",
    "view_relpath",
    "metric_component",
    "metric_key",
]

#: Version of the storage layout. Bump on any change a reader of the previous version would misread.
SCHEMA_VERSION = 1
FORMAT_ID = "attrib-mlops/attribution"
DEFAULT_ROOT = "attribution"
DEFAULT_MODEL = "model"
MANIFEST_NAME = "manifest.json"
SUMMARY_NAME = "summary.json"
VIEW_NAME = "view.html"
STEPS_DIR = "steps"
MAX_STEP = 10**10 - 1

TAG_SCHEMA_VERSION = "attrib_mlops.schema_version"
TAG_ARTIFACT_ROOT = "attrib_mlops.artifact_root"
TAG_STEPS = "attrib_mlops.steps"
TAG_LAST_STEP = "attrib_mlops.last_step"
TAG_METHODS = "attrib_mlops.methods"
TAG_MODELS = "attrib_mlops.models"
TAG_N_PROBE = "attrib_mlops.n_probe"

_SAFE_OK = re.compile(r"[a-z0-9_\-][a-z0-9._\-]{0,79}")
_UNSAFE_RUN = re.compile(r"[^a-z0-9._\-]+")
_RESERVED = {SUMMARY_NAME, VIEW_NAME, MANIFEST_NAME, STEPS_DIR}
_METRIC_BAD = re.compile(r"[^A-Za-z0-9_\-. :]")


def safe_name(name: str) -> str:
    """Path component for a model or method name (see the module docstring).

    >>> safe_name("saliency"), safe_name("openai/GPT-2")
    ('saliency', 'openai_gpt-2-e9ab7cc1')
    """
    if not isinstance(name, str) or not name:
        raise InputError(f"a model or method name must be a nonempty string, got {name!r}")
    if _SAFE_OK.fullmatch(name) and name not in _RESERVED:
        return name
    base = _UNSAFE_RUN.sub("_", name.lower()).lstrip(".")[:80] or "_"
    return f"{base}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"


def step_dirname(step: int) -> str:
    """``"0000000010"`` for step 10; steps are integers in ``0 .. 9_999_999_999``."""
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEP:
        try:
            import numpy as np

            if isinstance(step, np.integer) and 0 <= int(step) <= MAX_STEP:
                return f"{int(step):010d}"
        except ImportError:  # pragma: no cover
            pass
        raise InputError(f"step must be an integer in 0..{MAX_STEP}, got {step!r}")
    return f"{step:010d}"


def join(*parts: str) -> str:
    """POSIX join of artifact path parts (artifact paths always use ``/``)."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def manifest_path(root: str = DEFAULT_ROOT) -> str:
    """Artifact path of the manifest, e.g. ``attribution/manifest.json``."""
    return join(root, MANIFEST_NAME)


def step_path(step: int, root: str = DEFAULT_ROOT) -> str:
    """Artifact directory of a step, e.g. ``attribution/steps/0000000010``."""
    return join(root, STEPS_DIR, step_dirname(step))


def results_relpath(step: int, model: str, method: str) -> str:
    """Path of a (model, method) Parquet file relative to the artifact root."""
    return join(STEPS_DIR, step_dirname(step), safe_name(model), safe_name(method) + ".parquet")


def summary_relpath(step: int) -> str:
    return join(STEPS_DIR, step_dirname(step), SUMMARY_NAME)


def view_relpath(step: int) -> str:
    return join(STEPS_DIR, step_dirname(step), VIEW_NAME)


def metric_component(name: str) -> str:
    """A name made safe for one component of an MLflow metric key (``/`` becomes ``_``).

    >>> metric_component("org/model:v2 (ft)")
    'org_model:v2 _ft_'
    """
    return _METRIC_BAD.sub("_", str(name).replace("/", "_"))


def metric_key(method: str, metric: str, model: str = DEFAULT_MODEL) -> str:
    """MLflow metric key of an attribution metric.

    >>> metric_key("saliency", "topk_mass"), metric_key("saliency", "topk_mass", model="ft")
    ('attrib/saliency/topk_mass', 'attrib/ft/saliency/topk_mass')
    """
    parts = ["attrib"]
    if model != DEFAULT_MODEL:
        parts.append(metric_component(model))
    parts += [metric_component(method), metric_component(metric)]
    return "/".join(parts)
