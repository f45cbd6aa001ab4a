"""jobs.spec: validation of job specs, every bad key named."""

from __future__ import annotations

import json

import pytest

from attrib_mlops.errors import SpecError
from attrib_mlops.jobs import load_job, parse_job


BASE = {"name": "j", "models": [{"name": "m", "ref": "x"}], "methods": ["saliency"], "samples": {"source": "s.jsonl"}}


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"models": [{"name": "m", "ref": "x", "pth": 1}]}, "unknown key 'models.0.pth'"),
        ({"methods": ["saliency", "salency"]}, "'methods.1': unknown method 'salency'; valid: "),
        ({"options": {"batch_sise": 4}}, "unknown key 'options.batch_sise' (valid keys: batch_size"),
        ({"options": {"batch_size": "many"}}, "'options.batch_size': Input should be a valid integer"),
        ({"models": "m"}, "'models': Input should be a valid list"),
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"samples": {"source": "s.jsonl", "limt": 3}}, "unknown key 'samples.limt'"),
        ({"targets": "model:other"}, "'targets': model 'other' is not in models"),
        ({"targets": "sometimes"}, "'targets': must be 'given', 'generate' or 'model:<name"),
        ({"engine": "native", "methods": ["lime"]}, "'methods.0': engine 'native' does not support 'lime'"),
        ({"engine": "captum", "methods": ["saliency"]}, "'methods.0': engine 'captum' does not support 'saliency' "
                                                        "(it supports lime, kernel_shap)"),
        ({"models": [{"name": "a b", "ref": "x"}]}, "'models.0.name': model name 'a b' must start"),
    ],
)
def test_spec_errors_name_the_key(change, expected):
    with pytest.raises(SpecError) as err:
        parse_job({**BASE, **change})
    assert expected in str(err.value)


def test_spec_error_names_every_bad_key_and_defaults():
    with pytest.raises(SpecError) as err:
        parse_job({**BASE, "models": [{"name": "m", "ref": "x", "pth": 1}], "methods": ["salency"],
                   "options": {"nsteps": 3}})
    msg = str(err.value)
    assert "models.0.pth" in msg and "methods.0" in msg and "options.nsteps" in msg
    assert parse_job({**BASE, "engine": "captum", "methods": ["lime", "kernel_shap"]}).engine == "captum"
    spec = parse_job(BASE)
    assert spec.output_dir.replace("\\", "/") == "attrib-results/j" and spec.cache_dir == ".attrib-cache"
    assert spec.to_dict()["options"] == {}


def test_load_job_file_errors(tmp_path):
    with pytest.raises(SpecError, match="job file .*nope.yaml' not found"):
        load_job(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [x\n")
    with pytest.raises(SpecError, match=r"bad.yaml' is not valid YAML: .*line"):
        load_job(bad)
    good = tmp_path / "j.json"
    good.write_text(json.dumps(BASE))
    assert load_job(good).name == "j"
    good.write_text(json.dumps({**BASE, "methods": ["nope"]}))
    with pytest.raises(SpecError, match=r"invalid job spec '.*j.json': 'methods.0': unknown method"):
        load_job(good)


def test_former_module_hands_on_the_same_objects():
    import attrib_mlops.job as old
    import attrib_mlops.jobs as new

    assert old.__all__ and all(getattr(old, n) is getattr(new, n) for n in old.__all__)
