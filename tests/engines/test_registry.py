"""The method registry: one class per method, listed without torch, derived everywhere."""

from __future__ import annotations

import subprocess
import sys

import pytest

from attrib_mlops.api import list_methods
from attrib_mlops.engines.registry import AttributionMethod, get_method, method_classes, method_names
from attrib_mlops.errors import UnknownMethodError, UnsupportedMethodError


def test_native_methods_come_from_the_method_modules():
    assert method_names("native") == ["saliency", "input_x_gradient", "integrated_gradients", "attention",
                                      "occlusion"]
    assert list_methods()["native"] == method_names("native")
    assert {c.__module__.rsplit(".", 1)[-1] for c in method_classes("native")} == set(method_names("native"))
    assert all(c.kind == "token_matrix" for c in method_classes("native"))


def test_listing_methods_imports_no_torch():
    code = ("import sys; from attrib_mlops.engines.registry import method_names; n = method_names('native'); "
            "import attrib_mlops.engines; assert 'torch' not in sys.modules, 'torch imported'; print(len(n))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "5"


def test_a_new_method_class_registers_itself_and_errors_name_the_choices():
    class Constant(AttributionMethod):
        name, engine, order = "test_constant_reg", "test_engine_reg", 1

    assert get_method("test_constant_reg", "test_engine_reg") is Constant
    assert get_method("test_constant_reg") is Constant
    assert "test_constant_reg" not in method_names("native")
    with pytest.raises(UnsupportedMethodError, match="native engine does not implement 'lime'; it supports saliency"):
        get_method("lime", "native")
    with pytest.raises(UnknownMethodError, match="unknown attribution method 'nope'"):
        get_method("nope")
    with pytest.raises(TypeError, match="names no engine"):
        type("NoEngine", (AttributionMethod,), {"name": "test_no_engine"})


def test_classifier_methods_are_registered_classes_declaring_the_model_kind():
    from attrib_mlops.classify import classifier_methods, resolve_classifier_engine
    from attrib_mlops.engines.classifier import ClassifierEngine

    assert method_names("native", model_kind="classifier") == method_names("native")
    assert classifier_methods() == {"native": method_names("native"), "captum": ["lime", "kernel_shap"]}
    assert list_methods()["captum"] == ["lime", "kernel_shap"]
    assert ClassifierEngine().methods() == method_names("native")
    assert all(c.model_kinds == ("causal_lm", "classifier") for c in method_classes("native"))

    class OnlyLM(AttributionMethod):
        name, engine, order = "test_only_lm_reg", "native", 99

    class OnlyClassifier(AttributionMethod):
        name, engine, order, model_kinds = "test_only_clf_reg", "native", 98, ("classifier",)

    try:
        assert "test_only_lm_reg" not in classifier_methods()["native"]
        assert "test_only_clf_reg" in classifier_methods()["native"]
        assert "test_only_clf_reg" not in method_names("native", model_kind="causal_lm")
        assert resolve_classifier_engine("test_only_clf_reg") == "native"
        with pytest.raises(UnsupportedMethodError, match="for a classifier; it supports saliency"):
            get_method("test_only_lm_reg", "native", "classifier")
    finally:  # the registry is process-wide: leave the native listing as it was
        from attrib_mlops.engines import registry

        registry._METHODS.pop(("native", "test_only_lm_reg"))
        registry._METHODS.pop(("native", "test_only_clf_reg"))
    with pytest.raises(TypeError, match="unknown model kinds"):
        type("BadKind", (AttributionMethod,), {"name": "test_bad_kind", "engine": "x", "model_kinds": ("seq2seq",)})


def test_cli_methods_table_shows_model_kinds(monkeypatch):
    from typer.testing import CliRunner

    from attrib_mlops.cli import app
    from attrib_mlops.cli.app import console

    monkeypatch.setattr(console, "width", 200)  # the console read COLUMNS when it was imported
    res = CliRunner().invoke(app, ["methods"])
    assert res.exit_code == 0, res.output
    rows = {line.split()[1]: line for line in res.stdout.splitlines() if line.startswith("│")}
    assert "causal_lm, classifier" in rows["kernel_shap"] and "causal_lm, classifier" in rows["saliency"]
    assert "classifier" not in rows["deeplift"] and "causal_lm" in rows["deeplift"]
