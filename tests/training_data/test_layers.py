"""The compute layer of training-data attribution imports no tracking, MLflow, dashboard, jobs, check or callbacks."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).parents[2] / "attrib_mlops" / "training_data"
FORBIDDEN = ("mlflow", "panel", "panel_app", "attrib_mlops.tracking", "attrib_mlops.job", "attrib_mlops.jobs",
             "attrib_mlops.check", "attrib_mlops.callbacks", "attrib_mlops.cli", "attrib_mlops.tda_api")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
    return names


def test_compute_modules_stay_in_their_layer():
    modules = sorted(p for p in PKG.glob("*.py") if p.name != "cli.py")  # cli.py is an entry point
    assert len(modules) >= 14
    for path in modules:
        for name in _imports(path):
            assert not any(name == f or name.startswith(f + ".") for f in FORBIDDEN), f"{path.name} imports {name}"


def test_result_needs_no_deep_learning_stack():
    for name in _imports(PKG / "result.py"):
        assert name.split(".")[0] not in ("torch", "transformers", "safetensors"), name
