"""``attrib-mlops tda``: index and query through typer's CliRunner; user errors are one line and exit 2.

Mounted on the main CLI as ``attrib-mlops tda``.
"""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from attrib_mlops.cli.tda import tda_app

runner = CliRunner()


@pytest.fixture
def train_file(tmp_path, rows):
    f = tmp_path / "train.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return f


def _one_line_error(res, text):
    assert res.exit_code == 2, res.output
    assert text in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output


def test_index_then_query_a_folder(ckpt_root, train_file, tmp_path):
    out = tmp_path / "index"
    res = runner.invoke(tda_app, ["index", "--checkpoints", str(ckpt_root), "--train-data", str(train_file),
                                  "--out", str(out), "--projection-dim", "64", "--no-progress",
                                  "--option", "per_layer=always"])
    assert res.exit_code == 0, res.output
    assert "indexed 10 examples x 2 checkpoints (64 dims" in res.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["per_layer"] is True and manifest["projection"]["dim"] == 64
    res = runner.invoke(tda_app, ["query", "--index", str(out), "--prompt", "w1 w2 w3", "--target", " w4",
                                  "--top-k", "3", "--method", "datainf"])
    assert res.exit_code == 0, res.output
    assert "datainf: top training examples for ' w4'" in res.stdout
    lines = [ln for ln in res.stdout.splitlines() if ln.strip().startswith(("+", "-"))]
    assert 1 <= len(lines) <= 6 and any("w1 w2 w3 w4" in ln for ln in lines)
    res = runner.invoke(tda_app, ["query", "--index", str(out), "--prompt", "w1 w2 w3", "--target", " w4 w5",
                                  "--target-tokens", "1", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["selected"] == [1] and d["method"] == "tracin" and set(d["top"]) == {"positive", "negative"}


def test_index_to_a_run_and_query_it(ckpt_root, train_file):
    import mlflow

    client = mlflow.tracking.MlflowClient()
    run_id = client.create_run(client.create_experiment("tda-cli")).info.run_id
    res = runner.invoke(tda_app, ["index", "-c", str(ckpt_root), "-d", str(train_file), "--run", run_id,
                                  "--no-progress", "--projection-dim", "32"])
    assert res.exit_code == 0, res.output
    assert f"run {run_id}, artifact training_index/" in res.stdout
    res = runner.invoke(tda_app, ["query", "--run", run_id, "--prompt", "w1 w2 w3", "--target", " w4", "-k", "2"])
    assert res.exit_code == 0, res.output
    assert "tracin: top training examples" in res.stdout


def test_user_errors_are_one_line_with_exit_2(ckpt_root, ckpts, train_file, tmp_path):
    import mlflow

    bare = tmp_path / "checkpoint-3"
    shutil.copytree(ckpts[0], bare)
    (bare / "trainer_state.json").unlink()
    res = runner.invoke(tda_app, ["index", "-c", str(bare), "-d", str(train_file), "--out", str(tmp_path / "i"),
                                  "--no-progress"])
    _one_line_error(res, "no recorded learning rate")
    res = runner.invoke(tda_app, ["index", "-c", str(bare), "-d", str(train_file), "--no-progress"])
    _one_line_error(res, "give --out DIR")
    res = runner.invoke(tda_app, ["index", "-c", str(bare), "-d", str(train_file), "--out", str(tmp_path / "i"),
                                  "--option", "projection_dims=3"])
    _one_line_error(res, "unknown key 'projection_dims'")
    ok = runner.invoke(tda_app, ["index", "-c", str(bare), "-d", str(train_file), "--out", str(tmp_path / "i"),
                                 "--lr", "0.01", "--no-progress"])
    assert ok.exit_code == 0, ok.output
    res = runner.invoke(tda_app, ["query", "--index", str(tmp_path / "i"), "-p", "w1 w2", "-t", " w3",
                                  "--target-tokens", "0,4"])
    _one_line_error(res, "target token 4 is out of range")
    # extending the index: a changed training set, another parameter subset
    fewer = tmp_path / "fewer.jsonl"
    fewer.write_text("".join(train_file.read_text().splitlines(keepends=True)[:-1]))
    extend = ["index", "-c", str(ckpts[1]), "--out", str(tmp_path / "i"), "--no-progress"]
    _one_line_error(runner.invoke(tda_app, [*extend, "-d", str(fewer)]), "the training set no longer matches")
    _one_line_error(runner.invoke(tda_app, [*extend, "-d", str(train_file), "--param", "lm_head*"]),
                    "another parameter subset")
    # querying with another model or another tokenizer than the index's
    from attrib_mlops.demo.tiny import build_tiny_model, save_tiny

    foreign = save_tiny(*build_tiny_model([f"x{i}" for i in range(40)], n_layer=1, n_embd=32, n_head=4,
                                          n_positions=64), tmp_path / "foreign")
    query = ["query", "--index", str(tmp_path / "i"), "-p", "w1 w2", "-t", " w3"]
    _one_line_error(runner.invoke(tda_app, [*query, "--model", str(foreign), "--tokenizer", str(bare)]),
                    "was built for another model")
    _one_line_error(runner.invoke(tda_app, [*query, "--tokenizer", str(foreign)]), "another tokenizer")
    res = runner.invoke(tda_app, ["query", "--index", str(tmp_path / "nope"), "-p", "w1", "-t", " w3"])
    _one_line_error(res, "no index folder")
    client = mlflow.tracking.MlflowClient()
    run_id = client.create_run(client.create_experiment("tda-cli-empty")).info.run_id
    res = runner.invoke(tda_app, ["query", "--run", run_id, "-p", "w1", "-t", " w3"])
    _one_line_error(res, f"run {run_id} has no training-data index")
    assert f"attrib-mlops tda index --run {run_id}" in res.stderr
    res = runner.invoke(tda_app, ["query", "--run", "0" * 32, "-p", "w1", "-t", " w3"])
    _one_line_error(res, "cannot be read")
