"""Reports of a check: per-method findings and the overall result, as JSON, JUnit XML or text.

Example:
    >>> r = CheckResult("pass")
    >>> r.exit_code, CheckResult.from_json(r.to_json()).verdict
    (0, 'pass')
"""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .._util import json_clean, now_iso
from ..analysis.compare import count_reasons
from .rules import RuleResult, fmt

__all__ = ["EXIT_CODES", "Verdict", "MethodReport", "CheckResult"]

#: Exit code of each verdict (the CLI exits with it).
EXIT_CODES = {"pass": 0, "regression": 1, "cannot_compare": 2}

Verdict = Literal["pass", "regression", "cannot_compare"]


@dataclass
class MethodReport:
    """What the check found for one method.

    Attributes:
        method: method name.
        verdict: ``pass`` / ``regression`` / ``cannot_compare``.
        n_baseline, n_candidate, n_shared, n_compared: sample counts.
        n_truncated: compared samples whose continuations differ after a common prefix
            (compared on the prefix only).
        skipped: ``[{"id", "reason", "detail"}]`` shared samples not compared.
        metrics: aggregated values (``mean_spearman``, ``topk_changed_share``, ...).
        rules: the evaluated thresholds.
        worst: the samples that moved most (lowest Spearman first), with their tokens.
        reasons: why the method cannot be compared (verdict ``cannot_compare``).
    """

    method: str
    verdict: Verdict
    n_baseline: int = 0
    n_candidate: int = 0
    n_shared: int = 0
    n_compared: int = 0
    n_truncated: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float | None] = field(default_factory=dict)
    rules: list[RuleResult] = field(default_factory=list)
    worst: list[dict[str, Any]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @property
    def failed_rules(self) -> list[RuleResult]:
        return [r for r in self.rules if r.passed is False]

    @property
    def skipped_counts(self) -> dict[str, int]:
        return count_reasons(self.skipped)


@dataclass
class CheckResult:
    """The outcome of :func:`compare`.

    Attributes:
        verdict: ``"pass"``, ``"regression"`` or ``"cannot_compare"``.
        baseline, candidate: ``{"ref", "run_id", "step", "model", "accuracy", "methods"}``.
        methods: one :class:`MethodReport` per compared method.
        rules: global rules (``accuracy_drop``).
        reasons: why the sides cannot be compared (verdict ``cannot_compare``).
        policy: the policy used (as a dict).
        created: ISO time of the check.
    """

    verdict: Verdict
    baseline: dict[str, Any] = field(default_factory=dict)
    candidate: dict[str, Any] = field(default_factory=dict)
    methods: list[MethodReport] = field(default_factory=list)
    rules: list[RuleResult] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    policy: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    # ------------------------------------------------------------ accessors
    @property
    def exit_code(self) -> int:
        """0 pass, 1 regression, 2 cannot compare."""
        return EXIT_CODES[self.verdict]

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def method(self, name: str) -> MethodReport:
        for m in self.methods:
            if m.method == name:
                return m
        raise KeyError(f"no method {name!r} in this check; it has {[m.method for m in self.methods]}")

    @property
    def failed_rules(self) -> list[tuple[str, RuleResult]]:
        """``[(method or "global", rule)]`` of every failed rule."""
        out = [(m.method, r) for m in self.methods for r in m.failed_rules]
        return out + [("global", r) for r in self.rules if r.passed is False]

    def message(self) -> str:
        """One line: the verdict and why."""
        if self.verdict == "cannot_compare":
            return "cannot compare: " + "; ".join(self.reasons)
        if self.verdict == "regression":
            failed = self.failed_rules
            shown = "; ".join(f"{m}: {r.describe()}" for m, r in failed[:3])
            more = f"; and {len(failed) - 3} more failed rule(s)" if len(failed) > 3 else ""
            return f"attribution regression ({len(failed)} failed rule(s)): {shown}{more}"
        n = sum(1 for m in self.methods for r in m.rules if r.passed) + sum(1 for r in self.rules if r.passed)
        return f"attribution check passed ({n} rules over {len(self.methods)} method(s))"

    # ------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["exit_code"] = self.exit_code
        d["format"] = "attrib-mlops/check"
        d["schema_version"] = 1
        return json_clean(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CheckResult:
        def rules(xs):
            return [RuleResult(**x) for x in xs or []]

        methods = []
        for m in d.get("methods", []):
            m = dict(m)
            m["rules"] = rules(m.get("rules"))
            methods.append(MethodReport(**m))
        return cls(verdict=d["verdict"], baseline=dict(d.get("baseline", {})), candidate=dict(d.get("candidate", {})),
                   methods=methods, rules=rules(d.get("rules")), reasons=list(d.get("reasons", [])),
                   policy=dict(d.get("policy", {})), created=d.get("created", ""))

    def to_json(self, indent: int | None = 2) -> str:
        """The machine-readable report (``from_dict(json.loads(...))`` restores it)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> CheckResult:
        return cls.from_dict(json.loads(text))

    def to_junit_xml(self, suite_name: str = "attrib-mlops check") -> str:
        """JUnit XML: one test case per (method, rule); a failed rule is a ``<failure>``,
        a rule not evaluated is ``<skipped>``, a side that cannot be compared is an ``<error>``."""
        cases: list[ET.Element] = []
        n_fail = n_err = n_skip = 0

        def case(classname: str, name: str) -> ET.Element:
            el = ET.Element("testcase", classname=classname, name=name, time="0")
            cases.append(el)
            return el

        for reason in self.reasons:
            if not any(reason in m.reasons for m in self.methods):
                el = case("attrib_mlops.check", "compare")
                ET.SubElement(el, "error", message=reason, type="cannot_compare").text = reason
                n_err += 1
        for m in self.methods:
            cls = f"attrib_mlops.check.{m.method}"
            for reason in m.reasons:
                el = case(cls, "compare")
                ET.SubElement(el, "error", message=reason, type="cannot_compare").text = reason
                n_err += 1
            worst = _worst_text(m, limit=3)
            for r in m.rules:
                el = case(cls, r.name)
                if r.passed is False:
                    n_fail += 1
                    f = ET.SubElement(el, "failure", message=f"{m.method}: {r.describe()}", type="regression")
                    f.text = f"{m.method}: {r.describe()}\n{worst}"
                elif r.passed is None:
                    n_skip += 1
                    ET.SubElement(el, "skipped", message=r.note or "not evaluated")
        for r in self.rules:
            el = case("attrib_mlops.check.global", r.name)
            if r.passed is False:
                n_fail += 1
                ET.SubElement(el, "failure", message=r.describe(), type="regression").text = r.describe()
            elif r.passed is None:
                n_skip += 1
                ET.SubElement(el, "skipped", message=r.note or "not evaluated")
        if not cases:  # keep the file meaningful for CI systems
            case("attrib_mlops.check", "compare")
        root = ET.Element("testsuites", name=suite_name, tests=str(len(cases)), failures=str(n_fail),
                          errors=str(n_err), skipped=str(n_skip))
        suite = ET.SubElement(root, "testsuite", name=suite_name, tests=str(len(cases)), failures=str(n_fail),
                              errors=str(n_err), skipped=str(n_skip), time="0",
                              timestamp=self.created or now_iso())
        props = ET.SubElement(suite, "properties")
        for k, v in (("verdict", self.verdict), ("baseline", self.baseline.get("ref")),
                     ("candidate", self.candidate.get("ref"))):
            ET.SubElement(props, "property", name=k, value=str(v))
        suite.extend(cases)
        ET.SubElement(suite, "system-out").text = self.summary_text()
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

    def summary_text(self) -> str:
        """Human summary: verdict, sides, per method the rules and the samples that regressed most."""
        lines = [f"attribution check: {self.verdict.upper().replace('_', ' ')}"]
        for side in ("baseline", "candidate"):
            d = getattr(self, side)
            about = [f"step {d['step']}" if d.get("step") is not None else "",
                     f"model '{d['model']}'" if d.get("model") else "",
                     f"accuracy {fmt(d['accuracy'])}" if d.get("accuracy") is not None else ""]
            about = ", ".join(a for a in about if a)
            lines.append(f"  {side:<9}: {d.get('ref', '?')}" + (f" ({about})" if about else ""))
        for reason in self.reasons:
            lines.append(f"  cannot compare: {reason}")
        for r in self.rules:
            lines.append(f"  {_mark(r)} {r.describe()}")
        for m in self.methods:
            lines.append("")
            head = (f"method {m.method}: {m.verdict.upper().replace('_', ' ')} -- {m.n_compared} of {m.n_shared} "
                    f"shared samples compared")
            if m.n_truncated:
                head += f" ({m.n_truncated} on a common target prefix only)"
            lines.append(head)
            if m.skipped:
                counts = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in m.skipped_counts.items())
                lines.append(f"  skipped {len(m.skipped)}: {counts}")
            for reason in m.reasons:
                lines.append(f"  cannot compare: {reason}")
            for r in m.rules:
                lines.append(f"  {_mark(r)} {r.describe()}")
            if m.worst and m.verdict == "regression":
                lines.append("  samples that changed most:")
                lines.append(_worst_text(m, indent="    "))
        return "\n".join(lines)


def _mark(r: RuleResult) -> str:
    return {True: "pass", False: "FAIL", None: "----"}[r.passed]


def _worst_text(m: MethodReport, limit: int | None = None, indent: str = "  ") -> str:
    out = []
    for w in m.worst[:limit]:
        if "text" in w:  # a kind that describes its own rows (e.g. context sources)
            out.append(f"{indent}{w['id']}: {w['text']}")
            continue
        before = " ".join(f"{t['token']}@{t['pos']}" for t in w["top_baseline"])
        after = " ".join(f"{t['token']}@{t['pos']}" for t in w["top_candidate"])
        parts = [f"importance corr {fmt(w['importance_corr'])}", f"spearman {fmt(w['spearman'])}",
                 f"top tokens {before} -> {after}"]
        if w.get("truth_tokens"):
            parts.append(f"truth {' '.join(w['truth_tokens'])}")
        parts.append(f"target '{' '.join(w['target_tokens']).strip()}'")
        if w.get("probability_baseline") is not None or w.get("probability_candidate") is not None:
            parts.append(f"p {fmt(w.get('probability_baseline'))} -> {fmt(w.get('probability_candidate'))}")
        out.append(f"{indent}{w['id']}: " + "; ".join(parts))
        out.append(f"{indent}  prompt: {' '.join(w['prompt_tokens'])}")
    return "\n".join(out)
