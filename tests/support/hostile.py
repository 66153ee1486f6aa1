"""A hostile HTTP target for gq's tests: it answers every request in the way its path names.

Run as its own process: `python tests/support/hostile.py [--seconds S]`; it prints
`listening PORT` once ready. Every mode stops by itself after S seconds (default 10)
or when the client goes away. Modes, by request path:
  /continue   an endless run of `HTTP/1.1 100 Continue` interim responses
  /trailers   a chunked 200 whose trailer lines never end
  /headers    a 200 whose header lines never end
  /status     a status line that never ends
  /body       a 200 with an endless body, as fast as the client reads
  /drip       a 200 whose head comes one byte every 0.5 s
  /gzip       a 200 with Content-Encoding: gzip, 100 MB of zeros in about 100 KB
  /redirect   a 302 to the cloud metadata address
  /reset      a 200 whose body is cut by a TCP reset
  anything else: 200 "ok"
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402

import gevent  # noqa: E402
from target import serve  # noqa: E402  (tests/support/ is this script's directory)

BLOCK = 65536
_bomb: bytes | None = None


def gzip_bomb() -> bytes:
    global _bomb
    if _bomb is None:
        packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip stream
        zeros = bytes(1 << 20)
        _bomb = b"".join(packer.compress(zeros) for _ in range(100)) + packer.flush()
    return _bomb


class Hostile:
    def __init__(self, seconds: float):
        self.seconds = seconds

    def handle(self, sock: socket.socket, address) -> None:
        rfile = sock.makefile("rb")
        try:
            line = rfile.readline(65537)
            if not line:
                return
            length = 0
            while (header := rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
                name, _, value = header.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip() or 0)
            rfile.read(length)
            path = line.split(b" ")[1].split(b"?")[0].decode("latin-1")
            getattr(self, "mode_" + path.strip("/"), self.mode_ok)(sock, time.monotonic() + self.seconds)
        except OSError:
            pass  # the client gave up: that is the point
        finally:
            rfile.close()
            sock.close()

    @staticmethod
    def _flood(sock: socket.socket, head: bytes, unit: bytes, until: float) -> None:
        sock.sendall(head)
        block = unit * (BLOCK // len(unit))
        while time.monotonic() < until:
            sock.sendall(block)

    def mode_continue(self, sock, until):
        self._flood(sock, b"", b"HTTP/1.1 100 Continue\r\n\r\n", until)

    def mode_trailers(self, sock, until):
        self._flood(sock, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n",
                    b"X-Trailer: y\r\n", until)

    def mode_headers(self, sock, until):
        self._flood(sock, b"HTTP/1.1 200 OK\r\n", b"X-Header: y\r\n", until)

    def mode_status(self, sock, until):
        self._flood(sock, b"HTTP/1.1 200 ", b"A", until)

    def mode_body(self, sock, until):
        self._flood(sock, b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n", b"x", until)

    def mode_drip(self, sock, until):
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
            if time.monotonic() >= until:
                return
            sock.sendall(bytes([byte]))
            gevent.sleep(0.5)

    def mode_gzip(self, sock, until):
        body = gzip_bomb()
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body)
                     + body)

    def mode_redirect(self, sock, until):
        sock.sendall(b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\n"
                     b"Content-Length: 0\r\n\r\n")

    def mode_reset(self, sock, until):
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
        gevent.sleep(0.05)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST

    def mode_ok(self, sock, until):
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    gzip_bomb()
    serve(Hostile(args.seconds).handle, "127.0.0.1", args.port)


if __name__ == "__main__":
    main()
