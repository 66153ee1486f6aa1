"""Workers: one attempt of one job → an AttemptResult. The HTTP worker is the default."""

from __future__ import annotations

import http.client
import socket
import time
import zlib
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import gevent
import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NameResolutionError, NewConnectionError
from urllib3.response import BaseHTTPResponse
from urllib3.util import connection as urllib3_connection

from gq import USER_AGENT
from gq.core import hosts, redaction
from gq.core.hosts import HostPolicy
from gq.core.job import Job
from gq.core.outcome import AttemptResult
from gq.delivery.response_limits import BoundedResponse
from gq.delivery.sections import PoolConfig, TargetConfig
from gq.delivery.signing import Signer

# identity: a body is kept as sent (its first bytes), never inflated (a gzip bomb stays small)
BASE_HEADERS = {"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "identity"}
URL_CACHE = 4096             # prepared URLs remembered (webhook jobs share few URLs)
SNIPPET_BYTES = 512          # kept with each attempt, for operators
MAX_RESPONSE_BYTES = 65536   # read at most this much of a response; a longer one closes the connection
FROZEN = 1.0                 # seconds late a timer fires when gq itself did not run (SIGSTOP, a stall)


class Worker(Protocol):
    def attempt(self, job: Job, timeout: float) -> AttemptResult:
        """Run one attempt of `job`, at most `timeout` seconds; never raises for the job's failures."""


class TargetRefused(Exception):
    """The target's address is not allowed (raised at connect time, never retried)."""


@dataclass(frozen=True)
class Egress:
    """How attempts leave gq: where they may go, the TLS they trust and show, the proxy."""

    policy: HostPolicy = HostPolicy()
    ca_bundle: str = ""                            # "" = the system's CAs
    proxy: str = ""                                # "" = straight to the target
    client_cert: str | tuple[str, str] | None = None  # as requests takes it: file, or (cert, key)


def allowed_addresses(policy: HostPolicy, host: str, port: int) -> list[str]:
    """The addresses `host` resolves to that `policy` allows; TargetRefused if none is, and
    socket.gaierror if it does not resolve."""
    allowed: list[str] = []
    reason = ""
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        ip = str(sockaddr[0])
        addr = hosts.address(ip)
        reason = (policy.refuse_address(host, addr) if addr is not None else f"{ip} is not an address") or ""
        if not reason:
            allowed.append(ip)
    if not allowed:
        raise TargetRefused(reason)
    return allowed


class _Guarded:
    """Connects only to resolved addresses the host policy allows (DNS rebinding included)."""

    policy: HostPolicy

    def _new_conn(self) -> socket.socket:
        conn = cast(HTTPConnection, self)  # a mixin of urllib3's connection classes (GuardedAdapter)
        try:
            allowed = allowed_addresses(self.policy, conn._dns_host, conn.port)
        except socket.gaierror as e:  # a failed attempt, never a connection made unchecked
            raise NameResolutionError(conn.host, conn, e) from e
        for i, ip in enumerate(allowed):
            try:
                return urllib3_connection.create_connection(
                    (ip, conn.port), conn.timeout, source_address=conn.source_address,
                    socket_options=conn.socket_options)
            except TimeoutError as e:
                if i == len(allowed) - 1:
                    raise ConnectTimeoutError(conn, f"connection to {conn.host} timed out") from e
            except OSError as e:
                if i == len(allowed) - 1:
                    raise NewConnectionError(conn, f"Failed to establish a new connection: {e}") from e
        raise AssertionError("unreachable")


def _pool_classes(name: str, mixins: tuple[type, ...], attributes: dict) -> dict[str, type]:
    """urllib3 pool classes by scheme, whose connections are `mixins` + urllib3's own."""
    http_conn = type(f"{name}HTTPConnection", (*mixins, HTTPConnection), attributes)
    https_conn = type(f"{name}HTTPSConnection", (*mixins, HTTPSConnection), attributes)
    return {"http": type(f"{name}HTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
            "https": type(f"{name}HTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn})}


class GuardedAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections obey a HostPolicy, and read bounded answers.

    Through a proxy, a connection goes to the proxy (the operator's, not a job's, to choose):
    the worker checks the target's addresses itself before it asks the proxy."""

    def __init__(self, policy: HostPolicy, **kwargs: Any):
        self._pool_classes = _pool_classes("Guarded", (_Guarded,), {"policy": policy,
                                                                     "response_class": BoundedResponse})
        self._proxied_pool_classes = _pool_classes("Proxied", (), {"response_class": BoundedResponse})
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pool_classes

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        # urllib3 turns Nagle's algorithm back on for proxies: with the body sent after the
        # head, each attempt would then wait out the proxy's delayed ACK (40 ms on Linux).
        proxy_kwargs.setdefault("socket_options", HTTPConnection.default_socket_options)
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = self._proxied_pool_classes
        return manager

    def build_response(self, req: requests.PreparedRequest, resp: BaseHTTPResponse) -> requests.Response:
        """The status, headers (urllib3's, case-blind) and raw body; no cookie jar."""
        response = requests.Response()
        response.status_code, response.raw = resp.status, resp
        response.headers = resp.headers  # type: ignore[assignment]  # urllib3's HTTPHeaderDict: case-blind too, not copied
        response.reason, response.request, response.connection = resp.reason or "", req, self
        response.url = req.url or ""
        return response


class AttemptTimeout(gevent.Timeout):
    """The deadline of a whole attempt (connect, send, answer), except for time gq itself
    did not run: when the process was stopped (SIGSTOP, a frozen VM) or the event loop
    stalled, the timer fires late, at once on waking, though the answer may be waiting in
    the socket. Then the deadline moves by the time lost, so the attempt reads what came
    meanwhile instead of being charged a timeout the target did not cause."""

    def start(self) -> None:
        self._due = time.monotonic() + self.seconds
        super().start()

    def _on_expiration(self, prev_greenlet: gevent.Greenlet, ex: BaseException) -> None:
        late = time.monotonic() - self._due
        if late < FROZEN:
            prev_greenlet.throw(ex)
            return
        self._due += late
        timer = gevent.get_hub().loop.timer(late, priority=-1)
        self.timer.close()  # type: ignore[has-type]  # gevent's Timeout keeps its libev timer here
        self.timer = timer
        timer.start(self._on_expiration, prev_greenlet, ex, update=True)


class HttpWorker:
    """Sends jobs through one requests HTTPAdapter, keep-alive reused across jobs.

    A job is sent as a PreparedRequest straight to the adapter: what
    Session.request adds per call (merging session settings, environment
    proxies, hooks, cookies and redirect handling) costs more than the rest of
    the attempt and does nothing for gq, which follows no redirects, keeps no
    cookies and takes no proxy from the environment (only target.proxy). TLS is
    verified (against target.ca_bundle when given).
    """

    def __init__(self, pool_size: int, egress: Egress = Egress(), signer: Signer | None = None,
                 hidden: frozenset[str] = frozenset()):
        # a job's URL → (as requests prepares it: quoted, IDNA; basic auth from its user:password@)
        self._urls: dict[str, tuple[str, str | bytes | None]] = {}  # URL → (as sent, its basic auth)
        self.egress, self._pool_size = egress, 0  # size 0: no adapter yet
        self._take(pool_size, egress, signer, hidden)

    @classmethod
    def from_config(cls, target: TargetConfig, pool: PoolConfig) -> HttpWorker:
        """A worker for [target], with pool.size keep-alive connections per host."""
        return cls(**cls._settings(target, pool))

    def configure(self, target: TargetConfig, pool: PoolConfig) -> None:
        """A reloaded [target] and [pool]; the next attempt uses them."""
        self._take(**self._settings(target, pool))

    @staticmethod
    def _settings(target: TargetConfig, pool: PoolConfig) -> dict[str, Any]:
        egress = Egress(target.policy(), target.ca_bundle, target.proxy, target.client_certificate())
        return {"pool_size": pool.size, "egress": egress, "signer": Signer(target.signing_secrets.as_dict()),
                "hidden": target.hidden_headers()}

    def _take(self, pool_size: int, egress: Egress, signer: Signer | None, hidden: frozenset[str]) -> None:
        """Take (reloaded) settings; the next attempt uses them. A new pool size or egress
        means new keep-alive connections: `pool_size` per host, through the policy's guard."""
        self.signer = signer
        self.hidden = hidden  # header names (lower case), besides redaction.SECRET_HEADERS, no error may show
        self.verify: bool | str = egress.ca_bundle or True
        self.proxies = {"http": egress.proxy, "https": egress.proxy} if egress.proxy else None
        if pool_size != self._pool_size or egress != self.egress:
            self.egress, self._pool_size = egress, pool_size
            self.adapter = GuardedAdapter(egress.policy, pool_connections=16, pool_maxsize=pool_size, max_retries=0)

    def _check_before_proxy(self, url: str) -> None:
        """The connect-time rule, on the target's addresses as gq resolves them: the proxy
        is asked only for a target the policy allows."""
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        allowed_addresses(self.egress.policy, hosts.url_host(url), port)

    def _prepare(self, job: Job) -> tuple[requests.PreparedRequest, bytes | None]:
        prepared = self._urls.get(job.url)
        if prepared is None:
            probe = requests.PreparedRequest()
            probe.prepare_url(job.url, None)
            probe.headers = CaseInsensitiveDict()
            probe.prepare_auth(None, probe.url or "")  # user:password@ in the URL → basic auth
            if len(self._urls) >= URL_CACHE:
                self._urls.clear()
            prepared = self._urls[job.url] = (probe.url or job.url, probe.headers.get("Authorization"))
        url, auth = prepared
        headers: CaseInsensitiveDict[str | bytes] = CaseInsensitiveDict(BASE_HEADERS)
        if auth:
            headers["Authorization"] = auth
        headers.update(job.headers)
        headers["Idempotency-Key"] = job.id
        body = job.data.encode() if job.data is not None else None
        if job.is_json and "Content-Type" not in headers:
            headers["Content-Type"] = "application/json"
        if body is not None:
            headers["Content-Length"] = str(len(body))
        elif job.method not in ("GET", "HEAD"):
            headers["Content-Length"] = "0"
        if self.signer:
            headers.update(self.signer.headers(urlsplit(url).hostname or "", job.id, body))
        request = requests.PreparedRequest()
        request.method, request.url, request.headers, request.body = job.method, url, headers, body
        return request, body

    def attempt(self, job: Job, timeout: float) -> AttemptResult:
        started, clock = time.time(), time.monotonic()
        try:
            request, body = self._prepare(job)
            # One deadline for the whole attempt; no socket timeouts of their own beneath it
            # (they would not know that the process was stopped: see AttemptTimeout).
            with AttemptTimeout(timeout):
                if self.proxies:
                    self._check_before_proxy(request.url or "")
                response = self.adapter.send(request, stream=True, timeout=None, verify=self.verify,
                                             cert=self.egress.client_cert, proxies=self.proxies)
                raw = response.raw
                try:
                    content = raw.read(MAX_RESPONSE_BYTES, decode_content=False)
                except BaseException:
                    raw.close()
                    raise
                if len(content) < MAX_RESPONSE_BYTES:
                    raw.release_conn()  # body read to its end: keep the connection
                else:
                    raw.close()  # rather than read an unbounded body, drop the connection
        except AttemptTimeout:
            return AttemptResult(started, time.monotonic() - clock, error=f"timeout: no answer within {timeout:g}s")
        except (UnicodeError, ValueError) as e:  # a request the HTTP stack cannot send
            return AttemptResult(started, time.monotonic() - clock,
                                 error=_scrubbed(f"refused: cannot send: {e}", job, self.hidden, self.egress.proxy),
                                 refused=True)
        except TargetRefused as e:
            return AttemptResult(started, time.monotonic() - clock, error=f"refused: {e}", refused=True)
        except socket.gaierror as e:  # the target's name, resolved by gq before it asks the proxy
            return AttemptResult(started, time.monotonic() - clock, error=f"connect: {e}")
        except (requests.RequestException, HTTPError, OSError) as e:  # HTTPError: urllib3's, reading the body
            error = _scrubbed(_describe(e), job, self.hidden, self.egress.proxy)
            return AttemptResult(started, time.monotonic() - clock, error=error)
        return AttemptResult(
            started, time.monotonic() - clock, status=response.status_code,
            retry_after=response.headers.get("Retry-After"),
            snippet=_snippet(content, response.headers.get("Content-Encoding", "")))

    def close(self) -> None:
        self.adapter.close()


def _snippet(content: bytes, encoding: str) -> str:
    """The start of a body for operators; a compressed one (sent despite Accept-Encoding:
    identity) inflated to SNIPPET_BYTES at most."""
    if encoding.strip().lower() in ("gzip", "deflate"):
        try:
            content = zlib.decompressobj(wbits=47).decompress(content, SNIPPET_BYTES)  # 47: gzip or zlib
        except zlib.error:
            pass
    return content[:SNIPPET_BYTES].decode("utf-8", "replace")


def _describe(error: Exception) -> str:
    # The innermost cause says what happened ("Connection refused"), not urllib3's wrapping.
    cause: BaseException = error
    while (inner := cause.__cause__ or cause.__context__) is not None:
        cause = inner
    kind = ("timeout" if isinstance(error, (requests.Timeout, TimeoutError))
            else "protocol" if isinstance(cause, http.client.HTTPException)  # a malformed answer
            else "tls" if isinstance(error, requests.exceptions.SSLError)
            else "connect" if isinstance(error, requests.ConnectionError)
            else "request")
    return f"{kind}: {cause}"[:300]


def _scrubbed(error: str, job: Job, hidden: frozenset[str], proxy: str = "") -> str:
    """An error text with the job's secrets taken out (the HTTP stack quotes URLs in its
    errors): its URL's and the proxy's, and its credential headers' values (those named in
    `hidden` too)."""
    secrets = redaction.url_secrets(job.url) + redaction.url_secrets(proxy)
    return redaction.scrub(error, secrets + redaction.header_secrets(job.headers, hidden))
