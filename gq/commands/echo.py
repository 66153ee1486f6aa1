"""`gq echo`: a receiver for trying gq and debugging a route. It prints every request it
gets (method, path, headers, body: JSON pretty-printed, a long body cut) on stdout, and
answers a fixed status after a fixed delay. A gevent WSGI server: a greenlet per
connection, so slow answers (`--delay`) do not hold the others back."""

from __future__ import annotations

import errno
import json
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import gevent
from gevent.event import Event
from gevent.pywsgi import WSGIHandler, WSGIServer

from gq.commands.jobs_cli import printable
from gq.errors import EXIT_OK, UsageError

DEFAULT_LISTEN = "127.0.0.1:9000"
SHOWN_BODY = 4096     # characters of a body printed, then cut with a note
STOP_TIMEOUT = 1.0    # seconds the requests in progress get at SIGINT/SIGTERM
NO_BODY = (204, 304)  # statuses that carry no body


class _Handler(WSGIHandler):
    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        # The headers as sent (their names' case, their order), which WSGI's HTTP_* lose.
        environ["gq.headers"] = list(self.headers.items())
        return environ


def _listen(listen: str) -> socket.socket:
    """A listening socket on HOST:PORT; UsageError when the address is taken or not one."""
    from gq.config import Invalid, split_listen

    try:
        host, port = split_listen(listen)
    except Invalid as e:
        raise UsageError(f"usage error: echo: --listen {e}") from None
    from gq.intake.listeners import bound

    try:
        return bound(host, port, backlog=128)
    except OSError as e:
        why = "address in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e)).lower()
        raise UsageError(f"echo: cannot listen on {listen}: {why}") from None


def body_text(data: bytes, content_type: str = "", most: int = SHOWN_BODY) -> str:
    """A request's body as printed: JSON pretty-printed when it parses, else the text as it is
    (bytes that are not UTF-8 replaced); control characters but newlines and tabs escaped;
    cut after `most` characters with a note of how much more there was."""
    text = data.decode("utf-8", errors="replace")
    try:
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        pass
    text = "\n".join(printable(line).replace("\\x09", "\t") for line in text.split("\n"))
    if len(text) > most:
        return f"{text[:most]}\n… cut: {len(text) - most} more characters ({len(data)} bytes in all)"
    return text


def format_request(environ: dict[str, Any], body: bytes, number: int) -> str:
    """One request as `gq echo` prints it: a line for the request, a line per header, the body."""
    path = environ.get("PATH_INFO", "")
    if environ.get("QUERY_STRING"):
        path += "?" + environ["QUERY_STRING"]
    stamp = time.strftime("%H:%M:%S")
    lines = [f"--- #{number} {stamp} from {environ.get('REMOTE_ADDR', '-')}",
             f"{environ['REQUEST_METHOD']} {printable(path)} {environ.get('SERVER_PROTOCOL', '')}".rstrip()]
    lines += [f"{printable(name)}: {printable(value)}" for name, value in environ.get("gq.headers", [])]
    lines.append("")
    lines.append(body_text(body) if body else "(no body)")
    return "\n".join(lines) + "\n\n"


class Echo:
    """The WSGI application: print, wait `delay` seconds, answer `status`."""

    def __init__(self, status: int, delay: float, out: TextIO):
        self.status, self.delay, self.out = status, delay, out
        self.count = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        body = environ["wsgi.input"].read()
        self.count += 1
        self.out.write(format_request(environ, body, self.count))  # one write: requests do not mix
        self.out.flush()
        if self.delay:
            gevent.sleep(self.delay)
        reason = _reason(self.status)
        if self.status in NO_BODY or environ["REQUEST_METHOD"] == "HEAD":
            start_response(f"{self.status} {reason}", [("Content-Length", "0")])
            return [b""]
        answer = json.dumps({"status": self.status, "echo": "gq"}).encode() + b"\n"
        start_response(f"{self.status} {reason}", [("Content-Type", "application/json"),
                                                   ("Content-Length", str(len(answer)))])
        return [answer]


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def run(listen: str, status: int, delay: float) -> int:
    """Serve until SIGINT or SIGTERM; returns the exit code (0). Raises UsageError when it
    cannot listen."""
    if not 200 <= status <= 599:
        raise UsageError(f"usage error: echo: --status must be an HTTP status from 200 to 599, got {status}")
    if not 0 <= delay <= 3600:
        raise UsageError(f"usage error: echo: --delay must be seconds from 0 to 3600, got {delay:g}")
    sock = _listen(listen)
    server = WSGIServer(sock, Echo(status, delay, sys.stdout), handler_class=_Handler, log=None,
                        error_log=None)
    stop = Event()
    handlers = [gevent.signal_handler(s, stop.set) for s in (signal.SIGINT, signal.SIGTERM)]
    server.start()
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"gq echo: listening on http://{shown}:{port}, answering {status}"
          f"{f' after {delay:g}s' if delay else ''}; Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        stop.wait()
    finally:
        for handler in handlers:
            handler.cancel()
        server.stop(timeout=STOP_TIMEOUT)
    return EXIT_OK
