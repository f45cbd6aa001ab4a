"""The shared helpers of attrib_mlops._util: one JSON text, one content hash, one nanmean, one version list."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from attrib_mlops._util import VERSIONED_PACKAGES, content_hash, dumps, library_versions, nanmean


def test_dumps_stored_text_is_compact_and_nan_free():
    text = dumps({"b": float("nan"), "a": [np.float32(0.5), np.inf], "é": np.int64(3)})
    assert text == '{"b":null,"a":[0.5,null],"é":3}'
    assert json.loads(text)["é"] == 3


def test_dumps_canonical_matches_the_former_fingerprint_text():
    obj = {"z": [1, {"y": "ü", "x": None}], "a": 2.5}
    old = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert dumps(obj, canonical=True) == old
    assert content_hash(obj) == hashlib.sha256(old.encode("utf-8")).hexdigest()
    assert dumps({"p": object}, canonical=True).startswith('{"p":"<class')  # default=str, never raises


@pytest.mark.parametrize("values, empty, expected", [
    ([1.0, None, math.nan, 3.0, math.inf], math.nan, 2.0),
    ([None, math.nan], None, None),
    (np.array([[1.0, 2.0], [np.nan, 6.0]]), math.nan, 3.0),
])
def test_nanmean(values, empty, expected):
    assert nanmean(values, empty=empty) == expected


def test_nanmean_empty_default_is_nan():
    assert math.isnan(nanmean([]))


def test_library_versions_one_list():
    v = library_versions()
    assert list(v) == list(VERSIONED_PACKAGES)
    assert v["numpy"] == np.__version__ and {"torch", "mlflow", "pyarrow", "transformers"} <= set(v)
