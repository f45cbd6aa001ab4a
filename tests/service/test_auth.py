"""Token and bind-address rules of the job service."""

from __future__ import annotations

import pytest

from attrib_mlops.errors import InputError
from attrib_mlops.service.auth import check_bind, is_loopback, token_matches


def test_loopback_addresses():
    assert all(is_loopback(a) for a in ("127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"))
    assert not any(is_loopback(a) for a in ("0.0.0.0", "::", "192.168.1.4", "example.org", ""))


def test_public_bind_needs_a_long_enough_token():
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "x" * 32)
    with pytest.raises(InputError, match="refusing to serve on 0.0.0.0 without a token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(InputError, match="at least 16 characters"):
        check_bind("127.0.0.1", "short")


def test_bearer_header_parsing():
    assert token_matches("Bearer abc", "abc") and token_matches("bearer abc", "abc")
    assert not token_matches("Bearer abd", "abc")
    assert not token_matches("Basic abc", "abc")
    assert not token_matches("abc", "abc")
    assert not token_matches(None, "abc")
    assert not token_matches("Bearer ", "abc")
