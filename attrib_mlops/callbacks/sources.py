"""Context sources in training hooks: the ``sources=`` option of the monitor and the Trainer callback.

At each attribution event (the steps the monitor logs), :class:`SourceHook`:

* every ``ablation_every`` events, attributes the probe set's sources by ablation (the ground
  truth; ``ablation_every`` > 1 keeps its cost down);
* at the steps in ``refit_at`` (or every ``refit_every`` events), refits an AT2 estimator from
  that event's ablations and logs it as an MLflow LoggedModel linked to the checkpoint, with its
  held-out quality (:func:`attrib_mlops.tracking.estimators.log_estimator`);
* every event, scores the sources with the current estimator (``at2``, one forward per batch) and
  naive attention averaging (``attention``) when asked: cheap per-step source-use drift;
* every ``faithfulness_every`` events (opt-in), adds ERASER comprehensiveness, sufficiency and
  deletion AUC of the token methods to their results, logged as the registered metrics
  ``attrib/<method>/comprehensiveness``...

Sources results are stored as the ``sources`` kind (``attrib/sources/<method>/<metric>``:
``lds``, ``top1_drop``, ``hit_at_1`` when probes name ``true_sources``, drift against the
previous event). The model leaves every call as it came (``model_guard``): training is unchanged.

Example:
    >>> cb = AttributionCallback(probe, methods=["saliency"], every_n_steps=100,          # doctest: +SKIP
    ...                          sources={"methods": ["ablation", "at2"], "refit_at": [200],
    ...                                   "ablation_every": 5, "options": {"n_ablations": 32}})
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import InputError, SpecError

logger = logging.getLogger("attrib_mlops.callbacks")

__all__ = ["SourceTracking", "SourceHook", "parse_source_tracking"]

_METHODS = ("ablation", "at2", "attention")


class SourceTracking(BaseModel):
    """What the ``sources=`` option asks for (a dict with these keys, a splitter name, or True).

    Attributes:
        methods: ``ablation``, ``at2`` and/or ``attention`` (naive attention averaging).
        split: splitter of probes that name no sources (``sentence``, ``line``, ``turn``, ``token``).
        field: the probe field with a sample's sources (substrings in prompt order, or a splitter name).
        truth_field: the probe field with the indices of its true sources (for ``hit_at_1``).
        options: :class:`~attrib_mlops.sources.options.SourceOptions` of the ablations.
        ablation_every: ablation ground truth every N events (1 = every event).
        estimator: an AT2 estimator to start with (folder, ``models:/`` or ``runs:/`` URI).
        refit_at: steps at which the estimator is refitted from that step's ablations.
        refit_every: or refit every N events.
        at2_options: :class:`~attrib_mlops.sources.at2.options.AT2TrainOptions` of the refits.
        faithfulness_every: ERASER metrics of the token methods every N events (None = off).
        faithfulness_options: options of :func:`attrib_mlops.sources.faithfulness.faithfulness`.
    """

    model_config = ConfigDict(extra="forbid")

    methods: tuple[str, ...] = ("ablation",)
    split: str = "sentence"
    field: str = "sources"
    truth_field: str = "true_sources"
    options: dict[str, Any] = Field(default_factory=dict)
    ablation_every: int = Field(1, ge=1)
    estimator: str | None = None
    refit_at: tuple[int, ...] = ()
    refit_every: int | None = Field(None, ge=1)
    at2_options: dict[str, Any] = Field(default_factory=dict)
    faithfulness_every: int | None = Field(None, ge=1)
    faithfulness_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("methods")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [m for m in v if m not in _METHODS]
        if bad:
            raise ValueError(f"unknown source method(s) {bad}; valid: {', '.join(_METHODS)}")
        return tuple(dict.fromkeys(v))


def parse_source_tracking(value: Any) -> SourceTracking:
    """A :class:`SourceTracking` from itself, a dict, a splitter name or True.

    >>> parse_source_tracking("line").split, parse_source_tracking(True).methods
    ('line', ('ablation',))

    Raises:
        SpecError: an unknown key or a bad value (named).
    """
    if isinstance(value, SourceTracking):
        return value
    if value is True:
        return SourceTracking()
    if isinstance(value, str):
        return SourceTracking(split=value)
    if not isinstance(value, dict):
        raise SpecError(f"sources= takes True, a splitter name or a dict of SourceTracking keys, got "
                        f"{type(value).__name__}")
    try:
        return SourceTracking(**value)
    except ValidationError as e:
        parts = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise SpecError(f"invalid sources= option: {'; '.join(parts)} (valid keys: "
                        f"{', '.join(SourceTracking.model_fields)})") from None


class SourceHook:
    """The sources part of an :class:`~attrib_mlops.callbacks.base.AttributionMonitor` (see module doc)."""

    def __init__(self, config: Any, probe: Any) -> None:
        self.config = parse_source_tracking(config)
        cfg = self.config
        if "at2" in cfg.methods and not (cfg.estimator or cfg.refit_at or cfg.refit_every):
            raise InputError("sources method 'at2' needs an estimator: give sources={'estimator': <folder or URI>} "
                             "or refit one from the probe ablations with 'refit_at' / 'refit_every'")
        from ..sources.at2.options import parse_train_options
        from ..sources.options import parse_source_options

        parse_source_options(cfg.options)  # a bad option fails now, not mid-training
        parse_train_options(cfg.at2_options)
        self.probe = probe
        self.specs: list[Any] = []
        self.truth: list[list[int] | None] = []
        for s in probe:
            spec = s.meta.get(cfg.field)
            spec = cfg.split if spec is None else spec  # a row without sources: the splitter
            if not isinstance(spec, (str, list, tuple)):
                raise InputError(f"probe {s.id!r}: field {cfg.field!r} must be a list of source substrings or a "
                                 f"splitter name, got {type(spec).__name__}")
            self.specs.append(spec if isinstance(spec, str) else [str(x) for x in spec])
            t = s.meta.get(cfg.truth_field)
            self.truth.append(None if t is None else ([int(t)] if isinstance(t, (int, float)) else
                                                      [int(x) for x in t]))
        self.n_events = 0
        self._refitted = False
        self.estimator: Any = None
        self.estimators: list[Any] = []  # LoggedEstimator of each refit
        self.last_results: list[Any] = []

    # ------------------------------------------------------------ helpers
    def _sources_arg(self) -> Any:
        if all(isinstance(s, str) for s in self.specs) and len(set(self.specs)) == 1:
            return self.specs[0]
        if all(not isinstance(s, str) for s in self.specs):
            return self.specs
        raise InputError("probes mix splitter names and explicit source lists; give every probe a list of "
                         "sources, or none (then sources.split applies)")

    def _attribute(self, model: Any, tok: Any, targets: Any, method: str, **kw: Any) -> list[Any]:
        from ..sources.api import attribute_sources

        out = attribute_sources(model, tok, self.probe.prompts, targets, self._sources_arg(), method,
                                sample_ids=self.probe.ids, **kw)
        for r, t in zip(out, self.truth):
            if t is not None:
                r.info["true_sources"] = list(t)
        return out

    def _refit_due(self, step: int) -> bool:
        cfg = self.config
        return step in cfg.refit_at or (cfg.refit_every is not None and self.n_events % cfg.refit_every == 0)

    # ------------------------------------------------------------ events
    def add_faithfulness(self, model: Any, tok: Any, results: list[Any]) -> None:
        """Every ``faithfulness_every`` events: ERASER metrics into each token result's ``info``."""
        every = self.config.faithfulness_every
        if every is None or self.n_events % every:
            return
        from ..sources.faithfulness import faithfulness

        for r in results:
            try:
                r.info["faithfulness"] = faithfulness(model, tok, r, **self.config.faithfulness_options)
            except InputError as e:
                logger.warning("faithfulness of sample %r (%s) skipped: %s", r.sample_id, r.method, e)

    def on_event(self, model: Any, tok: Any, step: int, targets: Any) -> list[Any]:
        """Compute this event's source results (refitting the estimator when due); returns them."""
        cfg = self.config
        refit = self._refit_due(step)
        results: list[Any] = []
        ablations = None
        if refit or ("ablation" in cfg.methods and self.n_events % cfg.ablation_every == 0):
            opts = dict(cfg.options)
            if refit:  # AT2 trains on every mask it is given
                opts.setdefault("n_holdout", 8)
            ablations = self._attribute(model, tok, targets, "ablation", **opts)
            if "ablation" in cfg.methods:
                results += ablations
        if refit:
            from ..sources.at2.train import train_source_estimator

            opts = {k: v for k, v in cfg.at2_options.items() if k not in ("n_ablations", "n_holdout")}
            self.estimator = train_source_estimator(model, tok, self.probe.prompts, targets, self._sources_arg(),
                                                    sample_ids=self.probe.ids, ablations=ablations, **opts)
            self.estimator.info["checkpoint_step"] = int(step)
        elif self.estimator is None and cfg.estimator:
            from ..sources.at2.estimator import SourceEstimator

            self.estimator = SourceEstimator.load(cfg.estimator)
        if "at2" in cfg.methods and self.estimator is not None:
            results += self._attribute(model, tok, targets, "at2", estimator=self.estimator)
        if "attention" in cfg.methods:
            results += self._attribute(model, tok, targets, "attention")
        self.last_results = results
        self._refitted = refit
        self.n_events += 1
        return results

    def run(self, monitor: Any, model: Any, tok: Any, step: int, checkpoint: str | None) -> None:
        """One event of ``monitor`` (after its token step): compute, then log to its run.

        Failures are recorded in ``monitor.failures`` and logged (``strict=True`` raises), as for
        the token methods: training never stops because of them.
        """
        try:
            results = self.on_event(model, tok, step, monitor._targets())
            online = monitor._writer is not None and monitor._reachable()
            if monitor._writer is None:
                logger.warning("step %d: source results not logged: no tracking run yet (server unreachable)", step)
                return
            self.log(monitor._writer, monitor._client, monitor.run_id, step, results, monitor.model_name,
                     checkpoint, monitor.checkpoint_models.get(step), online)
        except Exception as e:  # noqa: BLE001 - never crash the user's training
            if monitor.strict:
                raise
            monitor.failures.append((step, f"sources: {type(e).__name__}: {e}"))
            logger.exception("source attribution at step %d failed and was skipped (strict=False): %s", step, e)

    def log(self, writer: Any, client: Any, run_id: str, step: int, results: list[Any], model_name: str,
            checkpoint: str | None, checkpoint_model_id: str | None, online: bool) -> None:
        """Log this event's source results (and a refitted estimator) to the monitor's run."""
        if results:
            writer.log_step(step, results, model=model_name, offline=not online, model_id=checkpoint_model_id)
        if getattr(self, "_refitted", False) and self.estimator is not None:
            if not online:
                logger.warning("AT2 estimator refitted at step %d not logged: tracking server unreachable", step)
                return
            from ..tracking.estimators import log_estimator

            logged = log_estimator(self.estimator, run_id=run_id, tracking_uri=client.tracking_uri, step=step,
                                   checkpoint=checkpoint, checkpoint_model_id=checkpoint_model_id)
            self.estimators.append(logged)
            self.estimator.info["uri"] = logged.uri
