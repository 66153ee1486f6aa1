"""A flood of slow-loris clients for gq's tests: `python tests/support/flood.py HOST PORT N SECONDS`.

N connections each send the start of a request head and then one header line every
0.5 s, never finishing it; a connection the server closes is opened again at once.
Prints `flooding` once all N have connected the first time, and at the end one JSON line:
connections made in all. Stops by itself after SECONDS.
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402

HEAD = b"POST /v1/jobs HTTP/1.1\r\nHost: gq\r\nContent-Type: application/json\r\n"


def slow_client(address, until: float, made: list, connected: Event, count: int) -> None:
    first = True
    while time.monotonic() < until:
        try:
            sock = socket.create_connection(address, timeout=5)
        except OSError:
            gevent.sleep(0.05)
            continue
        made.append(1)
        if first and len(made) >= count:
            connected.set()
        first = False
        try:
            sock.sendall(HEAD)
            while time.monotonic() < until:
                gevent.sleep(0.5)
                sock.sendall(b"X-Slow: a\r\n")
                sock.setblocking(False)
                try:
                    if sock.recv(4096) == b"":
                        break  # closed by the server: connect again
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
        except OSError:
            pass
        finally:
            sock.close()


def main() -> None:
    host, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    until = time.monotonic() + seconds
    made: list = []
    connected = Event()
    clients = [gevent.spawn(slow_client, (host, port), until, made, connected, count) for _ in range(count)]
    connected.wait(seconds)
    print("flooding", flush=True)
    gevent.joinall(clients)
    print(json.dumps({"connections": len(made)}), flush=True)


if __name__ == "__main__":
    main()
