"""The process tier: tests that start real processes on loopback (gq, the target, Redis,
Prometheus, a browser), each marked `process` (and `browser` when it drives Chromium); the
fixtures that only they use."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import requests

from support import (
    CLIENT_TIMEOUT,
    FUZZED_MAX_BODY,
    TOKEN,
    Daemon,
    daemon_config,
    healthy,
    post_job,
    start_target,
    unavailable,
)

# test_broker_states.py runs in this process too, but its random sequences take the better
# part of a minute: it is in the process tier, so that the unit tier stays within seconds.
BROWSER_FIXTURES = {"chromium", "browser"}   # also marked `browser`: pytest -m browser runs them alone


def pytest_itemcollected(item: pytest.Item) -> None:
    item.add_marker("process")
    if BROWSER_FIXTURES & set(getattr(item, "fixturenames", ())):
        item.add_marker("browser")


@pytest.fixture
def fleet(redis_server, start_daemon, tmp_path, request):
    """gq daemons on one Redis (tests/support/fleet.py: Fleet), under a key prefix of the test's own."""
    from support.fleet import Fleet

    # redis_server is set up before start_daemon, so every daemon is killed before Redis stops.
    prefix = "gqt-" + re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)
    f = Fleet(redis_server, start_daemon, tmp_path, prefix)
    yield f
    f.redis.close()


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """(chromium, chromedriver): Debian's, installed when missing (tests/support/browser.py)."""
    from support.browser import find_chromium
    from support.packages import PackageError
    try:
        return find_chromium()
    except PackageError as e:
        unavailable(f"a browser is needed for the console's tests: {e}")


@pytest.fixture
def browser(chromium, tmp_path):
    """A headless Chromium (Selenium's webdriver.Chrome) of the test's own, 1280x900, its
    profile in tmp_path; quit at the end with every process it started (tests/support/browser.py)."""
    from support.browser import open_browser
    with open_browser(tmp_path / "browser", chromium) as driver:
        yield driver


@pytest.fixture(scope="module")
def shared_target():
    """One target for a module's tests that each look at their own jobs only."""
    t = start_target()
    yield t
    t.stop()


@pytest.fixture(scope="module")
def token_daemon(tmp_path_factory):
    """A module's daemon whose api.token is TOKEN."""
    started = Daemon(tmp_path_factory.mktemp("token"), daemon_config(api={"token": TOKEN}, pool={"size": 4}))
    yield started
    started.stop()


class Restartable:
    """A module's daemon that a test leaving it broken does not take down the next tests with it."""

    def __init__(self, workdir: Path, **sections: dict[str, Any]):
        self.workdir, self.sections, self.runs = workdir, sections, 0
        self.daemon: Daemon | None = None

    def _start(self) -> None:
        self.runs += 1
        config = daemon_config(**self.sections)
        config["journal"] = {"path": f"journal-{self.runs}.sqlite3"}   # a broken run's journal stays behind
        self.daemon = Daemon(self.workdir, config)

    def _works(self, target) -> bool:
        if self.daemon is None or self.daemon.proc.poll() is not None or not healthy(self.daemon):
            return False
        try:
            return post_job(self.daemon, {"url": target.url("/probe")}, timeout=5).status_code == 202
        except requests.RequestException:
            return False

    def ready(self, target) -> Daemon:
        if not self._works(target):
            if self.daemon is not None:
                self.daemon.stop()
            self._start()
        return self.daemon

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    """A module's daemon for hostile requests, kept in a Restartable."""
    holder = Restartable(tmp_path_factory.mktemp("fuzzed"), pool={"size": 8},
                         api={"max_body_bytes": FUZZED_MAX_BODY, "max_jobs_per_request": 50,
                              "client_timeout": CLIENT_TIMEOUT},
                         target={"timeout": 5.0}, retry={"max_attempts": 3})
    yield holder
    holder.stop()


@pytest.fixture
def gq(fuzzed, shared_target) -> Daemon:
    """The fuzzed daemon (journaled, like the default config), restarted if a test broke it."""
    return fuzzed.ready(shared_target)


@pytest.fixture(scope="session")
def redis_binary() -> str:
    from support.redis_server import find_redis_server
    path, why = find_redis_server()
    if path:
        return path
    unavailable(f"redis-server is needed for the Redis broker's tests: {why}")


@pytest.fixture(scope="module")
def module_redis(redis_binary, tmp_path_factory):
    """A module's redis-server, for tests that each use a key prefix of their own (the
    broker contract suite); asked for only by the tests that run on Redis."""
    from support.redis_server import RedisServer
    # hz 100: a blocking read's timeout ends within 10 ms, not 100 (the brokers' take() blocks
    # for a few ms, thousands of times in the stateful test)
    server = RedisServer(redis_binary, tmp_path_factory.mktemp("redis"), appendfsync="everysec",
                         args=("--hz", "100"))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def redis_server(redis_binary, tmp_path):
    """A redis-server of its own on a free loopback port, killed at the end."""
    from support.redis_server import RedisServer
    server = RedisServer(redis_binary, tmp_path / "redis")
    server.start()
    yield server
    server.kill()
