"""CompareView: two checkpoints / models / runs side by side, synchronised hover, A1 - A2."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import numpy as np
import panel as pn

from attrib_mlops.analysis import source_importance, target_importance
from panel_app.export import standalone_html
from panel_app.payload import compare_payload, compare_results
from panel_app.plots import STORAGE_REL_ERROR, difference_heatmap, identical_within_storage, magnitude
from panel_app.safe import TextAlert
from panel_app.state import COMPARE_KINDS, AppState
from panel_app.store import DashboardStore, Fetched, RunContents
from panel_app.tokens import TokenView
from panel_app.views.base import _Guard, _run_label, _set_options, register_view

__all__ = ["CompareView"]

#: How A2 is chosen when the user has not chosen it, per kind of comparison.
_DEFAULT_A2 = MappingProxyType({
    "checkpoints": "another checkpoint (step) of the same run",
    "models": "another model of the same run, at the same step",
    "runs": "another run with attribution, at the same step when it has it",
})


@register_view("compare", "Compare", 30)
class CompareView(pn.viewable.Viewer):
    """Two sides on the same sample: synchronised token views and the difference ``A1 - A2``."""

    def __init__(self, app_state: AppState, store: DashboardStore, **params):
        super().__init__(**params)
        self.app, self.state, self.store = app_state, app_state.compare, store
        self._guard = _Guard()
        self._drawn: tuple | None = None
        self._kind: str | None = None
        self.comparison = None
        self.payload: dict = {}
        self.alert = TextAlert("danger", "compare-error")
        self.mismatch = TextAlert("warning", "compare-mismatch")
        self.sides = TextAlert("info", "compare-sides")  # which run, step and model A1 and A2 are
        self.same = TextAlert("info", "compare-identical")
        self.identical = False
        self._a2_chosen = False  # the user picked something on the A2 side (else it is the default)
        self.kind = pn.widgets.RadioButtonGroup(options={v: k for k, v in COMPARE_KINDS.items()},
                                                value=self.state.kind, css_classes=["compare-kind"])
        self.widgets: dict[str, dict[str, pn.widgets.Select]] = {}
        for side in ("left", "right"):
            self.widgets[side] = {
                "run_id": pn.widgets.Select(label=f"{side} run", options={}, width=260,
                                            css_classes=[f"compare-{side}-run"]),
                "step": pn.widgets.Select(label=f"{side} step", options=[], width=110,
                                          css_classes=[f"compare-{side}-step"]),
                "model": pn.widgets.Select(label=f"{side} model", options=[], width=140,
                                           css_classes=[f"compare-{side}-model"]),
            }
            for p, w in self.widgets[side].items():
                w.param.watch(lambda e, side=side, p=p: self._from_widget(side, p, e.new), "value")
        self.method = pn.widgets.Select(label="Method", options=[], width=160, css_classes=["compare-method"])
        self.sample = pn.widgets.Select(label="Sample", options={}, width=340, css_classes=["compare-sample"])
        self._lock_right()
        self.kind.param.watch(lambda e: self._from_widget(None, "kind", e.new), "value")
        self.method.param.watch(lambda e: self._from_widget(None, "method", e.new), "value")
        self.sample.param.watch(lambda e: self._from_widget(None, "sample_id", e.new), "value")
        self.tokens = TokenView(data={"empty": "Open this tab after selecting a run."}, sizing_mode="stretch_width",
                                css_classes=["compare-tokens"], margin=(5, 10))
        self.heatmaps = pn.Row(sizing_mode="stretch_width", css_classes=["compare-heatmaps"])
        self.state.param.watch(lambda *_e: self.sync(), ["kind", "method", "sample_id"])
        for side in (self.state.left, self.state.right):
            side.param.watch(lambda *_e: self.sync(), ["run_id", "step", "model"])

    def _from_widget(self, side: str | None, name: str, value: Any) -> None:
        if self._guard.on:
            return
        target = self.state if side is None else getattr(self.state, side)
        if side == "right" and getattr(target, name) != value:
            self._a2_chosen = True
        elif name == "kind" and value != self.state.kind:
            self._a2_chosen = False
        setattr(target, name, value)

    def active(self) -> bool:
        return self.app.tab == "compare"

    def sync(self, force: bool = False) -> None:
        if self._guard.on or not (force or self.active()):
            return
        with self._guard:
            error = self._normalise()
            self._update_widgets()
        if error:
            self._drawn = None
            self.alert.show(error)
            self.mismatch.show(None)
            self.tokens.data = {"empty": "Nothing to compare: see the message above."}
            self.heatmaps.objects = []
            return
        self.draw()

    def _contents(self, run_id: str | None) -> Fetched[RunContents]:
        return self.store.contents(run_id) if run_id else Fetched(None, "No run with attribution to compare yet.")

    def _normalise(self) -> str | None:
        s, L, R = self.state, self.state.left, self.state.right
        if s.kind != self._kind:  # another kind of comparison: the right side starts from its defaults
            self._kind = s.kind
            R.param.update(step=None, model=None)
        runs = [r for r in self.store.known_runs() if r.n_steps > 0]
        if L.run_id is None:
            L.run_id = self.app.explorer.run_id or (runs[0].run_id if runs else None)
        lc = self._contents(L.run_id)
        if not lc.ok:
            return lc.error
        lc = lc.value
        if not lc.steps:
            return f"Run {L.run_id} has no committed attribution step yet."
        if s.kind == "runs":
            if R.run_id is None or R.run_id == L.run_id:
                others = [r.run_id for r in runs if r.run_id != L.run_id]
                R.run_id = others[0] if others else L.run_id
        else:
            R.run_id = L.run_id
        rc = self._contents(R.run_id)
        if not rc.ok:
            return rc.error
        rc = rc.value
        if not rc.steps:
            return f"Run {R.run_id} has no committed attribution step yet."
        if L.step not in lc.steps:
            L.step = self.app.explorer.step if self.app.explorer.step in lc.steps else lc.steps[-1]
        if s.kind == "models" and len(lc.models(L.step)) < 2:
            multi = [st for st in lc.steps if len(lc.models(st)) > 1]
            if not multi:
                return (f"Run {L.run_id} logged a single model ({', '.join(lc.models())}) at every step; there "
                        "are no two models to compare. Compare two checkpoints or two runs instead.")
            L.step = multi[-1]
        if s.kind == "models":
            R.step = L.step
        elif s.kind == "checkpoints":
            if R.step not in rc.steps or R.step == L.step:  # two different checkpoints whenever there are two
                others = [st for st in rc.steps if st != L.step]
                R.step = others[0] if others else L.step
        elif R.step not in rc.steps:  # two runs: the same checkpoint when both have it
            R.step = L.step if L.step in rc.steps else rc.steps[-1]
        if L.model not in lc.models(L.step):
            L.model = lc.models(L.step)[0]
        if s.kind == "checkpoints":
            R.model = L.model if L.model in rc.models(R.step) else rc.models(R.step)[0]
        elif R.model not in rc.models(R.step) or (s.kind == "models" and R.model == L.model):
            others = [m for m in rc.models(R.step) if m != L.model]
            if s.kind == "models":
                R.model = others[0] if others else L.model
            else:
                R.model = L.model if L.model in rc.models(R.step) else rc.models(R.step)[0]
        methods = [m for m in lc.methods(L.step, L.model) if m in rc.methods(R.step, R.model)]
        if not methods:
            return (f"The two sides share no attribution method (left: {lc.methods(L.step, L.model)}, right: "
                    f"{rc.methods(R.step, R.model)}).")
        if s.method not in methods:
            pref = [m for m in self.app.explorer.methods if m in methods]
            s.method = pref[0] if pref else methods[0]
        ids = [i for i in lc.sample_ids() if i in set(rc.sample_ids())]
        if not ids:
            return "The two runs have no probe sample id in common; there is nothing to compare."
        if s.sample_id not in ids:
            s.sample_id = self.app.explorer.sample_id if self.app.explorer.sample_id in ids else ids[0]
        self._methods, self._ids, self._lc, self._rc = methods, ids, lc, rc
        return None

    def _update_widgets(self) -> None:
        s = self.state
        runs = {_run_label(r): r.run_id for r in self.store.known_runs()}
        for side_name in ("left", "right"):
            side, w = getattr(s, side_name), self.widgets[side_name]
            opts = dict(runs)
            if side.run_id and side.run_id not in opts.values():
                opts[side.run_id] = side.run_id
            _set_options(w["run_id"], opts, side.run_id)
            c = self.store.contents(side.run_id).value if side.run_id else None
            if c is not None:
                _set_options(w["step"], list(c.steps), side.step)
                _set_options(w["model"], c.models(side.step), side.model)
        self._lock_right()
        self.kind.value = s.kind
        if getattr(self, "_methods", None):
            _set_options(self.method, self._methods, s.method)
            _set_options(self.sample, {self._lc.sample_label(i): i for i in self._ids[:2000]}, s.sample_id)

    def _lock_right(self) -> None:
        """What the kind of comparison fixes on the right side cannot be chosen (changed only when needed)."""
        kind, right = self.state.kind, self.widgets["right"]
        for name, locked in (("run_id", kind != "runs"), ("model", kind == "checkpoints"), ("step", kind == "models")):
            if right[name].disabled != locked:
                right[name].disabled = locked

    def _key(self) -> tuple:
        s = self.state
        return (s.kind, s.left.key(), s.right.key(), s.method, s.sample_id)

    def draw(self) -> None:
        key = self._key()
        if key == self._drawn:
            return
        s, L, R = self.state, self.state.left, self.state.right
        a = self.store.sample(L.run_id, L.step, L.model, s.method, s.sample_id)
        b = self.store.sample(R.run_id, R.step, R.model, s.method, s.sample_id)
        error = a.error or b.error
        if error:
            self._drawn = None
            self.alert.show(error)
            self.sides.show(None)
            self.same.show(None)
            self.tokens.data = {"empty": "Nothing to compare: see the message above."}
            self.heatmaps.objects = []
            return
        cmp = compare_results(a.value, b.value)
        self.comparison, self._drawn = cmp, key
        self.payload = compare_payload(cmp, left_title=f"A1 · {self._side_title(L)}",
                                       right_title=f"A2 · {self._side_title(R)}", method=s.method)
        self.payload["state"] = "|".join(str(x) for x in (s.kind, *L.key(), *R.key(), s.method, s.sample_id))
        lm, rm = self._compared(cmp)
        # colours of the difference row relative to the values compared, not to the largest difference
        self.payload["diff"].update(
            cell_scale=magnitude(lm, rm),
            source_scale=magnitude(source_importance(lm), source_importance(rm)) if lm.size else 0.0,
            target_scale=magnitude(target_importance(lm), target_importance(rm)) if lm.size else 0.0)
        self.identical = bool(cmp.diff.size) and identical_within_storage(cmp.diff, lm, rm)
        self.alert.show(None)
        self.mismatch.show(cmp.message)
        self.sides.show(self.describe())
        self.same.show(self._identical_message(cmp, lm, rm) if self.identical else None)
        self.tokens.data = self.payload
        self.heatmaps.objects = [pn.pane.Bokeh(f) for f in self.figures()]

    def _side_title(self, side: Any) -> str:
        row = self.store.run_row(side.run_id)
        name = row.name if row else (side.run_id or "")[:8]
        return f"{name} · step {side.step} · {side.model}"

    def _side_text(self, side: Any) -> str:
        """``run <name> (<id prefix>) · step <step> · model <model>``: one side, in words."""
        row = self.store.run_row(side.run_id)
        name = f"{row.name} ({side.run_id[:8]})" if row else str(side.run_id)
        return f"run {name} · step {side.step} · model {side.model}"

    def _side_fields(self, side: Any) -> dict[str, Any]:
        row = self.store.run_row(side.run_id)
        return {"run_id": side.run_id, "run": row.name if row else None, "step": side.step, "model": side.model}

    @staticmethod
    def _compared(cmp: Any) -> tuple[np.ndarray, np.ndarray]:
        """A1 and A2 on the cells compared (the common token prefix)."""
        return (np.asarray(cmp.left_matrix, dtype=np.float64)[: cmp.n_source, : cmp.n_target],
                np.asarray(cmp.right_matrix, dtype=np.float64)[: cmp.n_source, : cmp.n_target])

    def describe(self) -> str:
        """Which run, step and model each side is, and how A2 was chosen (shown above the comparison)."""
        s = self.state
        how = "your choice" if self._a2_chosen else f"by default {_DEFAULT_A2[s.kind]}; change it in the A2 row"
        return (f"A1: {self._side_text(s.left)}\nA2: {self._side_text(s.right)} ({how})\n"
                f"Method {s.method}, sample {s.sample_id}. The difference A1 − A2 is coloured relative to the "
                "values compared (max |A1|, |A2|): red where A1 is larger, blue where A2 is.")

    @staticmethod
    def _identical_message(cmp: Any, lm: np.ndarray, rm: np.ndarray) -> str:
        bound = STORAGE_REL_ERROR * (magnitude(lm) + magnitude(rm))
        return (f"A1 and A2 are identical within storage precision: the largest |A1 − A2| is "
                f"{magnitude(cmp.diff):.3g}, and storing a matrix may change each value by up to "
                f"{STORAGE_REL_ERROR:.3g} × its largest |value| ({bound:.3g} for these two).")

    def export_summary(self) -> str:
        """What the compare exports hold, in words."""
        if self.comparison is None:
            return "nothing yet: open the Compare tab and pick two sides."
        s, cmp = self.state, self.comparison
        same = " (identical within storage precision)" if self.identical else ""
        return (f"A1 = {self._side_text(s.left)}; A2 = {self._side_text(s.right)}; method {s.method}; sample "
                f"{s.sample_id}; the difference A1 − A2 on the common token prefix ({cmp.n_source} source × "
                f"{cmp.n_target} target tokens){same}.")

    def figures(self) -> list:
        cmp = self.comparison
        if cmp is None or cmp.diff.size == 0:
            return []
        same = " · identical within storage precision" if self.identical else ""
        return [difference_heatmap(cmp.diff, cmp.left_matrix, cmp.right_matrix, cmp.left.source_tokens,
                                   cmp.left.target_tokens, title=f"A1 − A2 ({self.state.method}){same}")]

    def export_html(self) -> str | None:
        if not self.payload:
            return None
        s = self.state
        meta = {"comparison": COMPARE_KINDS[s.kind], "A1": self._side_text(s.left), "A2": self._side_text(s.right),
                "method": s.method, "sample": s.sample_id}
        if self.identical:
            meta["difference"] = "identical within storage precision"
        return standalone_html(self.payload, self.figures(), title="attrib-mlops · compare", meta=meta,
                               message=self.comparison.message if self.comparison else None)

    def difference(self) -> tuple[np.ndarray, list[str], list[str], dict] | None:
        cmp = self.comparison
        if cmp is None:
            return None
        s = self.state
        meta = {"kind": s.kind, "A1": self._side_fields(s.left), "A2": self._side_fields(s.right), "method": s.method,
                "sample_id": s.sample_id, "note": cmp.message, "values": "A1 - A2 on the common token prefix",
                "identical_within_storage_precision": self.identical}
        return (cmp.diff, list(cmp.left.source_tokens[: cmp.n_source]), list(cmp.left.target_tokens[: cmp.n_target]),
                meta)

    def __panel__(self) -> pn.viewable.Viewable:
        left = pn.Row(*self.widgets["left"].values())
        right = pn.Row(*self.widgets["right"].values())
        return pn.Column(
            self.kind, pn.Row(pn.pane.Markdown("**A1**", width=30), left, sizing_mode="stretch_width"),
            pn.Row(pn.pane.Markdown("**A2**", width=30), right, sizing_mode="stretch_width"),
            pn.Row(self.method, self.sample), self.alert, self.sides, self.mismatch, self.same, self.tokens,
            self.heatmaps,
            sizing_mode="stretch_width", css_classes=["view-compare"],
        )
