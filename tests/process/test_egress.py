"""How attempts leave gq: through target.proxy (a real proxy on loopback: tests/support/proxy.py, and
tinyproxy from Debian's packages),
with a TLS client certificate (an HTTPS target that requires one), and never to private
addresses with target.deny_private, at intake and at connect time, proxy or not."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from support import (
    ROOT,
    Target,
    exchange,
    final_state,
    free_port,
    gq_command,
    new_id,
    post_job,
    records,
    spawn_listening,
    spawn_target,
    unavailable,
    wait_for,
)
from support.certs import Pki, make_pki
from support.packages import PackageError, provide

PROXY_PASSWORD = "pr0xy-Pa55word"


class Proxy:
    def __init__(self, *args: str):
        self.proc, self.port = spawn_listening("proxy.py", *args)
        self.address = f"127.0.0.1:{self.port}"

    def seen(self, **tls) -> list[dict]:
        scheme = "https" if tls else "http"
        return requests.get(f"{scheme}://{self.address}/_seen", timeout=10, **tls).json()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    started = Proxy()
    yield started
    started.stop()


@pytest.fixture
def tls_target(pki) -> Iterator[Target]:
    """An HTTPS target on 127.0.0.1 that requires a client certificate from pki.ca."""
    started = spawn_target("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
                           "--client-ca", str(pki.ca), scheme="https", verify=str(pki.ca),
                           cert=(str(pki.client_cert), str(pki.client_key)))
    yield started
    started.stop()


def mtls(pki: Pki) -> dict[str, str]:
    return {"ca_bundle": str(pki.ca), "client_cert": str(pki.client_cert), "client_key": str(pki.client_key)}


def deliver(daemon, target: Target, count: int = 4, **query) -> list[str]:
    """`count` jobs, each failing its first attempt (fail=1), all succeeded: their ids."""
    ids = [new_id("egress") for _ in range(count)]
    answer = requests.post(f"{daemon.api}/v1/jobs", timeout=10,
                           json=[{"id": i, "url": target.url("/hook", fail=1, **query)} for i in ids])
    assert answer.status_code == 202, answer.text
    for job_id in ids:
        job = final_state(daemon, job_id)
        assert job["state"] == "succeeded" and job["attempts"] == 2, job
    return ids


# -- the proxy

def test_every_attempt_to_an_http_target_goes_through_the_proxy(start_daemon, target, proxy):
    daemon = start_daemon(target={"proxy": f"http://{proxy.address}"}, pool={"size": 2})
    ids = deliver(daemon, target)
    seen = proxy.seen()
    # The proxy was asked for each attempt, in absolute form; the target only heard from it.
    assert sorted(s["target"] for s in seen) == sorted(target.url("/hook", fail=1) for _ in range(2 * len(ids)))
    assert {s["method"] for s in seen} == {"POST"}
    upstream = {s["upstream_port"] for s in seen}
    received = [r for job_id in ids for r in records(target, job_id)]
    assert len(received) == 2 * len(ids) and {r["peer_port"] for r in received} <= upstream


def test_https_targets_are_reached_through_a_connect_tunnel_with_the_client_certificate(
        start_daemon, tls_target, proxy, pki):
    daemon = start_daemon(target={"proxy": f"http://{proxy.address}", **mtls(pki)}, pool={"size": 2})
    ids = deliver(daemon, tls_target)
    seen = proxy.seen()
    assert seen and {(s["method"], s["target"]) for s in seen} == {("CONNECT", tls_target.base.partition("//")[2])}
    received = [r for job_id in ids for r in records(tls_target, job_id)]
    assert len(received) == 2 * len(ids)
    # Every request came out of one of the proxy's tunnels, and showed gq's certificate.
    assert {r["peer_port"] for r in received} <= {s["upstream_port"] for s in seen}
    assert {r["client"] for r in received} == {"gq-client"}


def test_an_https_proxy_is_spoken_to_over_tls(start_daemon, target, pki):
    tls_proxy = Proxy("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key))
    try:
        daemon = start_daemon(target={"proxy": f"https://{tls_proxy.address}", "ca_bundle": str(pki.ca)})
        ids = deliver(daemon, target, count=2)
        seen = tls_proxy.seen(verify=str(pki.ca))
        assert len(seen) == 4 and {s["target"] for s in seen} == {target.url("/hook", fail=1)}
        assert all(records(target, job_id) for job_id in ids)
    finally:
        tls_proxy.stop()


@pytest.fixture
def guarded() -> Iterator[Proxy]:
    """A proxy that answers 407 without Basic gq:PROXY_PASSWORD."""
    started = Proxy("--auth", f"gq:{PROXY_PASSWORD}")
    yield started
    started.stop()


def test_proxy_credentials_are_sent_and_never_shown(start_daemon, target, tls_target, pki, guarded, tmp_path):
    daemon = start_daemon(target={"proxy": f"http://gq:{PROXY_PASSWORD}@{guarded.address}"})
    job_id = new_id("auth")
    assert post_job(daemon, {"id": job_id, "url": target.url()}).status_code == 202
    assert final_state(daemon, job_id)["state"] == "succeeded"
    assert [s["authorized"] for s in guarded.seen()] == [True]

    (tmp_path / "wrong").mkdir()
    wrong = start_daemon(target={"proxy": f"http://gq:not-{PROXY_PASSWORD}@{guarded.address}", **mtls(pki)},
                         workdir=tmp_path / "wrong")

    def dead(url: str) -> dict:
        job_id = new_id("auth")
        assert post_job(wrong, {"id": job_id, "url": url, "max_attempts": 1}).status_code == 202
        job = final_state(wrong, job_id)
        assert job["state"] == "dead" and not records(target, job_id) and not records(tls_target, job_id), job
        return job

    refused = dead(target.url())
    assert refused["last_status"] == 407, refused
    untunnelled = dead(tls_target.url())  # a refused tunnel is a failed connection
    assert untunnelled["last_status"] is None and untunnelled["last_error"].startswith("connect: "), untunnelled
    assert "407" in untunnelled["last_error"], untunnelled
    guarded.stop()
    gone = dead(target.url())  # no proxy to connect to
    assert gone["last_error"].startswith("connect: "), gone

    shown = subprocess.run(gq_command("check-config", "-c", str(wrong.config_path)), capture_output=True,
                           text=True, timeout=30)
    assert shown.returncode == 0 and f'proxy = "http://<redacted>@{guarded.address}"' in shown.stdout
    # PROXY_PASSWORD is in the wrong one too.
    for text in (shown.stdout, shown.stderr, daemon.log(), wrong.log(), json.dumps([refused, untunnelled, gone])):
        assert PROXY_PASSWORD not in text


# -- a proxy nobody here wrote: tinyproxy, from Debian's packages


class Tinyproxy:
    """tinyproxy in the foreground on a free loopback port, logging each request it is asked
    (LogLevel Connect) to `directory`/tinyproxy.log; `auth`: "USER PASSWORD" it requires."""

    def __init__(self, binary: str, directory: Path, auth: str = ""):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = directory / "tinyproxy.log"
        conf = directory / "tinyproxy.conf"
        conf.write_text("\n".join([
            f"Port {self.port}", "Listen 127.0.0.1", "Timeout 30", f'LogFile "{self.log_path}"', "LogLevel Connect",
            "MaxClients 100", "Allow 127.0.0.1", *([f"BasicAuth {auth}"] if auth else [])]) + "\n")
        self.proc = subprocess.Popen([binary, "-d", "-c", str(conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._listens, what="tinyproxy listening")

    def _listens(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def requests(self) -> list[str]:
        """The request lines it was asked, in order: 'POST http://…', 'CONNECT 127.0.0.1:…'."""
        log = self.log_path.read_text(errors="replace")
        return re.findall(r"Request \(file descriptor \d+\): (\S+ \S+) HTTP/1\.[01]", log)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def tinyproxy_binary() -> str:
    try:
        [path] = provide("tinyproxy", packages=["tinyproxy"])
    except PackageError as e:
        unavailable(f"tinyproxy is needed to test target.proxy against a real proxy: {e}")
    return path


def test_tinyproxy_carries_every_attempt_and_the_tunnels_for_https(start_daemon, target, tls_target, pki,
                                                                   tinyproxy_binary, tmp_path):
    tiny = Tinyproxy(tinyproxy_binary, tmp_path)
    try:
        daemon = start_daemon(target={"proxy": f"http://{tiny.address}", **mtls(pki)}, pool={"size": 2})
        plain = deliver(daemon, target)
        asked = tiny.requests()
        assert asked == [f"POST {target.url('/hook', fail=1)}"] * 2 * len(plain), asked
        received = [r for job_id in plain for r in records(target, job_id)]
        assert len(received) == 2 * len(plain) and all("tinyproxy" in r["headers"]["via"] for r in received)

        secure = deliver(daemon, tls_target)
        tunnels = tiny.requests()[len(asked):]
        assert tunnels and set(tunnels) == {f"CONNECT {tls_target.base.partition('//')[2]}"}, tunnels
        received = [r for job_id in secure for r in records(tls_target, job_id)]
        assert len(received) == 2 * len(secure) and {r["client"] for r in received} == {"gq-client"}
    finally:
        tiny.stop()


def test_tinyproxy_with_basic_auth_takes_gqs_credentials_and_refuses_wrong_ones(start_daemon, target,
                                                                               tinyproxy_binary, tmp_path):
    tiny = Tinyproxy(tinyproxy_binary, tmp_path, auth=f"gq {PROXY_PASSWORD}")
    try:
        daemon = start_daemon(target={"proxy": f"http://gq:{PROXY_PASSWORD}@{tiny.address}"})
        job_id = new_id("tiny")
        assert post_job(daemon, {"id": job_id, "url": target.url()}).status_code == 202
        assert final_state(daemon, job_id)["state"] == "succeeded" and records(target, job_id)

        (tmp_path / "wrong").mkdir()
        wrong = start_daemon(target={"proxy": f"http://gq:not-{PROXY_PASSWORD}@{tiny.address}"},
                             workdir=tmp_path / "wrong")
        job_id = new_id("tiny")
        assert post_job(wrong, {"id": job_id, "url": target.url(), "max_attempts": 1}).status_code == 202
        job = final_state(wrong, job_id)
        # tinyproxy 1.11 refuses with 401 where RFC 9110 has 407: either way dead at once, unsent.
        assert job["state"] == "dead" and job["last_status"] in (401, 407) and not records(target, job_id), job
        assert PROXY_PASSWORD not in wrong.log() + json.dumps(job)
    finally:
        tiny.stop()


# -- the client certificate

def test_an_mtls_target_accepts_gqs_certificate_and_refuses_others(start_daemon, tls_target, pki, tmp_path):
    daemon = start_daemon(target=mtls(pki))
    ids = deliver(daemon, tls_target, count=2)
    assert {r["client"] for job_id in ids for r in records(tls_target, job_id)} == {"gq-client"}

    # Without a certificate, or with one from a CA the target does not trust, the handshake fails.
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(tls_target.url(), verify=str(pki.ca), timeout=10)
    for name, tls in (("none", {"ca_bundle": str(pki.ca)}),
                      ("stranger", {"ca_bundle": str(pki.ca), "client_cert": str(pki.stranger_cert),
                                    "client_key": str(pki.stranger_key)})):
        (tmp_path / name).mkdir()
        other = start_daemon(target=tls, workdir=tmp_path / name)
        job_id = new_id(name)
        assert post_job(other, {"id": job_id, "url": tls_target.url(), "max_attempts": 1}).status_code == 202
        job = final_state(other, job_id)
        assert job["state"] == "dead" and job["last_status"] is None, job
        assert (job["last_error"] or "").startswith(("tls:", "connect:")), job
        assert not records(tls_target, job_id)


def test_a_client_certificate_that_does_not_load_stops_gq_at_start(tmp_path, pki):
    (tmp_path / "gq.toml").write_text(f'[target]\nclient_cert = "{pki.ca}"\n')  # a certificate, no key
    result = subprocess.run(gq_command("run", "-c", str(tmp_path / "gq.toml")), capture_output=True, text=True,
                            timeout=30, cwd=tmp_path)
    assert result.returncode == 2, result
    [line] = result.stderr.splitlines()
    assert line.startswith(f"gq: config error: {tmp_path / 'gq.toml'}: target.client_cert: {pki.ca}: "
                           "not a PEM certificate with its unencrypted private key"), line


# -- private addresses

PRIVATE_URLS = ["http://127.0.0.1:{port}/", "http://127.9.9.9/", "http://10.1.2.3/", "http://192.168.1.20/",
                "http://172.16.5.4/", "http://100.64.0.9/", "http://[::1]:{port}/", "http://[fd00::7]/",
                "http://0.0.0.0:{port}/", "http://[::ffff:127.0.0.1]:{port}/", "http://2130706433:{port}/",
                "http://[::]:{port}/"]


@pytest.fixture
def private_denied(start_daemon):
    return start_daemon(target={"deny_private": True}, retry={"max_attempts": 1})


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_deny_private_refuses_private_addresses_at_intake(private_denied, target, url):
    answer = exchange(private_denied.api, json.dumps({"url": url.format(port=target.port)}).encode(),
                      "application/json")
    assert answer.status == 400, answer
    assert answer.json()["field"] == "url" and "target.deny_private" in answer.json()["error"], answer.json()


def test_deny_private_refuses_a_name_of_a_private_address_at_connect_time(private_denied, target):
    job_id = new_id("local")
    url = target.url().replace("127.0.0.1", "localhost")
    assert post_job(private_denied, {"id": job_id, "url": url}).status_code == 202
    job = final_state(private_denied, job_id)
    assert job["state"] == "dead" and job["attempts"] == 1, job
    assert job["last_error"].startswith("refused: localhost resolved to ") and "target.deny_private" in \
        job["last_error"], job
    assert not records(target, job_id)


def test_deny_private_lets_other_addresses_through(private_denied):
    # 192.0.2.0/24 is for documentation: nobody answers there, but the guard lets the attempt go.
    job_id = new_id("public")
    assert post_job(private_denied, {"id": job_id, "url": "http://192.0.2.1/", "timeout": 1}).status_code == 202
    job = final_state(private_denied, job_id)
    assert job["state"] == "dead" and job["last_error"].startswith(("connect:", "timeout:")), job


def test_deny_private_holds_through_a_proxy_and_is_checked_before_it(start_daemon, target, proxy):
    daemon = start_daemon(target={"deny_private": True, "proxy": f"http://{proxy.address}"},
                          retry={"max_attempts": 1})
    assert post_job(daemon, {"url": target.url()}).status_code == 400
    job_id = new_id("local")
    assert post_job(daemon, {"id": job_id, "url": target.url().replace("127.0.0.1", "localhost")}).status_code == 202
    job = final_state(daemon, job_id)
    assert job["state"] == "dead" and job["last_error"].startswith("refused: localhost resolved to "), job
    assert proxy.seen() == [] and not records(target, job_id)


def test_the_example_config_and_the_docs_name_the_egress_keys():
    example = (ROOT / "config.example.toml").read_text()
    docs = (ROOT / "docs" / "configuration.md").read_text() + (ROOT / "docs" / "security.md").read_text()
    for key in ("proxy", "client_cert", "client_key", "deny_private"):
        assert f"\n{key} = " in example and f"target.{key}" in docs, key
