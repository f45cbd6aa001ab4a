"""The README's main job: `attrib-mlops demo` trains two runs that land in a local MLflow store."""

from __future__ import annotations

import html.parser

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from attrib_mlops.cli import app
from attrib_mlops.tracking import AttributionReader


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.external = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("src", "href") and v and v.strip().lower().startswith(("http:", "https:", "//")):
                self.external.append((tag, v))


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    store = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--store", str(store), "--steps", "40", "--log-every", "20",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "mlflow ui --backend-store-uri" in res.output and "attrib-mlops dashboard" in res.output
    uri = f"sqlite:///{store.resolve()}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("attrib-mlops-demo")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.tags["attrib_mlops.demo"] for r in runs) == ["clean", "shortcut"]
    reader = AttributionReader(uri)
    listed = {r.run_id for r in reader.list_runs([exp.experiment_id])}
    for run in runs:
        rid = run.info.run_id
        assert rid in listed
        assert run.info.status == "FINISHED"
        assert reader.steps(rid) == [20, 40]
        # attribution metrics plotted over steps next to the loss
        assert [m.step for m in client.get_metric_history(rid, "attrib/saliency/hit_at_1")] == [20, 40]
        assert client.get_metric_history(rid, "loss")
        # a working self-contained HTML view per step
        page = open(client.download_artifacts(rid, "attribution/steps/0000000040/view.html")).read()
        parser = _Links()
        parser.feed(page)
        assert parser.external == []
        assert "Bokeh" in page and "k" in page
        assert (store / "checkpoints").is_dir()
        # issue 9 item 20: the final checkpoint is a LoggedModel linked to its step's metrics (New job lists it),
        # and the run carries its dashboard deep link
        models = client.search_logged_models(experiment_ids=[exp.experiment_id],
                                             filter_string=f"source_run_id = '{rid}'")
        assert [m.name for m in models] == ["checkpoint-40"]
        lm = client.get_logged_model(models[0].model_id)
        assert ("attrib/saliency/hit_at_1", 40) in {(m.key, m.step) for m in lm.metrics}
        assert lm.tags["attrib_mlops.checkpoint_path"].endswith("checkpoint-40")
        link = f"http://127.0.0.1:5006/?tab=explorer&run={rid}"
        assert run.data.tags["attrib_mlops.dashboard_url"] == link and link in run.data.tags["mlflow.note.content"]
        # issue 9 item 18: multi-token probe targets next to the single-token questions
        assert len(reader.probe(rid)) == 16 + 4
        two = reader.load_sample(rid, 40, "model", "saliency", "kv-1234-0-two")
        assert len(two.target_tokens) == 5 and two.matrix.shape[1] == 5
        assert len(reader.load_sample(rid, 40, "model", "saliency", "kv-1234-0").target_tokens) == 1
    # the New job tab's "logged checkpoint" list offers the demo's checkpoints, named by their runs
    from panel_app.store import DashboardStore

    store_ = DashboardStore(uri)
    assert store_.runs().ok
    listed = store_.logged_models()
    assert listed.ok, listed.error
    names = {r.info.run_id: r.info.run_name for r in runs}
    expected = {f"checkpoint-40 · run {names[m.source_run_id]} · {m.model_id}": f"models:/{m.model_id}"
                for m in client.search_logged_models(experiment_ids=[exp.experiment_id])}
    assert listed.value == expected and len(expected) == 2


@pytest.mark.slow
@pytest.mark.parametrize("how", ["env", "option"])
def test_demo_honours_the_tracking_uri(tmp_path, monkeypatch, how):
    """Issue 9 item 11: MLFLOW_TRACKING_URI (MLflow's convention) or --tracking-uri, else the local store."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/elsewhere/mlflow.db"
    (tmp_path / "elsewhere").mkdir()
    args = ["demo", "--steps", "10", "--log-every", "10", "--no-progress"]
    if how == "env":
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    else:
        args += ["--tracking-uri", uri]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert uri in " ".join(res.output.split())
    exp = MlflowClient(tracking_uri=uri).get_experiment_by_name("attrib-mlops-demo")
    runs = MlflowClient(tracking_uri=uri).search_runs([exp.experiment_id])
    assert sorted(r.data.tags["attrib_mlops.demo"] for r in runs) == ["clean", "shortcut"]
    assert AttributionReader(uri).steps(runs[0].info.run_id) == [10]
    assert not (tmp_path / "attrib-demo" / "mlflow.db").exists()
