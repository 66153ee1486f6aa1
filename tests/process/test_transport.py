"""The HTTP worker in process, against a real target: what an attempt may connect to, and
what its error may say."""

from __future__ import annotations

import socket

from gq.core.hosts import HostPatterns, HostPolicy
from gq.core.job import Job
from gq.delivery.transport import Egress, HttpWorker
from support import spawn_listening


def job(url: str, **headers: str) -> Job:
    return Job("j1", "POST", url, dict(headers))


def test_a_lookup_that_fails_once_then_answers_is_not_followed_by_an_unchecked_connect(
        shared_target, monkeypatch):
    # The resolver fails the first look-up and answers 127.0.0.1 after that; the policy
    # allows ::1 only. Before, the first failure handed the connection to urllib3, which
    # resolved again and connected to 127.0.0.1 unchecked.
    real = socket.getaddrinfo
    calls = []

    def flaky_resolver(host, *args, **kwargs):
        calls.append(host)
        if len(calls) == 1:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real("127.0.0.1", *args, **kwargs)

    before = shared_target.count()
    monkeypatch.setattr(socket, "getaddrinfo", flaky_resolver)
    worker = HttpWorker(1, Egress(HostPolicy(HostPatterns.parse(["::1/128"]))))
    result = worker.attempt(job(shared_target.url("/lookup").replace("127.0.0.1", "hooks.test")), 5.0)
    assert result.status is None and result.error.startswith("connect: "), result
    assert "name resolution" in result.error
    assert calls == ["hooks.test"], "the name was looked up again, outside the guard"
    monkeypatch.undo()
    assert shared_target.count() == before, "the job reached an address the policy refuses"


def test_an_error_never_shows_a_credential_header(shared_target):
    # http.client refuses a header value with a line break, quoting the value (intake refuses
    # such values too: this is the transport's own line of defence).
    result = HttpWorker(1).attempt(job(shared_target.url(), Authorization="Bearer tok-SECRET-123\r\nX: y"), 5.0)
    assert result.error and "Invalid header value" in result.error, result
    assert "tok-SECRET-123" not in result.error and "<redacted>" in result.error, result.error


def test_connections_to_a_proxy_keep_nagle_off(shared_target):
    # urllib3 turns Nagle's algorithm on for proxies; with the body sent after the head,
    # every attempt then waited for the proxy's delayed ACK (40 ms).
    proc, port = spawn_listening("proxy.py")
    try:
        worker = HttpWorker(1, Egress(proxy=f"http://127.0.0.1:{port}"))
        assert worker.attempt(Job("j1", "POST", shared_target.url(), {}, data="{}", is_json=True), 5.0).status == 200
        [manager] = worker.adapter.proxy_manager.values()
        [pool] = manager.pools._container.values()
        [conn] = [c for c in pool.pool.queue if c is not None and c.sock is not None]
        assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        proc.kill()
        proc.wait()
