"""The intake's HTTP server: gevent's WSGI server, bounded against clients that misbehave.

What gq relies on from gevent, all here: the handler's steps (`read_requestline`,
`read_request`, `MessageClass`, `run_application`, `_handle_client_error`, `handle_error`) and the
server asking its pool `full()` before each accept (tests/process/test_http_server.py pins them).

- A request's head must arrive within api.client_timeout, counted from when the server
  starts waiting for it (an idle keep-alive connection is closed after that long too),
  and be at most MAX_HEAD bytes.
- Framing that readers could take two ways (RFC 9112 section 6.3) is refused with 400:
  Content-Length given twice or not a number, Content-Length with Transfer-Encoding, a
  Transfer-Encoding other than "chunked", Transfer-Encoding on HTTP/1.0.
- A body the app did not read (it refused the request, or the endpoint takes none) is
  not read either: the connection is closed instead (gevent would read and discard it,
  gigabytes included).
- Capacity is kept for requests: once api.max_connections are open, each new connection
  takes the place of the one that has waited longest for its request head (a slow client
  or an idle keep-alive); connections with a request in progress are never closed for
  this. So /healthz, /readyz, /metrics and honest intake stay reachable under a flood of
  slow connections.
- A request still being answered when gq stops (the listeners close a second after the
  drain) is answered 503 with Retry-After, and logged: its change may or may not have been
  made (docs/durability.md says how to ask again). gevent would answer a bare 500 and log
  nothing.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from email.message import Message
from typing import Any, BinaryIO, cast
from wsgiref.types import WSGIApplication as WSGIApp

import gevent
from gevent import GreenletExit
from gevent.pool import Pool
from gevent.pywsgi import LoggingLogAdapter, WSGIHandler, WSGIServer

log = logging.getLogger("gq.api")

MAX_HEAD = 65536   # bytes of request line and headers
RESERVE = 64       # connections beyond api.max_connections, while older ones are being closed
RETRY_AFTER_DRAINING = "5"  # seconds: long enough for a restart, or another instance


class SlowClient(OSError):
    """A client that took longer than api.client_timeout to send its request."""


class HeadTooLarge(ValueError):
    """A request's line and headers over MAX_HEAD bytes."""


class AmbiguousFraming(ValueError):
    """A request whose body length readers could take two ways; `field` names the header."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field


def has_body(environ: dict) -> bool:
    length = environ.get("CONTENT_LENGTH") or "0"
    return length != "0" or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


def check_framing(headers: Message, version: str) -> None:
    """Raises AmbiguousFraming for a request head whose body length is not one reading."""
    lengths = headers.get_all("Content-Length") or []
    codings = headers.get_all("Transfer-Encoding") or []
    if len(lengths) > 1 or any("," in v for v in lengths):
        raise AmbiguousFraming("Content-Length", "given more than once")
    if lengths and not lengths[0].strip().isdigit():
        raise AmbiguousFraming("Content-Length", f"not a number of bytes: {lengths[0].strip()[:40]!r}")
    if codings and lengths:
        raise AmbiguousFraming("Transfer-Encoding", "not together with Content-Length")
    if codings and (len(codings) > 1 or codings[0].strip().lower() != "chunked"):
        raise AmbiguousFraming("Transfer-Encoding", "only \"chunked\" is accepted")
    if codings and version == "HTTP/1.0":
        raise AmbiguousFraming("Transfer-Encoding", "not in an HTTP/1.0 request")


class _HeadLimit:
    """The connection's reader, counting the bytes of each request head against MAX_HEAD
    (gevent's own limits allow 100 headers of 64 KiB: 6.4 MB held per connection)."""

    def __init__(self, rfile: BinaryIO):
        self._rfile = rfile
        self.left: int | None = None  # None: reading a body, not a head

    def readline(self, size: int = -1) -> bytes:
        line = self._rfile.readline(size)
        if self.left is not None:
            self.left -= len(line)
            if self.left < 0:
                raise HeadTooLarge(f"request head over {MAX_HEAD} bytes")
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rfile, name)


class Connections(Pool):
    """The intake's connections: `limit` at once, and RESERVE more for a moment. Asked by the
    server before each accept, it makes room when `limit` are open by closing the
    connection that has waited longest for a request head (`waiting`, oldest first)."""

    def __init__(self, limit: int, on_evict: Callable[[], None] = lambda: None):
        super().__init__(limit + RESERVE)
        self.limit = limit
        self.on_evict = on_evict
        self.waiting: dict[gevent.Greenlet, None] = {}  # insertion order: longest waiting first

    def full(self) -> bool:
        if len(self) >= self.limit and self.waiting:
            oldest = next(iter(self.waiting))
            del self.waiting[oldest]
            oldest.kill(block=False)  # it closes its socket as it ends; its slot frees then
            self.on_evict()
        return super().full()


class IntakeHandler(WSGIHandler):
    """gevent's WSGI handler with the bounds in this module's docstring."""

    _head_timer: gevent.Timeout | None = None
    rfile: _HeadLimit
    server: IntakeServer

    def __init__(self, sock: socket.socket, address: Any, server: IntakeServer, rfile: BinaryIO | None = None):
        super().__init__(sock, address, server, rfile)
        self.rfile = _HeadLimit(cast(BinaryIO, self.rfile))  # until here, gevent's own reader

    def _timeout(self) -> float:
        return self.server.client_timeout()

    def read_requestline(self) -> str:
        self._stop_timer()
        self._head_timer = gevent.Timeout.start_new(
            self._timeout(), SlowClient(f"request head not received within {self._timeout():g}s"))
        self.rfile.left = MAX_HEAD
        self.server.pool.waiting[gevent.getcurrent()] = None
        return super().read_requestline()

    def read_request(self, raw_requestline: str) -> bool:
        try:
            return super().read_request(raw_requestline)
        finally:
            self.rfile.left = None
            self._head_done()

    def MessageClass(self, *args: Any) -> Message:  # noqa: N802 - gevent's name
        headers = super().MessageClass(*args)
        check_framing(headers, getattr(self, "request_version", ""))
        return headers

    def _head_done(self) -> None:
        self._stop_timer()
        self.server.pool.waiting.pop(gevent.getcurrent(), None)

    def _stop_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.close()
            self._head_timer = None

    def _handle_client_error(self, ex: Exception) -> tuple[str, bytes]:
        """A malformed request: one line at debug (a client must not flood the log), then 4xx."""
        self.close_connection = True
        log.debug("bad request from %s: %s", self.client_address, ex)
        if isinstance(ex, SlowClient):
            return ("408", b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        if isinstance(ex, HeadTooLarge):
            return ("431", b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
                           b"Content-Length: 0\r\n\r\n")
        if isinstance(ex, AmbiguousFraming):
            self.server.on_invalid()
            body = json.dumps({"error": str(ex), "field": ex.field}).encode()
            return ("400", b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        return ("400", b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")

    def handle_error(self, t: type[BaseException], v: BaseException, tb: Any) -> None:
        if not isinstance(v, GreenletExit):  # an unexpected error: gevent logs it and answers 500
            super().handle_error(t, v, tb)
            return
        self.close_connection = True
        method, path = self.environ.get("REQUEST_METHOD", "?"), self.environ.get("PATH_INFO", "?")
        log.warning("request cut off by the stop: %s %s answered 503 (what it asked may or may not be done)",
                    method, path)
        if self.response_length:  # part of an answer went out already: the closed connection says it all
            return
        body = json.dumps({"error": "gq is stopping: the request was cut off; ask again"}).encode()
        try:
            self.start_response("503 Service Unavailable", [
                ("Content-Type", "application/json"), ("Retry-After", RETRY_AFTER_DRAINING),
                ("Content-Length", str(len(body))), ("Connection", "close")])
            self.write(body)
        except OSError:
            pass  # the client is gone

    def run_application(self) -> None:
        try:
            super().run_application()
        finally:
            if has_body(self.environ) and not self.environ.get("gq.body_read"):
                self.close_connection = True
                self.wsgi_input.content_length = self.wsgi_input.position  # nothing left to discard
                self.wsgi_input.chunked_input = False

    def handle(self) -> None:
        try:
            super().handle()
        finally:
            self._head_done()


class IntakeServer(WSGIServer):
    """gevent's WSGI server, telling its handlers what they need besides the app."""

    pool: Connections

    def __init__(self, sock: socket.socket, app: WSGIApp, connections: Connections, client_timeout: Callable[[], float],
                 on_invalid: Callable[[], None]):
        super().__init__(sock, app, log=None, spawn=connections, handler_class=IntakeHandler,
                         error_log=LoggingLogAdapter(logging.getLogger("gq.api.server"), logging.ERROR))
        self.client_timeout = client_timeout  # read per request: a reload changes it
        self.on_invalid = on_invalid          # a request refused for its framing


def start(sock: socket.socket, app: WSGIApp, connections: Connections, client_timeout: Callable[[], float],
          on_invalid: Callable[[], None] = lambda: None) -> IntakeServer:
    """Serve `app` on the listening `sock`, one greenlet of `connections` per connection."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        # gevent's server writes headers and body separately: without NODELAY, a keep-alive
        # client waits ~40 ms for each answer (Nagle's algorithm against delayed ACKs).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server = IntakeServer(sock, app, connections, client_timeout, on_invalid)
    server.start()
    return server
