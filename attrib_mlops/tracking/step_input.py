"""What one ``log_step`` call is given, checked and put in shape before anything is written.

Results are grouped by method with their sample ids set (a result without one takes
the probe id at its position within its method, or the position itself) and unique;
ground truth is the probe's, overridden per sample by the call's; a run given results
but no probe set gets one made of the results' prompts and targets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from attrib_mlops.errors import InputError
from attrib_mlops.samples import ProbeSet
from attrib_mlops.tracking import layout as L

__all__ = ["group_by_method", "probe_from_results", "merge_ground_truth"]


def group_by_method(results: list[Any], probe: dict[str, Any] | None) -> dict[str, list[Any]]:
    """``{method: results}`` with sample ids set and unique (``InputError`` naming the duplicates otherwise)."""
    groups: dict[str, list[Any]] = {}
    for r in results:
        groups.setdefault(r.method, []).append(r)
    probe_ids = [s["id"] for s in (probe or {}).get("samples", [])]
    for method, rs in groups.items():
        L.safe_name(method)
        fixed = []
        for i, r in enumerate(rs):
            if r.sample_id is None:
                sid = probe_ids[i] if len(rs) == len(probe_ids) else str(i)
                r = dataclasses.replace(r, sample_id=sid)
            fixed.append(r)
        ids = [str(r.sample_id) for r in fixed]
        if len(set(ids)) != len(ids):
            dup = sorted({x for x in ids if ids.count(x) > 1})
            raise InputError(f"method {method!r}: sample ids must be unique within a step, duplicated: {dup[:5]}")
        groups[method] = fixed
    return groups


def probe_from_results(results: list[Any], gt: Mapping[str, Any] | None) -> dict[str, Any]:
    """The probe section of a run that was given results but no probe set (their prompts and targets)."""
    first_method = results[0].method
    rows, seen = [], set()
    for i, r in enumerate(x for x in results if x.method == first_method):
        sid = str(r.sample_id) if r.sample_id is not None else str(i)
        if sid not in seen:
            seen.add(sid)
            rows.append({"id": sid, "prompt": r.prompt, "target": r.target, "ground_truth": (gt or {}).get(sid)})
    return ProbeSet.from_stored(rows).storage_section()


def merge_ground_truth(given: Mapping[str, Sequence[int]] | None, probe: dict[str, Any] | None) -> dict[str, list[int]]:
    """``{sample_id: positions}``: the probe section's ground truth, overridden by ``given``."""
    out = {s["id"]: s["ground_truth"] for s in (probe or {}).get("samples", []) if s.get("ground_truth")}
    for sid, pos in (given or {}).items():
        try:
            out[str(sid)] = [int(p) for p in pos]
        except (TypeError, ValueError):
            raise InputError(f"ground_truth[{sid!r}] must be a list of source positions, got {pos!r}") from None
    return out
