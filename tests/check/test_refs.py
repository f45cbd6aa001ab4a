"""check.refs: the REF grammar."""

from __future__ import annotations

import pytest

from attrib_mlops.check import CannotCompare, parse_ref
from attrib_mlops.errors import AttribError


def test_parse_ref_grammar(tmp_path):
    r = parse_ref("runs:/abc123@40#ft")
    assert (r.kind, r.run_id, r.step, r.latest, r.model) == ("mlflow", "abc123", 40, False, "ft")
    r = parse_ref("runs:/abc123@latest")
    assert (r.step, r.latest, r.model) == (None, True, None)
    assert parse_ref("runs:/abc123").step is None and not parse_ref("runs:/abc123").latest
    (tmp_path / "res").mkdir()
    assert parse_ref(str(tmp_path / "res")).path == str(tmp_path / "res")
    r = parse_ref(f"{tmp_path / 'res'}@tiny")
    assert (r.kind, r.path, r.model) == ("folder", str(tmp_path / "res"), "tiny")
    for bad, msg in [("runs:/abc@x1", "neither"), ("runs:/", "expected"), ("runs:/abc#", "empty model"),
                     (str(tmp_path / "missing"), "no such results folder"), ("", "empty"),
                     ("models:/m/1", "only")]:
        with pytest.raises(CannotCompare, match=msg):
            parse_ref(bad)
    assert issubclass(CannotCompare, AttribError)


# ------------------------------------------------------------------ verdicts
