"""Bad input through the CLI (issue 9 item 7): one line naming the file and what to do, exit 2, no traceback."""

from __future__ import annotations

import csv
import json
import shutil
import socket

import pytest
import yaml
from typer.testing import CliRunner

from attrib_mlops.cli import app

runner = CliRunner()


def _run(tmp_path, model_dir, samples, targets="given"):
    job = {"name": "bad-input", "models": [{"name": "tiny", "ref": str(model_dir)}], "methods": ["saliency"],
           "samples": {"source": str(samples)}, "targets": targets, "output_dir": str(tmp_path / "out"),
           "cache_dir": str(tmp_path / "cache")}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    res = runner.invoke(app, ["run", str(path), "--no-progress", "--no-mlflow"])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
    return " ".join(res.output.split())


def test_non_utf8_jsonl(tmp_path, tiny_dir):
    p = tmp_path / "s.jsonl"
    p.write_bytes(b'{"id": "a", "prompt": "w1 w2 \xff\xfe", "target": " w3"}\n')
    out = _run(tmp_path, tiny_dir, p)
    assert str(p) in out and "not UTF-8" in out and "0xff" in out


def test_non_utf8_csv(tmp_path, tiny_dir):
    p = tmp_path / "s.csv"
    p.write_bytes(b"id,prompt,target\na,w1 w2 \xe9,w3\n")
    out = _run(tmp_path, tiny_dir, p)
    assert str(p) in out and "not UTF-8" in out


def test_corrupt_parquet(tmp_path, tiny_dir):
    p = tmp_path / "s.parquet"
    p.write_bytes(b"PAR1" + b"\x00garbage" * 20)
    out = _run(tmp_path, tiny_dir, p)
    assert str(p) in out and "not a readable Parquet file" in out


def test_csv_field_over_the_csv_limit(tmp_path, tiny_dir):
    p = tmp_path / "s.csv"
    p.write_text("id,prompt,target\na," + "w1 " * (csv.field_size_limit() // 3 + 10) + ",w2\n")
    out = _run(tmp_path, tiny_dir, p)
    assert str(p) in out and "longer than the csv module's limit" in out


@pytest.mark.parametrize("suffix,body", [(".jsonl", ""), (".json", "[]"), (".csv", "id,prompt,target\n")])
def test_empty_samples_file(tmp_path, tiny_dir, suffix, body):
    p = tmp_path / f"s{suffix}"
    p.write_text(body)
    out = _run(tmp_path, tiny_dir, p)
    assert str(p) in out and "is empty" in out


@pytest.mark.parametrize("targets", ["given", "generate"])
def test_model_folder_without_tokenizer(tmp_path, tiny_dir, targets):
    model = tmp_path / "no-tok"
    shutil.copytree(tiny_dir, model)
    for f in model.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
            f.unlink()
    samples = tmp_path / "s.json"
    samples.write_text(json.dumps([{"id": "a", "prompt": "w1 w2", "target": " w3"}]))
    out = _run(tmp_path, model, samples, targets)
    assert str(model) in out and "tokenizer" in out and "missing" in out


def test_dashboard_port_in_use(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = runner.invoke(app, ["dashboard", "--port", str(port), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    assert res.exit_code == 2, res.output
    out = " ".join(res.output.split())
    assert f"port {port}" in out and "already in use" in out and "--port" in out and "Traceback" not in out
