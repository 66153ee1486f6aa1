"""Who is asking: the one place that tells a request's role from the tokens it carries.

The API (gq/intake/api.py) and the console both ask here:

- "token": the bearer `api.token`; may read and change everything.
- "read_token": the bearer `api.read_token`; may read everything, change nothing (403).
- "anonymous": no `api.token` is configured (a loopback listen only): everyone may do everything.

Tokens are compared in constant time. The config passed in is the one in force, so a
reload (SIGHUP) that changes a token applies to the next request.
"""

from __future__ import annotations

import hmac
from typing import Literal

from gq.config import ApiConfig

Role = Literal["token", "read_token", "anonymous"]
TOKEN: Role = "token"
READ_TOKEN: Role = "read_token"
ANONYMOUS: Role = "anonymous"

READS = ("GET", "HEAD")  # what a read token may do; any other method changes something
CLIENT_HEADER = "X-GQ-Client"  # `cli` from gq's own command line: the client's word, not proof
CLIENT_ENVIRON = "HTTP_" + CLIENT_HEADER.upper().replace("-", "_")


def _same(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def role_of(secret: str, api: ApiConfig) -> Role | None:
    """The role a presented secret (a bearer token, a console sign-in) gives; None when a
    token is configured and `secret` is neither it nor the read token."""
    if not api.token:
        return ANONYMOUS
    # Both compared, whichever matches: how long it takes says nothing of which one did.
    full, read = _same(secret, api.token), _same(secret, api.read_token)
    return TOKEN if full else READ_TOKEN if read else None


def bearer(environ: dict) -> str | None:
    """The token of a request's `Authorization: Bearer …` header; None without one."""
    scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def role(environ: dict, api: ApiConfig) -> Role | None:
    """The role of a request by its bearer token (see role_of); None: refuse it (401)."""
    if not api.token:
        return ANONYMOUS
    token = bearer(environ)
    return None if token is None else role_of(token, api)


def may_change(who: Role) -> bool:
    """Whether `who` may change anything (cancel, replay, submit, purge)."""
    return who != READ_TOKEN


def via(environ: dict) -> str:
    """Where an API request says it comes from, for the audit: "cli" when gq's own command
    line sent it (its X-GQ-Client header, which any client could send), else "api"."""
    return "cli" if environ.get(CLIENT_ENVIRON, "").strip().lower() == "cli" else "api"
