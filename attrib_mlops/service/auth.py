"""Bearer-token authentication of the job service, and the bind-address rule.

* Every ``/api`` request (HTTP and WebSocket) must carry ``Authorization: Bearer
  <token>`` when the service has a token. Browsers cannot set headers on a
  WebSocket, so the WebSocket also accepts ``?token=<token>`` (it then appears in
  access logs of proxies; prefer the header where the client allows it).
* Tokens are compared in constant time (:func:`secrets.compare_digest`).
* :func:`check_bind` refuses a non-loopback address without a token: a service that
  runs models on request must not be open to the network.

Example:
    >>> check_bind("127.0.0.1", None)                       # loopback: a token is optional
    >>> check_bind("0.0.0.0", None)                         # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    attrib_mlops.errors.InputError: refusing to serve on 0.0.0.0 without a token ...
    >>> token_matches("Bearer s3cret", "s3cret"), token_matches("Bearer nope", "s3cret")
    (True, False)
"""

from __future__ import annotations

import ipaddress
import secrets

from ..errors import InputError

__all__ = ["is_loopback", "check_bind", "token_matches", "TOKEN_ENV", "MIN_TOKEN_LENGTH"]

#: Environment variable the ``serve`` command reads the token from.
TOKEN_ENV = "ATTRIB_MLOPS_SERVICE_TOKEN"
#: Shortest token accepted (``python -c "import secrets; print(secrets.token_urlsafe(32))"`` makes a good one).
MIN_TOKEN_LENGTH = 16


def is_loopback(address: str) -> bool:
    """True for ``localhost`` and loopback IPs (127.0.0.0/8, ::1)."""
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(address: str, token: str | None) -> None:
    """Raise :class:`InputError` when ``address`` is not loopback and there is no token, or the token is too short."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise InputError(f"the service token must be at least {MIN_TOKEN_LENGTH} characters long; make one with "
                         "python -c \"import secrets; print(secrets.token_urlsafe(32))\"")
    if not is_loopback(address) and not token:
        raise InputError(
            f"refusing to serve on {address} without a token: anyone who reaches the port could run models and read "
            f"results. Set {TOKEN_ENV} (or --token), or bind 127.0.0.1 and put an authenticating proxy in front"
        )


def token_matches(authorization: str | None, token: str) -> bool:
    """True when the ``Authorization`` header value is ``Bearer <token>`` (constant-time comparison)."""
    if not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return secrets.compare_digest(given.strip().encode(), token.encode())
