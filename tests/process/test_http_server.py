"""The intake's HTTP server (gq/intake/http_server.py): reachable under a flood of slow connections,
RFC 9112 framing, and the gevent behaviour it relies on."""

from __future__ import annotations

import inspect
import json
import re
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest
import requests
from gevent.baseserver import BaseServer
from gevent.pywsgi import WSGIHandler
from prometheus_client.parser import text_string_to_metric_families

from support import HERE, Daemon, wait_for

MAX_CONNECTIONS = 100
FLOOD = 1000         # slow-loris connections, reconnecting when closed
PROMPT = 0.5         # seconds a health check or an honest submission may take meanwhile


def evicted(daemon: Daemon) -> float:
    # A new connection each time: under the flood, an idle keep-alive one may be the
    # connection that waited longest for a request head, and be closed for room.
    text = requests.get(f"{daemon.api}/metrics", timeout=30, headers={"Connection": "close"}).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "gq_intake_evicted_total":
                return sample.value
    raise AssertionError("gq_intake_evicted_total not exported")


def flooded(daemon: Daemon, target, probes: dict[str, str]) -> dict[str, list[float]]:
    """Latencies of `probes` (name → URL; "submit" posts a job) asked 20 times each, on new
    connections, while FLOOD slow-loris connections reconnect to the intake port."""
    address = urlsplit(daemon.api)
    flood = subprocess.Popen([sys.executable, str(HERE / "flood.py"), address.hostname, str(address.port),
                              str(FLOOD), "12"], stdout=subprocess.PIPE, text=True)
    latencies: dict[str, list[float]] = {name: [] for name in probes}
    try:
        assert flood.stdout.readline().strip() == "flooding"
        wait_for(lambda: evicted(daemon) >= MAX_CONNECTIONS, timeout=15, what="the flood to fill the intake")
        for _ in range(20):
            for name, url in probes.items():
                started = time.monotonic()
                if name == "submit":
                    answer = requests.post(url, timeout=30, headers={"Connection": "close"},
                                           json={"url": target.url("/honest")})
                    assert answer.status_code == 202, answer.text
                else:
                    assert requests.get(url, timeout=30, headers={"Connection": "close"}).ok
                latencies[name].append(time.monotonic() - started)
            time.sleep(0.1)
    finally:
        flood.kill()
        flood.wait()
    print(f"\n{FLOOD} slow-loris connections against api.max_connections {MAX_CONNECTIONS}: "
          + ", ".join(f"{k} max {max(v) * 1000:.0f} ms" for k, v in latencies.items())
          + f"; {evicted(daemon):.0f} connections evicted")
    return latencies


def test_health_on_its_own_listener_answers_promptly_under_a_flood(start_daemon, target):
    daemon = start_daemon(api={"max_connections": MAX_CONNECTIONS, "health_listen": "127.0.0.1:0"})
    health = wait_for(lambda: re.search(r"health, readiness and metrics also on (http://\S+)", daemon.log()),
                      what="the health listener").group(1)
    latencies = flooded(daemon, target, {f"{what}": f"{health}/{what}" for what in ("healthz", "readyz", "metrics")})
    for what, seconds in latencies.items():
        assert max(seconds) < PROMPT, f"{what} took {max(seconds):.2f}s under the flood"
    assert requests.get(f"{health}/v1/status", timeout=10).status_code == 404


def test_the_intake_port_stays_reachable_under_a_flood_of_slow_connections(start_daemon, target):
    # Each new connection takes the place of the slow one that waited longest, so health
    # checks and honest clients get in; before, they waited behind the flood (18 s seen).
    daemon = start_daemon(api={"max_connections": MAX_CONNECTIONS, "client_timeout": 10})
    latencies = flooded(daemon, target, {"healthz": f"{daemon.api}/healthz", "submit": f"{daemon.api}/v1/jobs"})
    for what, seconds in latencies.items():
        assert max(seconds) < PROMPT, f"{what} took {max(seconds):.2f}s under the flood"
    wait_for(lambda: target.count() == 20, what="the 20 honest jobs delivered")


def raw_request(daemon: Daemon, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send `head` (CRLF line ends added) and `body` on a new connection; (status, body)."""
    address = urlsplit(daemon.api)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


JOB = b'{"url": "http://127.0.0.1:9/x"}'
AMBIGUOUS = {
    "two lengths": (f"Content-Length: {len(JOB)}\nContent-Length: 5\n", "Content-Length: given more than once"),
    "the same length twice": (f"Content-Length: {len(JOB)}\nContent-Length: {len(JOB)}\n",
                              "Content-Length: given more than once"),
    "a list of lengths": (f"Content-Length: {len(JOB)}, {len(JOB)}\n", "Content-Length: given more than once"),
    "a signed length": (f"Content-Length: +{len(JOB)}\n", f"Content-Length: not a number of bytes: '+{len(JOB)}'"),
    "length and chunked": (f"Content-Length: {len(JOB)}\nTransfer-Encoding: chunked\n",
                           "Transfer-Encoding: not together with Content-Length"),
    "a coding before chunked": ("Transfer-Encoding: gzip, chunked\n", 'Transfer-Encoding: only "chunked" is accepted'),
    "chunked twice": ("Transfer-Encoding: chunked\nTransfer-Encoding: chunked\n",
                      'Transfer-Encoding: only "chunked" is accepted'),
}


@pytest.mark.parametrize("case", list(AMBIGUOUS))
def test_ambiguous_framing_is_refused_with_400(start_daemon, case):
    daemon = start_daemon()
    headers, error = AMBIGUOUS[case]
    status, body = raw_request(daemon, f"POST /v1/jobs HTTP/1.1\nHost: gq\nContent-Type: application/json\n"
                                       f"{headers}", JOB)
    assert status == 400, body
    assert json.loads(body) == {"error": error, "field": error.split(":")[0]}
    assert daemon.status()["jobs"]["queued"] + daemon.status()["finished"]["succeeded"] == 0


def test_transfer_encoding_on_http_1_0_is_refused(start_daemon):
    daemon = start_daemon()
    status, body = raw_request(daemon, "POST /v1/jobs HTTP/1.0\nContent-Type: application/json\n"
                                       "Transfer-Encoding: chunked\n", b"1f\r\n" + JOB + b"\r\n0\r\n\r\n")
    assert status == 400 and json.loads(body)["field"] == "Transfer-Encoding", body


def test_one_content_length_and_chunked_bodies_are_accepted(start_daemon):
    daemon = start_daemon()
    status, _ = raw_request(daemon, f"POST /v1/jobs HTTP/1.1\nHost: gq\nContent-Type: application/json\n"
                                    f"Content-Length: {len(JOB)}\nConnection: close\n", JOB)
    assert status == 202
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(JOB), JOB)
    status, _ = raw_request(daemon, "POST /v1/jobs HTTP/1.1\nHost: gq\nContent-Type: application/json\n"
                                    "Transfer-Encoding: chunked\nConnection: close\n", chunked)
    assert status == 202


def test_the_gevent_behaviour_the_server_relies_on():
    # Connections.full() makes room: the server must ask its pool before each accept.
    assert "self.full()" in inspect.getsource(BaseServer._do_read)
    assert "self.full = self.pool.full" in inspect.getsource(BaseServer.set_spawn)
    # check_framing sees every request head: read_request must parse it with MessageClass.
    assert "self.MessageClass(self.rfile" in inspect.getsource(WSGIHandler.read_request)
    # read_request's errors reach _handle_client_error (a 4xx, not a 500).
    assert "self._handle_client_error(ex)" in inspect.getsource(WSGIHandler.handle_one_request)
    # An app killed by the stop reaches handle_error (a 503 of gq's, not gevent's 500).
    assert "self.handle_error(*sys.exc_info())" in inspect.getsource(WSGIHandler.handle_one_response)
