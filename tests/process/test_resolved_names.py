"""Names are judged by the addresses they resolve to, at connect time: a name that resolves
to a forbidden address is refused, and target.allowed_hosts matches names exactly or by
suffix and networks by the resolved address.

gq runs in a mount namespace of its own, where /etc/hosts is a file the test writes.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from support import Daemon, daemon_config, final_state, new_id, post_job, records, unavailable

HOSTS = """\
127.0.0.1 localhost
::1 localhost ip6-localhost
169.254.169.254 metadata.test
fe80::1 linklocal6.test
::ffff:169.254.169.254 mapped.test
100.100.100.200 alimeta.test
127.0.0.1 good.test a.allowed.test b.a.allowed.test exact.test other.test allowed.test
"""


def in_hosts_namespace(hosts: Path, *command: str) -> list[str]:
    """`command` in a mount namespace of its own, where /etc/hosts is the file `hosts`."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$1" /etc/hosts && shift && exec "$@"', "sh", str(hosts), *command]


class HostsDaemon(Daemon):
    """A Daemon whose gq resolves names with the hosts file `hosts`."""

    def __init__(self, workdir: Path, config: dict, hosts: Path):
        self.hosts = hosts
        super().__init__(workdir, config)

    def command(self) -> list[str]:
        return in_hosts_namespace(self.hosts, *super().command())


@pytest.fixture(scope="module")
def hosts_file(tmp_path_factory) -> Path:
    """The hosts file, once it is known that a mount namespace can put it in place."""
    path = tmp_path_factory.mktemp("hosts") / "hosts"
    path.write_text(HOSTS)
    why = ""
    if not (shutil.which("unshare") and shutil.which("mount")):
        why = "unshare or mount is not installed"
    else:
        probe = subprocess.run(in_hosts_namespace(path, "getent", "hosts", "metadata.test"),
                               capture_output=True, text=True, timeout=20)
        if probe.returncode != 0 or "169.254.169.254" not in probe.stdout:
            why = f"cannot bind-mount /etc/hosts in a mount namespace: {probe.stderr.strip() or probe.stdout!r}"
    if why:
        unavailable(why)
    return path


@pytest.fixture(scope="module")
def ns_daemons(tmp_path_factory, hosts_file):
    """start(*allowed_hosts) → a HostsDaemon, started once per module."""
    started: dict[tuple, HostsDaemon] = {}

    def start(*allowed: str) -> HostsDaemon:
        if allowed not in started:
            started[allowed] = HostsDaemon(tmp_path_factory.mktemp("ns"), daemon_config(
                pool={"size": 4}, target={"allowed_hosts": list(allowed)}, retry={"max_attempts": 3}), hosts_file)
        return started[allowed]

    yield start
    for daemon in started.values():
        daemon.stop()


def _delivered(daemon: Daemon, target, url: str) -> None:
    job_id = new_id("ns")
    response = post_job(daemon, {"id": job_id, "url": url})
    assert response.status_code == 202, f"{url}: {response.text}"
    job = final_state(daemon, job_id)
    assert job["state"] == "succeeded", f"{url}: {job}"
    got = records(target, job_id)
    assert got and got[-1]["headers"]["host"] == urlsplit(url).netloc.lower(), got


def _refused_at_connect(daemon: Daemon, target, url: str, address: str = "") -> dict:
    job_id = new_id("ns")
    response = post_job(daemon, {"id": job_id, "url": url})
    assert response.status_code == 202, f"{url}: names are resolved at connect time: {response.text}"
    job = final_state(daemon, job_id, timeout=10)
    assert job["state"] == "dead" and job["attempts"] == 1, f"{url}: {job}"
    assert (job["last_error"] or "").startswith("refused:") and address in job["last_error"], f"{url}: {job}"
    assert not records(target, job_id)
    return job


def _refused_at_intake(daemon: Daemon, url: str) -> None:
    response = post_job(daemon, {"url": url})
    assert response.status_code == 400, f"{url}: {response.text}"
    assert response.json()["error"].startswith("url") and response.json()["field"] == "url"


@pytest.mark.parametrize("name,address", [("metadata.test", "169.254.169.254"), ("linklocal6.test", "fe80::1"),
                                          ("mapped.test", "169.254.169.254"), ("alimeta.test", "100.100.100.200")])
def test_a_name_that_resolves_to_a_forbidden_address_is_refused_at_connect_time(ns_daemons, shared_target,
                                                                               name, address):
    daemon = ns_daemons()
    _refused_at_connect(daemon, shared_target, f"http://{name}:{shared_target.port}/meta", address)
    _delivered(daemon, shared_target, f"http://good.test:{shared_target.port}/good")


def test_allowed_hosts_exact_names_and_suffixes(ns_daemons, shared_target):
    daemon = ns_daemons("*.allowed.test", "exact.test")
    port = shared_target.port
    for host in ("a.allowed.test", "b.a.allowed.test", "exact.test", "EXACT.test"):
        _delivered(daemon, shared_target, f"http://{host}:{port}/in")
    for host in ("other.test", "allowed.test", "a.allowed.test.other.test", "xallowed.test", "127.0.0.1",
                 "169.254.169.254", "exact.test.other.test"):
        _refused_at_intake(daemon, f"http://{host}:{port}/out")
    # what the intake parser and the HTTP stack read as the host may differ: the HTTP stack's wins
    job_id = new_id("differential")
    response = post_job(daemon, {"id": job_id, "url": f"http://other.test:{port}\\@a.allowed.test:{port}/x"})
    if response.status_code == 202:
        job = final_state(daemon, job_id)
        assert job["state"] == "dead" and (job["last_error"] or "").startswith("refused:"), job
    else:
        assert response.status_code == 400, response.text
    assert not [r for r in shared_target.received() if r["headers"].get("host", "").startswith("other.test")]


def test_allowed_hosts_networks_decide_on_resolved_addresses(ns_daemons, shared_target):
    port = shared_target.port
    loopback = ns_daemons("127.0.0.0/8", "169.254.0.0/16")
    _delivered(loopback, shared_target, f"http://good.test:{port}/cidr")
    _delivered(loopback, shared_target, f"http://127.0.0.1:{port}/cidr")
    _refused_at_connect(loopback, shared_target, f"http://metadata.test:{port}/cidr", "169.254.169.254")
    _refused_at_intake(loopback, f"http://169.254.169.254:{port}/cidr")

    elsewhere = ns_daemons("10.0.0.0/8")
    _refused_at_connect(elsewhere, shared_target, f"http://good.test:{port}/cidr", "127.0.0.1")
    _refused_at_intake(elsewhere, f"http://127.0.0.1:{port}/cidr")
