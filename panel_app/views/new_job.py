"""NewJobView: queue an attribution job (background worker process), progress, result in the overview."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import panel as pn

from panel_app.jobs import NATIVE_METHODS, JobRequest, JobRunner
from panel_app.safe import Markup, SafeHTML, TextAlert, html
from panel_app.state import AppState
from panel_app.store import DashboardStore
from panel_app.views.base import _run_label, _set_options, register_view

__all__ = ["NewJobView"]


@register_view("jobs", "New job", 50, build=lambda app: NewJobView(app.state, app.store, app.runner, on_finished=app.overview.refresh))
class NewJobView(pn.viewable.Viewer):
    """Queue an attribution job; it runs in the background and shows up in the overview when done."""

    def __init__(self, app_state: AppState, store: DashboardStore, runner: JobRunner,
                 on_finished: Callable[[], None], **params):
        super().__init__(**params)
        self.app, self.form, self.store, self.runner = app_state, app_state.job_form, store, runner
        self._on_finished = on_finished
        self._seen: dict[int, str] = {}
        self._stored: list[dict[str, Any]] = []  # jobs in the tracking store (any session, the CLI, the service)
        f = self.form
        self.job_name = pn.widgets.TextInput(label="Job (run) name", value=f.job_name, width=220,
                                             css_classes=["job-name"])
        self.experiment = pn.widgets.TextInput(label="Experiment", value=f.experiment, width=220,
                                               css_classes=["job-experiment"])
        self.models = pn.widgets.TextAreaInput(
            label="Models: one per line, [name=]local folder, runs:/<run_id>/<path> or models:/...",
            value=f.models, height=80, sizing_mode="stretch_width", css_classes=["job-models"])
        self.logged = pn.widgets.Select(label="Add a logged checkpoint", options={}, width=320,
                                        css_classes=["job-logged"])
        self.add_logged = pn.widgets.Button(label="Add", align="end", width=60)
        self.add_logged.on_click(self._add_logged)
        self.methods = pn.widgets.CheckButtonGroup(label="Methods", options=list(NATIVE_METHODS),
                                                   value=list(f.methods), css_classes=["job-methods"])
        self.source = pn.widgets.RadioButtonGroup(options=list(f.param.source.objects), value=f.source,
                                                  css_classes=["job-source"])
        self.text = pn.widgets.TextAreaInput(
            label="Input: one sample per line, prompt ||| target (no target: generated)", value=f.text,
            height=100, sizing_mode="stretch_width", css_classes=["job-text"])
        self.probe_run = pn.widgets.Select(label="Probe set of run", options={}, width=320,
                                           css_classes=["job-probe-run"])
        self.batch_size = pn.widgets.IntInput(label="Batch size", value=f.batch_size, start=1, width=110)
        self.max_new = pn.widgets.IntInput(label="Max new tokens", value=f.max_new_tokens, start=1, width=130)
        self.submit = pn.widgets.Button(label="Queue job", color="primary", css_classes=["job-submit"])
        self.submit.on_click(lambda _e: self.queue())
        for w, p in ((self.job_name, "job_name"), (self.experiment, "experiment"), (self.models, "models"),
                     (self.methods, "methods"), (self.source, "source"), (self.text, "text"),
                     (self.probe_run, "probe_run"), (self.batch_size, "batch_size"),
                     (self.max_new, "max_new_tokens")):
            w.param.watch(lambda e, p=p: setattr(self.form, p, list(e.new) if p == "methods" else e.new), "value")
        self.source.param.watch(lambda *_e: self._toggle_source(), "value")
        self._toggle_source()
        self.alert = TextAlert("danger", "job-error")
        self.note = TextAlert("success", "job-note")
        self.table = SafeHTML(sizing_mode="stretch_width", css_classes=["job-table"])
        self.safety = pn.pane.Markdown(
            "Models load only from local folders or the tracking store, with `trust_remote_code` off; "
            "nothing is downloaded from the hub. The job runs in a background worker process and is logged as "
            "step 0 of a "
            "new MLflow run.", css_classes=["job-safety"])

    def _toggle_source(self) -> None:
        text = self.source.value == "text"
        self.text.visible, self.probe_run.visible = text, not text

    def prepare(self) -> None:
        """Fill the choices that come from the store (called when the tab opens)."""
        runs = {_run_label(r): r.run_id for r in self.store.known_runs() if r.n_probe}
        _set_options(self.probe_run, runs, self.form.probe_run if self.form.probe_run in runs.values()
                     else next(iter(runs.values()), None))
        got = self.store.logged_models()
        self.logged.options = got.value if got.ok else {}
        self._read_stored()

    def _read_stored(self) -> None:
        got = self.store.jobs()
        self._stored = got.value if got.ok else self._stored

    def _add_logged(self, _event: Any) -> None:
        if self.logged.value:
            self.models.value = (self.models.value.rstrip() + "\n" + self.logged.value).strip()

    def queue(self) -> Any:
        f = self.form
        probe = None
        try:
            if f.source != "text":
                if not f.probe_run:
                    raise ValueError("pick a run whose probe set to use")
                got = self.store.contents(f.probe_run)
                if not got.ok:
                    raise ValueError(got.error)
                probe = list(got.value.samples)
            req = JobRequest.from_form(name=f.job_name, experiment=f.experiment, models=f.models, methods=f.methods,
                                       text=f.text, probe=probe, batch_size=f.batch_size,
                                       max_new_tokens=f.max_new_tokens)
        except Exception as e:  # noqa: BLE001 - shown to the user
            self.note.show(None)
            self.alert.show(f"The job was not queued: {e}")
            return None
        handle = self.runner.submit(req)
        self.alert.show(None)
        self.note.show(f"Queued job #{handle.id} ({req.name}): {len(req.models)} model(s) x "
                         f"{len(req.methods)} method(s) x {len(req.prompts)} sample(s).")
        self.refresh()
        return handle

    def refresh(self) -> None:
        """Poll the runner: progress table; a job that just finished refreshes the overview."""
        rows, finished = [], False
        for j in reversed(self.runner.jobs()):
            s = j.snapshot()
            if self._seen.get(s["id"]) != s["status"] and s["status"] == "finished":
                finished = True
            self._seen[s["id"]] = s["status"]
            pct = int(round(100 * s["progress"]))
            rows.append(html(
                '<tr class="job-session" data-job="{id}" data-status="{status}" data-run="{run}"><td>#{id}</td>'
                '<td>{name}</td><td class="job-status">{status}</td><td><progress max="100" value="{pct}"></progress>'
                ' {pct}%</td><td>{message}</td><td><code>{run}</code></td></tr>', id=s["id"], status=s["status"],
                run=s["run_id"] or "", name=s["name"], pct=pct, message=s["message"] or ""))
        if finished:
            self._read_stored()
        shown = {j.snapshot()["run_id"] for j in self.runner.jobs()}
        for r in self._stored:  # jobs of other sessions, of the CLI and the service, from the store
            if r["run_id"] in shown:
                continue
            rows.append(html(
                '<tr class="job-stored" data-status="{status}" data-run="{run}"><td>store</td>'
                '<td>{name} <small>({experiment})</small></td><td class="job-status">{status}</td><td></td>'
                '<td>{message}</td><td><a href="?tab=explorer&amp;run={run}"><code>{run}</code></a></td></tr>',
                status=r["status"].lower(), run=r["run_id"], name=r["name"], experiment=r["experiment"],
                message=r["error"][:300] or f"started {r['started']}"))
        self.table.object = html(
            '<table class="jobs"><thead><tr><th></th><th>job</th><th>status</th><th>progress</th><th>message</th>'
            '<th>run</th></tr></thead><tbody>{}</tbody></table>', Markup("").join(rows)) if rows else \
            html("<i>No job in this session or in the tracking store yet.</i>")
        if finished:
            self._on_finished()

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(self.job_name, self.experiment), self.models, pn.Row(self.logged, self.add_logged), self.methods,
            self.source, self.text, self.probe_run, pn.Row(self.batch_size, self.max_new), self.safety,
            self.submit, self.alert, self.note, pn.pane.Markdown("### Jobs (this session's, then those in the tracking store)"), self.table,
            sizing_mode="stretch_width", css_classes=["view-jobs"],
        )
