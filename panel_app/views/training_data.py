"""TrainingDataView: which training examples support or oppose a model's output (TracIn-CP, grad-cos, DataInf).

Pick a run that carries a training-data index (the training callback or ``attrib-mlops tda
index`` logged it; such runs are listed first, also without attribution steps), the model
to query (prefilled with the index's last checkpoint, see
:meth:`AttributionReader.training_index_model`), a probe sample of the run or a typed
prompt, and the output tokens; the view shows the top supporting and opposing training examples (the text
around the words that match the selected tokens, and their scores), a score histogram with
the listed examples marked, and, given a user continuation, the generation and the user's
text side by side (word diff, one shared normalisation).

Every query runs as a job (the dashboard's :class:`~panel_app.jobs.JobRunner`, the job
runner's ``training_data`` section); results are read back through the tracking reader
(kind ``training_data``, step 0 of the job's run). All text is rendered as text
(:mod:`panel_app.safe`); the histogram is a Bokeh figure served with the page (no CDN).
"""

from __future__ import annotations

import difflib
from typing import Any

import panel as pn

from panel_app.jobs import JobRequest, parse_models
from panel_app.safe import Markup, SafeHTML, TextAlert, bokeh_text, html
from panel_app.state import AppState
from panel_app.store import DashboardStore
from panel_app.views.base import _run_label, _set_options, register_view

__all__ = ["TrainingDataView", "snippet", "word_diff"]

_EXPERIMENT = "attrib-mlops-training-data"
_CSS = """
.tda-table { border-collapse: collapse; font-size: 13px; width: 100%; }
.tda-table td, .tda-table th { padding: 2px 6px; border-bottom: 1px solid #eee; vertical-align: top; text-align: left; }
.tda-bar { display: inline-block; height: 9px; }
.tda-row[data-side="positive"] .tda-bar { background: #c0392b; }
.tda-row[data-side="negative"] .tda-bar { background: #2e61b0; }
.tda-text { white-space: pre-wrap; font-family: monospace; }
mark.tda-match { background: #ffe58a; }
.tda-diff del { background: #f8d7da; } .tda-diff ins { background: #d1e7dd; text-decoration: none; }
.tda-cols { display: flex; gap: 16px; } .tda-cols > div { flex: 1; min-width: 0; }
"""


def snippet(text: str, tokens: list[str], width: int = 6) -> Markup:
    """The words of ``text`` around the first word matching a selected token (marked), escaped.

    >>> str(snippet("a b <i>c</i> d", ["<i>c</i>"], width=1))
    'b <mark class="tda-match">&lt;i&gt;c&lt;/i&gt;</mark> d'
    """
    words = str(text).split()
    wanted = {t.strip().lower() for t in tokens if t and t.strip()}
    hit = next((i for i, w in enumerate(words) if w.lower() in wanted), None)
    lo, hi = (0, 2 * width) if hit is None else (max(0, hit - width), hit + width + 1)
    parts = [html('<mark class="tda-match">{}</mark>', w) if w.lower() in wanted else html("{}", w)
             for w in words[lo:hi]]
    out = Markup(" ").join(parts)
    return (html("… ") if lo > 0 else Markup("")) + out + (html(" …") if hi < len(words) else Markup(""))


def word_diff(generated: str, user: str) -> Markup:
    """A word-level diff: deleted (generation only) and inserted (user only) spans, escaped.

    >>> str(word_diff("a b c", "a x c"))
    'a <del>b</del> <ins>x</ins> c'
    """
    a, b = str(generated).split(), str(user).split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(html("{}", " ".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(html("<del>{}</del>", " ".join(a[i1:i2])))
        if j2 > j1:
            out.append(html("<ins>{}</ins>", " ".join(b[j1:j2])))
    return Markup(" ").join(out)


def _top_table(result: Any, k: int, tokens: list[str], css: str) -> Markup:
    rows = []
    for side, title in (("positive", "supporting"), ("negative", "opposing")):
        for it in result.top(k)[side]:
            rel = max(0.0, min(1.0, abs(float(it["relative"]))))
            rows.append(html(
                '<tr class="tda-row" data-side="{side}" data-id="{id}" data-score="{score!r}"><td>{title}</td>'
                '<td>{rank}</td><td><code>{id}</code></td><td>{fmt}</td>'
                '<td><span class="tda-bar" style="width:{w}px"></span></td><td class="tda-text">{text}</td></tr>',
                side=side, title=title, rank=it["rank"], id=str(it["id"]), score=float(it["score"]),
                fmt=f"{float(it['score']):.4g}", w=int(round(80 * rel)), text=snippet(it["text"], tokens)))
    head = html('<table class="tda-table {}"><thead><tr><th></th><th>#</th><th>example</th><th>score</th><th></th>'
                "<th>text around the matched tokens</th></tr></thead><tbody>", css)
    body = Markup("").join(rows) if rows else html('<tr><td colspan="6"><i>no example scores other than 0</i></td></tr>')
    return head + body + Markup("</tbody></table>")


def _selected(result: Any) -> list[str]:
    toks = list(result.target_tokens)
    return [toks[i] for i in result.selected if 0 <= i < len(toks)] or toks


def histogram_figure(result: Any, k: int) -> Any:
    """Bokeh bars of the normalised scores over [-1, 1], the listed examples marked on their bins."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    h = result.histogram(bins=20, k=k)
    edges, counts = h["edges"], h["counts"]
    p = figure(height=220, sizing_mode="stretch_width", tools="hover,reset,save", name="tda-histogram",
               title=bokeh_text(f"{result.method} scores / {h['scale']:.3g} (N = {result.n_examples})"),
               x_axis_label="normalised score", y_axis_label="examples")
    p.quad(left=edges[:-1], right=edges[1:], bottom=0, top=counts, fill_color="#bbbbbb", line_color="white")
    marks = h["marks"]
    src = ColumnDataSource({"x": [m["relative"] for m in marks], "y": [counts[m["bin"]] + 0.3 for m in marks],
                            "id": [bokeh_text(str(m["id"])) for m in marks], "score": [m["score"] for m in marks],
                            "color": ["#c0392b" if m["side"] == "positive" else "#2e61b0" for m in marks]})
    p.scatter("x", "y", source=src, color="color", size=8, marker="triangle")
    p.select_one(HoverTool).tooltips = [("example", "@id"), ("score", "@score{0.0000}")]
    return p


@register_view("training_data", "Training data", 70,
               build=lambda app: TrainingDataView(app.state, app.store, app.runner))
class TrainingDataView(pn.viewable.Viewer):
    """Top supporting / opposing training examples of a query, a histogram and a side-by-side comparison."""

    def __init__(self, app_state: AppState, store: DashboardStore, runner: Any, **params: Any) -> None:
        super().__init__(**params)
        self.app, self.state, self.store, self.runner = app_state, app_state.training_data, store, runner
        s = self.state
        self.run = pn.widgets.Select(label="Run with a training-data index", options={}, width=360,
                                     css_classes=["tda-run"])
        self.model = pn.widgets.TextInput(label="Model (local folder, runs:/... or models:/...)", value=s.model,
                                          width=420, css_classes=["tda-model"])
        self.sample = pn.widgets.Select(label="Probe sample of the run", options={}, width=300,
                                        css_classes=["tda-sample"])
        self.prompt = pn.widgets.TextInput(label="or type a prompt", value=s.prompt, width=420,
                                           css_classes=["tda-prompt"])
        self.target = pn.widgets.TextInput(label="Continuation (empty: the model's generation)", value=s.target,
                                           width=420, css_classes=["tda-target"])
        self.user_text = pn.widgets.TextInput(label="Compare with your continuation (side by side)",
                                              value=s.user_text, width=420, css_classes=["tda-user"])
        self.method = pn.widgets.Select(label="Method", options=list(s.param.method.objects), value=s.method,
                                        width=130, css_classes=["tda-method"])
        self.top_k = pn.widgets.IntInput(label="Top k", value=s.top_k, start=1, end=50, width=90,
                                         css_classes=["tda-topk"])
        self.tokens = pn.widgets.CheckButtonGroup(name="Output tokens", options={}, value=[],
                                                  css_classes=["tda-tokens"])
        self.go = pn.widgets.Button(label="Find training examples", button_type="primary", css_classes=["tda-go"])
        self.go.on_click(lambda _e: self.query())
        self.stored = pn.widgets.Select(label="or show a stored result of the run (step · model · method)",
                                        options={}, width=360, css_classes=["tda-stored"])
        self.show_stored = pn.widgets.Button(label="Show stored", align="end", css_classes=["tda-show-stored"])
        self.show_stored.on_click(lambda _e: self.load_stored())
        for w, p in ((self.run, "run_id"), (self.model, "model"), (self.sample, "sample_id"),
                     (self.prompt, "prompt"), (self.target, "target"), (self.user_text, "user_text"),
                     (self.method, "method"), (self.top_k, "top_k"), (self.tokens, "tokens")):
            w.param.watch(lambda e, p=p: setattr(self.state, p, list(e.new) if p == "tokens" else e.new), "value")
        self.run.param.watch(lambda *_e: self._on_run(), "value")
        self.alert = TextAlert("danger", "tda-error")
        self.status = TextAlert("info", "tda-status")
        self.lists = SafeHTML(sizing_mode="stretch_width", css_classes=["tda-lists"], stylesheets=[_CSS])
        self.hist = pn.Column(sizing_mode="stretch_width", css_classes=["tda-hist"])
        self.side = SafeHTML(sizing_mode="stretch_width", css_classes=["tda-side"], stylesheets=[_CSS])
        self._pending: dict[str, Any] = {}
        self._model_name = ""
        self._prefilled = ""  # the model the view filled in from the run's index (replaced when the run changes)
        self._poller: Any = None
        app_state.param.watch(lambda e: self.prepare() if e.new == "training_data" else None, "tab")

    # ------------------------------------------------------------ choices
    def prepare(self) -> None:
        """Runs with a training-data index first (also those without attribution steps), then the store's other runs
        (they may hold stored results); a run id may also be chosen in the URL state."""
        got = self.store.runs()
        try:
            indexed = self.store.reader.training_index_runs()
        except Exception:  # noqa: BLE001 - the store's own listing reports an unreachable server
            indexed = []
        runs = {}
        for r in indexed:
            n = f"index of {r['n_examples']} examples" if r["n_examples"] is not None else "index"
            runs[f"{r['run_name']} · {self.store._experiment_name(r['experiment_id'])} · {r['run_id'][:8]} · {n}"] = \
                r["run_id"]
        listed = set(runs.values())
        runs.update({_run_label(r): r.run_id for r in (got.value if got.ok else []) if r.run_id not in listed})
        if self.state.run_id and self.state.run_id not in runs.values():
            runs[self.state.run_id] = self.state.run_id
        _set_options(self.run, runs, self.state.run_id if self.state.run_id in runs.values()
                     else next(iter(runs.values()), None))
        self._on_run()

    def _on_run(self) -> None:
        self._fill_samples()
        self._fill_model()

    def _fill_model(self) -> None:
        """Prefill the model with the one the run's index was built for (its last checkpoint), unless one was typed."""
        typed = self.model.value.strip()
        if not self.run.value or (typed and typed != self._prefilled):
            return
        try:
            ref = self.store.reader.training_index_model(self.run.value)
        except Exception:  # noqa: BLE001 - no readable index: the field stays as it is, the query says why
            ref = None
        if ref:
            self._prefilled = self.model.value = ref

    def _fill_samples(self) -> None:
        samples = {}
        if self.run.value:
            got = self.store.contents(self.run.value)
            if got.ok:
                samples = {got.value.sample_label(sid): sid for sid in got.value.sample_ids()}
        _set_options(self.sample, samples, self.state.sample_id if self.state.sample_id in samples.values()
                     else next(iter(samples.values()), None))
        stored = {}
        if self.run.value:
            try:  # training-data results the run holds (a job with a training_data section logged them)
                for rec in self.store.reader.manifest(self.run.value)["steps"]:
                    files = ((rec.get("kinds") or {}).get("training_data") or {}).get("files") or {}
                    for model, methods in files.items():
                        for method in methods:
                            stored[f"{rec['step']} · {model} · {method}"] = f"{rec['step']}|{model}|{method}"
            except Exception:  # noqa: BLE001 - no manifest: nothing stored to show
                stored = {}
        _set_options(self.stored, stored, next(iter(stored.values()), None))
        self.stored.visible = self.show_stored.visible = bool(stored)

    def load_stored(self) -> Any:
        """Show a stored training-data result of the run for the chosen probe sample (first one if absent)."""
        if not self.stored.value or not self.run.value:
            return None
        step, model, method = self.stored.value.split("|", 2)
        try:
            rs = self.store.reader.load(self.run.value, int(step), model, method, kind="training_data")
        except Exception as e:  # noqa: BLE001
            self.alert.show(f"The stored result could not be read: {e}")
            return None
        r = next((x for x in rs if str(x.sample_id) == self.state.sample_id), rs[0] if rs else None)
        if r is not None:
            self.alert.show(None)
            self.show(r)
        return r

    def _query_text(self) -> tuple[str, str]:
        s = self.state
        if s.prompt.strip():
            return s.prompt, s.target
        got = self.store.contents(s.run_id) if s.run_id else None
        sample = next((x for x in (got.value.samples if got is not None and got.ok else ())
                       if str(x["id"]) == s.sample_id), None)
        if sample is None:
            raise ValueError("pick a probe sample of the run or type a prompt")
        return str(sample.get("prompt", "")), s.target or str(sample.get("target") or "")

    # ------------------------------------------------------------ running
    def _request(self, name: str, models: list, prompt: str, targets: dict[str, str],
                 tokens: list[int] | None) -> JobRequest:
        """One job over the samples ``{sample id: target}`` (an empty target: the model's generation)."""
        s = self.state
        td = {"index": s.run_id, "methods": [s.method], "top_k": int(s.top_k), "target_tokens": tokens,
              "tracking_uri": self.store.tracking_uri}
        given = all(t.strip() for t in targets.values())
        return JobRequest(name=name, experiment=_EXPERIMENT, models=models, methods=[],
                          prompts=[prompt] * len(targets), targets=list(targets.values()) if given else None,
                          sample_ids=list(targets), training_data=td)

    def query(self) -> dict[str, Any]:
        """Queue the query (and the user's continuation, for the side by side) as jobs; returns the handles."""
        s = self.state
        try:
            if not s.run_id:
                raise ValueError("pick a run that carries a training-data index")
            models = parse_models(s.model)[:1]
            prompt, target = self._query_text()
            tokens = sorted(s.tokens) or None
            user = s.user_text if s.user_text.strip() else ""
            if user and target.strip() and tokens is None:  # both continuations given: one job
                reqs = {"query": self._request("query", models, prompt, {"query": target, "user": user}, None)}
            else:  # the generation (or selected tokens of it) and the user's text apart
                reqs = {"query": self._request("query", models, prompt, {"query": target}, tokens)}
                if user:
                    reqs["user"] = self._request("user", models, prompt, {"user": user}, None)
        except Exception as e:  # noqa: BLE001 - shown to the user
            self.alert.show(f"The query was not started: {e}")
            return {}
        self.alert.show(None)
        self._model_name = models[0][0]
        self._pending = {k: self.runner.submit(r) for k, r in reqs.items()}
        self.status.show(f"Running {len(reqs)} training-data job(s) on run {s.run_id} ({s.method})…")
        if self._poller is None and pn.state.curdoc is not None:
            self._poller = pn.state.add_periodic_callback(self.poll, period=500)
        return dict(self._pending)

    def poll(self) -> bool:
        """Check the pending jobs; when all are done show the results (or the error). True when nothing is pending."""
        if not self._pending:
            return True
        snaps = {k: h.snapshot() for k, h in self._pending.items()}
        failed = [s for s in snaps.values() if s["status"] == "failed"]
        if not failed and not all(s["status"] == "finished" for s in snaps.values()):
            return False
        self._pending = {}
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
        self.status.show(None)
        if failed:
            self.alert.show(f"The training-data query failed: {failed[0]['error'] or failed[0]['message']}")
            return True
        try:
            results = {str(r.sample_id): r for s in snaps.values()
                       for r in self.store.reader.load(s["run_id"], 0, self._model_name, self.state.method,
                                                       kind="training_data")}
        except Exception as e:  # noqa: BLE001
            self.alert.show(f"The results could not be read: {e}")
            return True
        self.show(results["query"], results.get("user"))
        return True

    # ------------------------------------------------------------ drawing
    def show(self, result: Any, user: Any = None) -> None:
        """Draw a result (and the user-continuation result side by side, on one shared scale)."""
        k = int(self.state.top_k)
        toks = list(result.target_tokens)
        opts = {f"{i}: {t}": i for i, t in enumerate(toks)}
        if self.tokens.options != opts:
            self.tokens.options = opts
        shown = _selected(result)
        self.lists.object = html(
            '<div class="tda-query" data-method="{m}" data-n="{n}"><b>{p}</b> → <span class="tda-text">{t}</span>'
            ' <small>(tokens: {sel})</small></div>{table}', m=result.method, n=result.n_examples, p=result.prompt,
            t=result.target, sel=" ".join(shown), table=_top_table(result, k, shown, "tda-main"))
        self.hist.objects = [pn.pane.Bokeh(histogram_figure(result, k))]
        if user is None:
            self.side.object = Markup("")
            return
        scale = max(result.norm_scale(), user.norm_scale())
        result.scale = user.scale = scale
        self.side.object = html(
            '<h4>Side by side (shared scale {sc})</h4><div class="tda-diff">{diff}</div><div class="tda-cols">'
            '<div class="tda-col-gen"><b>generation</b>: <span class="tda-text">{g}</span>{tg}</div>'
            '<div class="tda-col-user"><b>your text</b>: <span class="tda-text">{u}</span>{tu}</div></div>',
            sc=f"{scale:.4g}", diff=word_diff(result.target, user.target), g=result.target, u=user.target,
            tg=_top_table(result, k, _selected(result), "tda-gen"), tu=_top_table(user, k, _selected(user), "tda-usr"))

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.Row(self.run, self.model), pn.Row(self.sample, self.prompt), pn.Row(self.target, self.user_text),
            pn.Row(self.method, self.top_k), pn.Row(self.stored, self.show_stored), pn.pane.Markdown("Output tokens (after a first query; none = all)"),
            self.tokens, self.go, self.alert, self.status, self.lists, self.hist, self.side,
            sizing_mode="stretch_width", css_classes=["view-training-data"],
        )
