"""Top-level training-data API: lazy exports, folders and run ids accepted as the index."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_exports_are_lazy():
    code = ("import sys, attrib_mlops; assert 'torch' not in sys.modules; "
            "f = attrib_mlops.attribute_training_data; assert 'torch' not in sys.modules; "
            "from attrib_mlops import build_training_index, compare_continuations, TrainingIndex, "
            "TrainingDataAttribution; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_index_argument_forms(tmp_path):
    import attrib_mlops
    from attrib_mlops.training_data.errors import NoTrainingIndexError

    with pytest.raises(NoTrainingIndexError, match="neither an index folder nor an MLflow run id"):
        attrib_mlops.attribute_training_data(str(tmp_path / "missing"), None, None, "w1", " w2")
    with pytest.raises(NoTrainingIndexError, match="holds no training-data index"):
        attrib_mlops.compare_continuations(str(tmp_path), None, None, "w1", " w2")
