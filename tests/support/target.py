"""A real HTTP target for gq's tests and benchmarks: records what it receives.

Run as its own process: `python tests/support/target.py [--port 0]`; it prints
`listening PORT` once ready. A small HTTP/1.1 server on gevent's StreamServer
(keep-alive, Content-Length bodies), so it can also misbehave on purpose.

How it answers is chosen by the request's query string:
  delay=S          answer after S seconds
  status=N         answer with status N (default 200)
  fail=N           the first N requests per Idempotency-Key get fail_status (default 503)
  fail_status=N
  retry_after=V    send Retry-After: V with failures
  hang=1           never answer (until the client gives up)
  gate=NAME        answer once POST /_open?gate=NAME was sent (at once if it was)
  garbage=1        answer with bytes that are not HTTP, then close
  close=1          close the connection without answering
  size=N           a response body of N bytes
Control: GET /_stats (requests, connections that carried jobs, distinct keys, duplicates),
GET /_received?since=I (records), POST /_reset, POST /_down (every job request gets 503
until POST /_up), POST /_open?gate=NAME.

With --tls-cert (and --tls-key) it serves HTTPS; with --client-ca too, it requires a client
certificate from that CA. Each record names the client's port (`peer_port`) and its
certificate's common name (`client`, None without TLS).

Each record holds the time the request arrived (`t`), the time its answer was about to be
sent (`end`; None while it is being answered, or when it never was) and that answer's
`status`: a client cannot have sent a request that follows an answer before its `end`.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import ssl  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from urllib.parse import parse_qs, urlsplit  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402
from gevent.server import StreamServer  # noqa: E402

REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 301: "Moved Permanently",
           302: "Found", 400: "Bad Request", 404: "Not Found", 408: "Request Timeout",
           425: "Too Early", 429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}


def _client_name(sock) -> str | None:
    """The common name of the TLS client certificate the connection showed, if any (the
    handshake happens here: a client without the certificate asked for fails it)."""
    if not isinstance(sock, ssl.SSLSocket):
        return None
    sock.do_handshake()
    subject = dict(item for rdn in (sock.getpeercert() or {}).get("subject", ()) for item in rdn)
    return subject.get("commonName")


class Target:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.received: list[dict] = []
        self.per_key: Counter = Counter()
        self.connections = 0
        self.down = False
        self.active = 0       # job requests being answered now
        self.max_active = 0   # the most at once
        self.gates: dict[str, Event] = {}

    def handle(self, sock, address) -> None:
        rfile = sock.makefile("rb")
        counted = False  # `connections` counts those that carried jobs, not control requests
        try:
            peer = {"peer_port": address[1], "client": _client_name(sock)}
            while (served := self._one_request(sock, rfile, peer)) is not None:
                if served != "control" and not counted:
                    self.connections += 1
                    counted = True
                if not served:
                    break
        except OSError:
            pass
        finally:
            rfile.close()
            sock.close()

    def _one_request(self, sock, rfile, peer: dict) -> str | bool | None:
        """Serve one request: "job" or "control" to go on, False to close, None at EOF."""
        line = rfile.readline(65537)
        if not line:
            return None
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers = {}
        while True:
            h = rfile.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = rfile.read(int(headers.get("content-length", 0) or 0))
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path.startswith("/_"):
            self._control(sock, method, url.path, query)
            return "control"

        key = headers.get("idempotency-key", "")
        self.per_key[key] += 1
        failing = self.per_key[key] <= int(query.get("fail", 0))  # by arrival: of two at once, the first fails
        record = {"t": time.time(), "method": method, "path": url.path, "query": url.query,
                  "headers": headers, "body": body.decode("utf-8", "replace"), "key": key,
                  "end": None, "status": None, **peer}
        self.received.append(record)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if "delay" in query:
                gevent.sleep(float(query["delay"]))
            if "hang" in query:
                gevent.sleep(3600)
            if "gate" in query:
                self._gate(query["gate"]).wait()
        finally:
            self.active -= 1
        if "close" in query:
            return False
        if "garbage" in query:
            sock.sendall(b"this is not HTTP\r\n\r\n")
            return False
        status, extra = (503 if self.down else int(query.get("status", 200))), []
        if failing:
            status = int(query.get("fail_status", 503))
            if "retry_after" in query:
                extra.append(("Retry-After", query["retry_after"]))
        record["end"], record["status"] = time.time(), status
        self._answer(sock, status, b"x" * int(query.get("size", 0)) or b"ok", extra)
        if headers.get("connection", "").lower() == "close":
            return False
        return "job"

    def _control(self, sock, method: str, path: str, query: dict) -> None:
        if path == "/_stats":
            data = {"count": len(self.received), "connections": self.connections,
                    "keys": len(self.per_key), "duplicates": sum(n - 1 for n in self.per_key.values()),
                    "max_active": self.max_active}
        elif path == "/_received":
            data = self.received[int(query.get("since", 0)):]
        elif path == "/_reset" and method == "POST":
            self.reset()
            data = {"reset": True}
        elif path in ("/_down", "/_up") and method == "POST":
            self.down = path == "/_down"
            data = {"down": self.down}
        elif path == "/_open" and method == "POST" and "gate" in query:
            self._gate(query["gate"]).set()
            data = {"open": query["gate"]}
        else:
            self._answer(sock, 404, b"no such control endpoint")
            return
        self._answer(sock, 200, json.dumps(data).encode(), [("Content-Type", "application/json")])

    def _gate(self, name: str) -> Event:
        return self.gates.setdefault(name, Event())

    @staticmethod
    def _answer(sock, status: int, body: bytes, headers=()) -> None:
        head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key")
    parser.add_argument("--client-ca", help="require a client certificate issued by this CA (PEM)")
    args = parser.parse_args()
    context = None
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(args.client_ca)
    serve(Target().handle, args.host, args.port, context)


def serve(handle, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
    """Serve connections with `handle` on host:port (0: any free port), with TLS when given
    a context, printing `listening PORT` once ready, until killed."""
    tls = {"ssl_context": ssl_context} if ssl_context else {}
    server = StreamServer((host, port), handle, backlog=4096, **tls)
    server.start()
    print(f"listening {server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
