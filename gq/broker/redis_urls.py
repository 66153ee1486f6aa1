"""Redis URLs as gq takes them in broker.url: redis://, rediss://, unix://, and
redis+sentinel:// (Redis Sentinel), parsed and checked here without importing redis, so
that the config is checked without it."""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote

from gq.core import redaction
from gq.core.settings import Invalid, quoted, text

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_QUERY = ("sentinel_username", "sentinel_password")


class SentinelURL(NamedTuple):
    sentinels: list[tuple[str, int]]
    service: str
    db: int
    username: str | None            # the master's (and its replicas'), before the @
    password: str | None
    sentinel_username: str | None   # the sentinels' own, in the query
    sentinel_password: str | None


def sentinel_parts(url: str) -> SentinelURL:
    """redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…]/SERVICE[/DB][?sentinel_password=P]
    → its parts (credentials percent-decoded); ValueError naming what is wrong."""
    rest, _, query = url[len(SENTINEL_SCHEME) + 3:].partition("?")
    userinfo, at, rest = rest.rpartition("@")
    hosts_text, _, path = rest.partition("/")
    service, _, db = path.partition("/")
    sentinels = []
    for item in hosts_text.split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"sentinel {item!r} is not HOST:PORT")
        sentinels.append((host.strip("[]"), int(port)))
    if not service:
        raise ValueError("no service name after the sentinels (…/SERVICE[/DB])")
    if db and not db.isdigit():
        raise ValueError(f"database {db!r} is not a number")
    username, colon, password = userinfo.partition(":")
    if at and not colon:
        raise ValueError("the credentials before @ must be [USER]:PASSWORD")
    given = parse_qs(query, keep_blank_values=True)
    for name in given:
        if name not in SENTINEL_QUERY:
            raise ValueError(f"unknown query parameter {name!r} (known: {', '.join(SENTINEL_QUERY)})")
    sentinel_username, sentinel_password = (given.get(name, [None])[-1] for name in SENTINEL_QUERY)
    return SentinelURL(sentinels, service, int(db or 0), unquote(username) or None,
                       unquote(password) if colon else None, sentinel_username, sentinel_password)


def redis_url(value: Any) -> str:
    value = text(value)
    scheme = value.partition("://")[0]
    if scheme == SENTINEL_SCHEME:
        try:
            sentinel_parts(value)
        except ValueError as e:
            raise Invalid(f"{e}, in {quoted(redaction.url(value))}") from None
    elif value and (scheme not in ("redis", "rediss", "unix") or "://" not in value):
        raise Invalid(f"must be a redis://, rediss://, unix:// or {SENTINEL_SCHEME}:// URL, "
                      f"got {quoted(redaction.url(value))}")
    return value
