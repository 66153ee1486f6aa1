"""[target] and [pool]: how an attempt leaves, declared beside the transport that reads them
(gq/core/settings.py says how a key is declared; gq/config.py gathers the sections)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gq.core import redaction
from gq.core.hosts import HostPatterns, HostPolicy
from gq.core.settings import URL, WHOLE, Invalid, Table, boolean, integer, quoted, seconds, setting, string_list, text
from gq.delivery.signing import decode_secret


def host_patterns(value: Any) -> tuple[str, ...]:
    patterns = string_list(value)
    try:
        HostPatterns.parse(patterns)
    except ValueError as e:
        raise Invalid(f"{e} (use a host, *.suffix or a CIDR network)") from None
    return patterns


def signing_secrets(value: Any) -> Table:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise Invalid('must be a table of "host pattern" = "whsec_..." strings')
    for pattern, secret in value.items():
        try:
            HostPatterns.parse([pattern])
            decode_secret(secret)
        except ValueError as e:
            raise Invalid(f"{pattern}: {e}") from None
    return Table(value.items())


def http_url(value: Any) -> str:
    value = text(value)
    if value:
        try:
            parts = urlsplit(value)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise Invalid(f"must be an http or https URL, got {quoted(redaction.url(value))}")
    return value


def proxy_url(value: Any) -> str:
    """`http://` or `https://`, [user:password@], host, port; nothing after (its errors
    never show the password)."""
    value = text(value)
    if value:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not one
            ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.path in ("", "/") \
                and not parts.query and not parts.fragment
        except ValueError:
            ok = False
        if not ok:
            raise Invalid(f"must be an http:// or https:// proxy URL with a host and no path, "
                          f"got {quoted(redaction.url(value))}")
    return value


@dataclass(frozen=True)
class PoolConfig:
    size: int = setting(100, integer(1), "jobs in flight at once")


@dataclass(frozen=True)
class TargetConfig:
    url: str = setting("", http_url, "used when a job has no url", secret=URL)
    timeout: float = setting(10.0, seconds(0, above=True), "seconds, per attempt")
    allowed_hosts: tuple[str, ...] = setting(
        (), host_patterns, "hosts, *.suffix or CIDRs; empty = any host but link-local/metadata")
    ca_bundle: str = setting("", text, "CA certificates (PEM file) to verify HTTPS targets (and an https "
                             "proxy); \"\" = the system's")
    proxy: str = setting("", proxy_url, "http(s)://[user:password@]HOST:PORT every attempt goes through "
                         "(CONNECT for https targets); \"\" = none", secret=URL)
    client_cert: str = setting("", text, "PEM file: the TLS client certificate shown to HTTPS targets (mTLS); "
                               "relative: to $CREDENTIALS_DIRECTORY if set")
    client_key: str = setting("", text, "PEM file: client_cert's private key, if not in client_cert's file")
    deny_private: bool = setting(False, boolean, "true: refuse loopback, RFC 1918, CGNAT and unique-local "
                                 "addresses too, at intake and at connect time")
    secret_headers: tuple[str, ...] = setting(
        (), string_list, "header names never shown (Authorization, Cookie and the like always hidden)")
    signing_secrets: Table = setting(
        Table(), signing_secrets, 'sign deliveries (Standard Webhooks): { "host pattern" = "whsec_..." }',
        secret=WHOLE)


    def policy(self) -> HostPolicy:
        return HostPolicy(HostPatterns.parse(self.allowed_hosts), self.deny_private)

    def client_certificate(self) -> str | tuple[str, str] | None:
        """As requests takes it: the certificate's file, with its key's when apart."""
        if not self.client_cert:
            return None
        return (self.client_cert, self.client_key) if self.client_key else self.client_cert

    def hidden_headers(self) -> frozenset[str]:
        return frozenset(h.lower() for h in self.secret_headers)
