"""Clients that hold connections against a running gq: slow-loris heads, slow bodies, bodies
of 10 GB announced or endless. gq drops each within a bound set by api.client_timeout and
keeps answering honest clients meanwhile.
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests

from support import CLIENT_TIMEOUT, Answer, Conn, Daemon, daemon_config, head_bytes, healthy, rejected


@pytest.fixture(scope="module")
def slow_gq(tmp_path_factory, shared_target):
    daemon = Daemon(tmp_path_factory.mktemp("slow"), daemon_config(
        pool={"size": 8}, api={"client_timeout": CLIENT_TIMEOUT}))
    yield daemon
    daemon.stop()


def _address(daemon: Daemon) -> tuple[str, int]:
    parts = urlsplit(daemon.api)
    return parts.hostname, parts.port


def _dribble(address, first: bytes, step: bytes | None, until: float) -> tuple[str, float, str]:
    """One connection: send `first`, then `step` every 0.2s (None: nothing); how the server
    ended it ("eof", "reset"; "client stopped" when `until` came first), after how long, and
    the start of what it answered."""
    started = time.monotonic()
    sock = socket.create_connection(address, timeout=5)
    got, how = b"", "client stopped"
    try:
        sock.sendall(first)
        sock.settimeout(0.2)
        while time.monotonic() < until:
            if step is not None:
                try:
                    sock.sendall(step)
                except OSError:
                    how = "reset"
                    break
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                how = "reset"
                break
            if not data:
                how = "eof"
                break
            got += data
    finally:
        sock.close()
    return how, time.monotonic() - started, got[:40].decode("latin-1")


def _slow_loris(address, silent: bool, until: float, out: list) -> None:
    """Connections that dribble header lines (or send nothing), one after the other until `until`."""
    while time.monotonic() < until - 0.5:
        out.append(_dribble(address, b"" if silent else b"POST /v1/jobs HTTP/1.1\r\nHost: gq\r\n",
                            None if silent else b"X-Slow: a\r\n", until))


def _slow_body(address, path: str, until: float, out: list, once: bool = False) -> None:
    """Connections that send a whole head, then a 1000-byte body one byte at a time."""
    head = head_bytes("POST", path, [("Content-Type", "application/json"), ("Content-Length", "1000")])
    while time.monotonic() < until - 0.5:
        out.append(_dribble(address, head, b" ", until))
        if once:
            return


def _cut_off(outcomes: list[tuple[str, float, str]], bound: float) -> list:
    """The connections the server did not end within `bound` seconds."""
    return [(how, round(t, 2), got) for how, t, got in outcomes
            if not (how in ("eof", "reset") and t <= bound) and not (how == "client stopped" and t <= bound)]


STREAM_CAP = 256 * 2**20   # bytes a flood client sends at most before it calls the server's reading unbounded


def _flood_once(address, path: str, method: str, until: float, chunked: bool = False) -> dict:
    """Announce 10 GB (or a chunked, endless body), read the answer, stream as fast as possible."""
    started = time.monotonic()
    conn = Conn(f"http://{address[0]}:{address[1]}", timeout=5)
    headers = [("Content-Type", "application/json")]
    headers.append(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(10 * 10**9)))
    conn.send(head_bytes(method, path, headers))
    # a chunked body is streamed at once: the server answers once it has read past the limit
    answer = Answer(None, note="not read first") if chunked else conn.answer(timeout=3)
    chunk = (b"10000\r\n" + b"[" * 0x10000 + b"\r\n") if chunked else b" " * 0x10000
    sent, how = 0, "still open"
    conn.sock.settimeout(2)
    while time.monotonic() < until and sent < STREAM_CAP:
        try:
            conn.sock.sendall(chunk)
            sent += len(chunk)
        except OSError as e:
            how = f"closed ({e.strerror or e})"
            break
    conn.close()
    return {"answer": answer, "how": how, "seconds": time.monotonic() - started, "sent": sent}


def _flood(address, path: str, until: float, out: list, chunked: bool = False) -> None:
    while time.monotonic() < until - 0.5:
        out.append(_flood_once(address, path, "POST", until, chunked))
        time.sleep(0.05)


def _honest(daemon: Daemon, target, n: int) -> list[float]:
    """n job submissions, each on a new connection; their latencies (each must be a 202)."""
    latencies = []
    for _ in range(n):
        started = time.monotonic()
        response = requests.post(f"{daemon.api}/v1/jobs", timeout=10,
                                 data=json.dumps({"url": target.url("/honest")}),
                                 headers={"Content-Type": "application/json"})
        latencies.append(time.monotonic() - started)
        assert response.status_code == 202, response.text
        time.sleep(0.1)
    return latencies


def test_slow_and_oversized_clients_do_not_starve_honest_ones(slow_gq, shared_target):
    """While 50 slow-loris connections, 5 slow bodies, 5 clients announcing 10 GB and 2 sending an
    endless chunked body attack (each reconnecting as soon as gq drops it), an honest client's
    submissions are all accepted; gq drops every attacker within 3 x api.client_timeout."""
    address = _address(slow_gq)
    bound = 3 * CLIENT_TIMEOUT
    _honest(slow_gq, shared_target, 3)  # warm up
    quiet = _honest(slow_gq, shared_target, 30)
    too_large_before = rejected(slow_gq, "too_large")

    until = time.monotonic() + bound + 2
    loris: list = []
    bodies: list = []
    floods: list = []
    chunked: list = []
    threads = [threading.Thread(target=_slow_loris, args=(address, i % 5 == 0, until, loris)) for i in range(50)]
    threads += [threading.Thread(target=_slow_body, args=(address, "/v1/jobs", until, bodies)) for _ in range(5)]
    threads += [threading.Thread(target=_flood, args=(address, "/v1/jobs", until, floods)) for _ in range(5)]
    threads += [threading.Thread(target=_flood, args=(address, "/v1/jobs", until, chunked, True)) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    attacked = _honest(slow_gq, shared_target, 50)
    for t in threads:
        t.join(bound + 10)
    assert not any(t.is_alive() for t in threads)

    print(f"\nhonest POST /v1/jobs latency, quiet:    median {statistics.median(quiet) * 1000:.1f} ms, "
          f"max {max(quiet) * 1000:.1f} ms ({len(quiet)} requests)")
    print(f"honest POST /v1/jobs latency, attacked: median {statistics.median(attacked) * 1000:.1f} ms, "
          f"max {max(attacked) * 1000:.1f} ms ({len(attacked)} requests; attackers made {len(loris)} slow-loris, "
          f"{len(bodies)} slow-body, {len(floods)} 10 GB and {len(chunked)} endless chunked connections)")

    assert not _cut_off(loris + bodies, bound), f"slow connections not closed within {bound:g}s"
    assert all(got.startswith("HTTP/1.1 408") for how, _, got in bodies if got), bodies
    assert floods and chunked
    for flood in floods:
        assert flood["answer"].status == 413, flood
        assert flood["answer"].headers.get("connection", "").lower() == "close", flood
        assert flood["how"].startswith("closed") and flood["seconds"] <= bound, flood
        assert flood["sent"] < 64 * 2**20, f"the server read {flood['sent'] >> 20} MiB of a refused body"
    for flood in chunked:
        assert flood["how"].startswith("closed") and flood["seconds"] <= bound, flood
        assert flood["sent"] < 64 * 2**20, flood
    assert rejected(slow_gq, "too_large") >= too_large_before + len(floods)
    assert healthy(slow_gq)


@pytest.mark.parametrize("method,path", [("POST", "/healthz"), ("GET", "/metrics"), ("GET", "/v1/status"),
                                         ("GET", "/v1/jobs/no-such-job"), ("POST", "/nowhere")])
def test_a_body_no_endpoint_reads_is_not_read_to_its_end(slow_gq, method, path):
    """10 GB announced to an endpoint that takes no body: the connection is closed, not drained."""
    flood = _flood_once(_address(slow_gq), path, method, time.monotonic() + 3 * CLIENT_TIMEOUT)
    assert flood["answer"].status is not None, flood
    assert flood["how"].startswith("closed"), (
        f"{method} {path} with 10 GB announced: answered {flood['answer'].status}, then the server "
        f"kept reading: {flood['sent'] >> 20} MiB in {flood['seconds']:.1f}s and the connection still open")
    assert flood["sent"] < 64 * 2**20, flood
    assert healthy(slow_gq)


def test_a_slow_body_to_an_endpoint_that_takes_none_is_cut_off(slow_gq):
    out: list = []
    bound = 3 * CLIENT_TIMEOUT
    _slow_body(_address(slow_gq), "/healthz", time.monotonic() + bound + 1, out, once=True)
    how, seconds, got = out[0]
    ended = f"{how} after {seconds:.1f}s" if how != "client stopped" else \
        f"still open after {seconds:.1f}s, when the client gave up"
    assert how in ("eof", "reset") and seconds <= bound, (
        f"POST /healthz with a 1000-byte body sent a byte every 0.2s: answered {got[:15]!r}, connection "
        f"{ended} (api.client_timeout {CLIENT_TIMEOUT:g}s)")
