"""A real HTTP proxy for gq's tests: forwards absolute-form requests (http targets) and
tunnels CONNECT (https targets), and records each.

Run as its own process: `python tests/support/proxy.py [--port 0] [--auth USER:PASSWORD]
[--tls-cert PEM --tls-key PEM]`; it prints `listening PORT` once ready. With --auth, a
request without that Proxy-Authorization (Basic) is answered 407; with --tls-cert, clients
speak TLS to the proxy itself (an https:// proxy).

GET /_seen (origin form, sent to the proxy itself) answers the records, oldest first:
{"method", "target" (the absolute URL, or HOST:PORT for CONNECT), "authorized",
"upstream_port" (the proxy's own port on its connection to the target: the target sees
the request come from it)}.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402
from target import serve  # noqa: E402


class Proxy:
    def __init__(self, auth: str | None):
        self.expected = f"Basic {base64.b64encode(auth.encode()).decode()}" if auth else None
        self.seen: list[dict] = []

    def handle(self, sock, address) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as every HTTP client and server
        rfile = sock.makefile("rb")
        upstreams: dict[tuple[str, int], socket.socket] = {}  # keep-alive, per target
        try:
            while (head := _read_head(rfile)) is not None:
                method, target, headers = head
                if method == "CONNECT":
                    self._tunnel(sock, rfile, target, headers)
                    return
                if not self._forward(sock, rfile, method, target, headers, upstreams):
                    return
        except OSError:
            pass
        finally:
            for upstream in upstreams.values():
                upstream.close()
            rfile.close()
            sock.close()

    def _authorized(self, sock, headers: dict) -> bool:
        if self.expected is None or headers.get("proxy-authorization") == self.expected:
            return True
        sock.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n"
                     b"Content-Length: 0\r\n\r\n")
        return False

    def _record(self, method: str, target: str, headers: dict, upstream: socket.socket | None) -> None:
        self.seen.append({"method": method, "target": target,
                          "authorized": "proxy-authorization" in headers,
                          "upstream_port": upstream.getsockname()[1] if upstream else None})

    def _tunnel(self, sock, rfile, target: str, headers: dict) -> None:
        if not self._authorized(sock, headers):
            self._record("CONNECT", target, headers, None)
            return
        host, _, port = target.rpartition(":")
        upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        upstream.settimeout(None)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._record("CONNECT", target, headers, upstream)
        sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")  # the client waits for it: nothing buffered
        pipes = [gevent.spawn(_pipe, sock, upstream), gevent.spawn(_pipe, upstream, sock)]
        gevent.joinall(pipes, count=1)
        gevent.killall(pipes)
        upstream.close()

    def _forward(self, sock, rfile, method: str, target: str, headers: dict, upstreams: dict) -> bool:
        body = rfile.read(int(headers.get("content-length", 0) or 0))
        url = urlsplit(target)
        if not url.scheme:  # origin form: to the proxy itself
            data = json.dumps(self.seen).encode() if url.path == "/_seen" else b"not a proxy request"
            sock.sendall(f"HTTP/1.1 {200 if url.path == '/_seen' else 404} X\r\nContent-Length: {len(data)}\r\n"
                         f"Content-Type: application/json\r\n\r\n".encode() + data)
            return True
        if not self._authorized(sock, headers):
            self._record(method, target, headers, None)
            return True
        where = (url.hostname or "", url.port or 80)
        if where not in upstreams:
            upstreams[where] = socket.create_connection(where, timeout=30)
            upstreams[where].setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream = upstreams[where]
        self._record(method, target, headers, upstream)
        forwarded = {k: v for k, v in headers.items() if k not in ("proxy-authorization", "proxy-connection")}
        path = url.path + (f"?{url.query}" if url.query else "")
        upstream.sendall((f"{method} {path or '/'} HTTP/1.1\r\n"
                          + "".join(f"{k}: {v}\r\n" for k, v in forwarded.items()) + "\r\n").encode("latin-1")
                         + body)
        answer = upstream.makefile("rb")
        status_line = answer.readline(65537)
        head = [status_line]
        length = 0
        while (line := answer.readline(65537)) not in (b"\r\n", b"\n", b""):
            head.append(line)
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        sock.sendall(b"".join(head) + b"\r\n" + answer.read(length))
        answer.close()
        return headers.get("connection", "").lower() != "close"


def _read_head(rfile) -> tuple[str, str, dict] | None:
    line = rfile.readline(65537)
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers = {}
    while (h := rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
        name, _, value = h.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return method, target, headers


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--auth", help="USER:PASSWORD a client must send (Basic)")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args()
    context = None
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    serve(Proxy(args.auth).handle, "127.0.0.1", args.port, context)


if __name__ == "__main__":
    main()
