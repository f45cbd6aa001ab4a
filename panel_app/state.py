"""What the user has selected: ``param.Parameterized`` classes only (no data, no widgets).

One :class:`AppState` is built per browser session (by :class:`panel_app.app.DashboardApp`),
so two sessions never share a selection. Views watch these parameters and read data
through :class:`panel_app.store.DashboardStore`; nothing here touches MLflow.

Example:
    >>> s = AppState()
    >>> s.explorer.window = 2
    >>> AppState().explorer.window        # a second session starts from the defaults
    0
"""

from __future__ import annotations

from types import MappingProxyType

import param

__all__ = [
    "TABS",
    "COMPARE_KINDS",
    "ExplorerState",
    "CompareSide",
    "CompareState",
    "OverviewState",
    "EvolutionState",
    "JobFormState",
    "SourcesState",
    "EstimatorState",
    "TrainingDataState",
    "AppState",
]

#: Tab names, in display order (``AppState.tab`` takes one of them; also the ``?tab=`` URL value).
TABS = ("overview", "explorer", "compare", "evolution", "sources", "at2", "jobs", "export", "training_data")

#: What the two sides of the compare view are.
COMPARE_KINDS = MappingProxyType({
    "checkpoints": "two checkpoints (steps) of one run",
    "models": "two models of one run / job",
    "runs": "two runs",
})


class ExplorerState(param.Parameterized):
    """One run, one step, one model, one sample; the methods shown and the window."""

    run_id = param.String(default=None, allow_None=True, doc="MLflow run id")
    step = param.Integer(default=None, allow_None=True, doc="checkpoint / global step")
    model = param.String(default=None, allow_None=True, doc="model name inside the run")
    methods = param.List(default=[], item_type=str, doc="active attribution methods (first = primary)")
    sample_id = param.String(default=None, allow_None=True, doc="probe sample id")
    window = param.Integer(default=0, bounds=(0, 16), doc="half-width c of the context window")
    window_axis = param.Selector(default="source", objects=["source", "target"],
                                 doc="windowed aggregation: over source rows (input-centred) or target columns")
    combine = param.Selector(default="overlay", objects=["overlay", "mean"],
                             doc="several methods: one colour each (overlay) or their normalised mean")
    normalize = param.Selector(default="matrix", objects=["matrix", "column"],
                               doc="heatmap colours: one scale for the whole matrix, or each target column "
                                   "min-max normalised on its own")

    def selection(self) -> dict:
        """The selection as a plain dict (for exports and messages)."""
        return {k: getattr(self, k) for k in ("run_id", "step", "model", "methods", "sample_id", "window",
                                              "window_axis", "combine")}


class CompareSide(param.Parameterized):
    """One side of the compare view."""

    run_id = param.String(default=None, allow_None=True)
    step = param.Integer(default=None, allow_None=True)
    model = param.String(default=None, allow_None=True)

    def key(self) -> tuple:
        return (self.run_id, self.step, self.model)


class CompareState(param.Parameterized):
    """Two sides on the same sample and method; ``kind`` decides what may differ."""

    kind = param.Selector(default="checkpoints", objects=list(COMPARE_KINDS))
    left = param.ClassSelector(class_=CompareSide, instantiate=True)
    right = param.ClassSelector(class_=CompareSide, instantiate=True)
    method = param.String(default=None, allow_None=True)
    sample_id = param.String(default=None, allow_None=True)

    def __init__(self, **params):
        params.setdefault("left", CompareSide())
        params.setdefault("right", CompareSide())
        super().__init__(**params)


class OverviewState(param.Parameterized):
    """Filter and order of the runs table, and live refresh."""

    text = param.String(default="", doc="case-insensitive substring of name, id, experiment, method or model")
    statuses = param.List(default=[], item_type=str, doc="show only these statuses (empty = all)")
    sort_by = param.Selector(default="last update", objects=["last update", "name", "steps", "status"])
    descending = param.Boolean(default=True)
    live = param.Boolean(default=True, doc="poll the tracking store while the page is open")


class EvolutionState(param.Parameterized):
    """Metric curves of one or several runs, and the two steps whose change is ranked."""

    run_ids = param.List(default=[], item_type=str)
    metric_keys = param.List(default=[], item_type=str)
    step_a = param.Integer(default=None, allow_None=True)
    step_b = param.Integer(default=None, allow_None=True)


class JobFormState(param.Parameterized):
    """The fields of the New job form."""

    job_name = param.String(default="dashboard-job", doc="name of the MLflow run the job creates")
    experiment = param.String(default="attrib-mlops-jobs")
    models = param.String(default="", doc="one model per line: [name=]local folder, runs:/... or models:/...")
    methods = param.List(default=["saliency"], item_type=str)
    source = param.Selector(default="text", objects=["text", "probe set of a run"])
    text = param.String(default="", doc="one sample per line: prompt ||| target (target optional: generated)")
    probe_run = param.String(default=None, allow_None=True)
    batch_size = param.Integer(default=8, bounds=(1, 1024))
    max_new_tokens = param.Integer(default=8, bounds=(1, 512))


class SourcesState(param.Parameterized):
    """Sources view: one stored source attribution, a target-token span, and what it is compared with."""

    run_id = param.String(default=None, allow_None=True)
    step = param.Integer(default=None, allow_None=True)
    model = param.String(default=None, allow_None=True)
    method = param.String(default=None, allow_None=True, doc="ablation, at2 or attention")
    sample_id = param.String(default=None, allow_None=True)
    span = param.Tuple(default=None, allow_None=True, length=2, doc="target tokens [start, end); None = all")
    compare_kind = param.Selector(default="checkpoints", objects=["checkpoints", "runs"])
    other_run = param.String(default=None, allow_None=True)
    other_step = param.Integer(default=None, allow_None=True)


class EstimatorState(param.Parameterized):
    """AT2 view: the run whose estimators are shown and the two compared (``models:/`` URIs)."""

    run_id = param.String(default=None, allow_None=True)
    left = param.String(default=None, allow_None=True)
    right = param.String(default=None, allow_None=True)
class TrainingDataState(param.Parameterized):
    """The Training data view: which run's index, which model, which query and output tokens."""

    run_id = param.String(default=None, allow_None=True, doc="run whose training-data index is queried")
    model = param.String(default="", doc="model to query: local folder, runs:/... or models:/...")
    sample_id = param.String(default=None, allow_None=True, doc="probe sample of the run (prompt and target)")
    prompt = param.String(default="", doc="a typed prompt (replaces the probe sample's)")
    target = param.String(default="", doc="continuation to attribute (empty: the model's generation)")
    user_text = param.String(default="", doc="a user continuation shown side by side with the generation")
    method = param.Selector(default="tracin", objects=["tracin", "grad_cos", "datainf"])
    top_k = param.Integer(default=5, bounds=(1, 50))
    tokens = param.List(default=[], item_type=int, doc="selected output token positions (empty: all)")


class AppState(param.Parameterized):
    """Everything one browser session has selected."""

    tab = param.Selector(default="overview", objects=list(TABS))
    explorer = param.ClassSelector(class_=ExplorerState, instantiate=True)
    compare = param.ClassSelector(class_=CompareState, instantiate=True)
    overview = param.ClassSelector(class_=OverviewState, instantiate=True)
    evolution = param.ClassSelector(class_=EvolutionState, instantiate=True)
    job_form = param.ClassSelector(class_=JobFormState, instantiate=True)
    sources = param.ClassSelector(class_=SourcesState, instantiate=True)
    at2 = param.ClassSelector(class_=EstimatorState, instantiate=True)
    training_data = param.ClassSelector(class_=TrainingDataState, instantiate=True)

    def __init__(self, **params):
        params.setdefault("explorer", ExplorerState())
        params.setdefault("compare", CompareState())
        params.setdefault("overview", OverviewState())
        params.setdefault("evolution", EvolutionState())
        params.setdefault("job_form", JobFormState())
        params.setdefault("sources", SourcesState())
        params.setdefault("at2", EstimatorState())
        params.setdefault("training_data", TrainingDataState())
        super().__init__(**params)
