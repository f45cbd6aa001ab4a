"""The check's :class:`Policy`: thresholds per rule, the rule keys derived from the rule registry.

The rule keys (``min_mean_importance_corr``, ``max_probability_drop``, ...) are not
written here: each comes from a metric registered with a rule
(:mod:`attrib_mlops.check.rules`), with its default, its bounds and its direction.
:class:`MethodPolicy` (per-method overrides) has the same rule keys.

Example:
    >>> p = Policy.model_validate({"max_probability_drop": 0.2, "methods": {"attention": {"min_mean_importance_corr": None}}})
    >>> p.for_method("attention")["min_mean_importance_corr"], p.for_method("saliency")["max_probability_drop"]
    (None, 0.2)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from ..errors import SpecError
from ..options import format_validation_error, parse_yaml
from .rules import Rule, rules

__all__ = ["Policy", "MethodPolicy", "load_policy", "as_policy"]

_WHY_OFF = """
    Why some rules are off by default (numbers from ``recipes/regression_check.py``, see
    ``docs/regression-checks.md``): over ~20 prompt tokens the rank order of the many
    unimportant tokens is noise, so the mean Spearman correlation of two seeds of the
    same clean model (0.15 to 0.41 across methods) overlaps with that of a clean vs a
    shortcut model (-0.08 to 0.25), and the full top-3 set changes for 78-100% of the
    samples between two seeds; the single most important token can flip between the
    asked key and its value from seed to seed (hit@1 differed by up to 0.5 in a
    variant of the task), while the ground truth stays in the top 3. Switch these
    rules on where your baselines are stable.

    Rules whose inputs are missing (no ground truth, no ``probability`` step score,
    no accuracy) are reported as not evaluated and never fail.
"""

#: Policy keys that are not rules of one method: ``(key, type, Field, description)``.
_GENERAL_HEAD = [("k", int, Field(3, ge=1), "size of the top-k token sets (top-k rule, hit@k)")]
_GENERAL_TAIL = [
    ("accuracy_tolerance", float | None, Field(0.05, ge=0.0, le=1.0),
     "baseline - candidate accuracy <= value (when both are known)"),
    ("accuracy_metric", str | None, None, "MLflow metric holding a run's accuracy (read at the step)"),
    ("min_samples", int, Field(1, ge=1), "fewer comparable samples per method: cannot compare"),
    ("n_worst", int, Field(5, ge=0), "samples listed per method in the report"),
]


def _field(rule: Rule, default: Any) -> tuple[Any, Any]:
    lo, hi = rule.bounds if rule.bounds is not None else (None, None)
    return (float | None, Field(default, ge=lo, le=hi))


def _describe(rule: Rule) -> str:
    m = rule.metric
    if rule.which == "drop":
        what = f"baseline - candidate {m.description}"
    elif m.scope == "check_side":
        what = f"candidate {m.description}"
    else:
        what = ("share of samples where " if m.aggregate == "share" else "mean ") + m.description
    off = " (off by default)" if rule.default is None else ""
    return f"{what} {rule.op} value{off}"


class _PolicyBase(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    def for_method(self, method: str) -> dict[str, float | None]:
        """Effective thresholds of one method (defaults overridden by ``methods[method]``)."""
        out = {r.key: getattr(self, r.key) for r in rules()}
        override = self.methods.get(method)  # type: ignore[attr-defined]
        if override is not None:
            for f in override.model_fields_set:
                out[f] = getattr(override, f)
        return out


def _table(rows: list[tuple[str, Any, str]]) -> str:
    w = max(len(f"``{k}``") for k, _, _ in rows)
    line = f"    {'=' * w}  =======  {'=' * 62}"
    out = [line, f"    {'key':<{w}}  default  rule (regression when violated)", line]
    out += [f"    {'``' + k + '``':<{w}}  {str(d):<7}  {text}" for k, d, text in rows]
    return "\n".join(out + [line])


def _build() -> tuple[type[BaseModel], type[BaseModel]]:
    rs = rules()
    method_policy = create_model(
        "MethodPolicy", __base__=BaseModel, __module__=__name__,
        __doc__="Per-method overrides of :class:`Policy` thresholds.\n\n    Only the keys written are overridden; "
                "writing ``null`` switches a rule off for\n    that method. Keys: "
                + ", ".join(f"``{r.key}``" for r in rs) + ".\n",
        **{r.key: _field(r, None) for r in rs},
    )
    method_policy.model_config = ConfigDict(extra="forbid", strict=True)
    method_policy.model_rebuild(force=True)
    rows = [(k, getattr(f, "default", f), text) for k, _t, f, text in _GENERAL_HEAD]
    rows += [(r.key, r.default, _describe(r)) for r in rs]
    rows += [(k, getattr(f, "default", f), text) for k, _t, f, text in _GENERAL_TAIL]
    rows.append(("methods", "{}", "per-method overrides (:class:`MethodPolicy`)"))
    doc = ("Thresholds of a regression check (all keys optional; ``null`` switches a rule off).\n\n"
           "    Defaults (the metrics are defined in :mod:`attrib_mlops.check`; the rule keys come from\n"
           "    the metric registry, see :mod:`attrib_mlops.check.rules`):\n\n" + _table(rows) + "\n" + _WHY_OFF)
    fields: dict[str, Any] = {k: (t, f) for k, t, f, _ in _GENERAL_HEAD}
    fields.update({r.key: _field(r, r.default) for r in rs})
    fields.update({k: (t, f) for k, t, f, _ in _GENERAL_TAIL})
    fields["methods"] = (dict[str, method_policy], Field(default_factory=dict))
    policy = create_model("Policy", __base__=_PolicyBase, __module__=__name__, __doc__=doc, **fields)
    return policy, method_policy


Policy, MethodPolicy = _build()


def _policy_error(err: ValidationError, where: str) -> SpecError:
    valid = ", ".join(Policy.model_fields)
    return SpecError(format_validation_error(err, where) + f". Valid keys: {valid}; per method: "
                     + ", ".join(MethodPolicy.model_fields))


def as_policy(policy: Any) -> Any:
    """A :class:`Policy` from a Policy, a dict of keys, a YAML/JSON file path, or None (defaults)."""
    if policy is None:
        return Policy()
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, (str, os.PathLike)):
        return load_policy(policy)
    if isinstance(policy, Mapping):
        try:
            return Policy.model_validate(dict(policy))
        except ValidationError as e:
            raise _policy_error(e, "policy") from None
    raise SpecError(f"policy must be a Policy, a dict or a YAML file path, got {type(policy).__name__}")


def load_policy(path: str | os.PathLike) -> Policy:
    """Read and validate a YAML (or JSON) policy file.

    Raises:
        SpecError: missing/unreadable file, syntax error, unknown key or wrong type (the key is named).
    """
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"policy file '{p}' not found" + (" (it is a folder)" if p.is_dir() else ""))
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read policy file '{p}': {e}") from None
    data = parse_yaml(text, f"policy file '{p}'")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"policy file '{p}' must hold a mapping of keys to values, got {type(data).__name__}")
    try:
        return Policy.model_validate(data)
    except ValidationError as e:
        raise _policy_error(e, f"policy file '{p}'") from None
