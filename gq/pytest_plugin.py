"""gq's pytest plugin (entry point `pytest11`, installed with gq): an application's tests run
its jobs through a real gq.

Fixtures, each active only in the tests that ask for it:
- `gq_daemon`: a `gq run` subprocess on a free loopback port, its journal under the test's
  tmp dir: `.api`, `.client` (a gq.Client), `.config_path`, `.wait(id, state)`, `.log()`,
  `.stop()`, `.restart()`.
- `gq_config`: the config sections `gq_daemon` runs with, over the plugin's (fast retries);
  override it in a conftest.py or a test module: `{"retry": {"max_attempts": 2}}`.
- `gq_receiver`: a local HTTP receiver (a thread): `.url`, `.requests` as received,
  `.wait(n, timeout)`, `.respond(status, delay=0, times=None)`.

It imports neither gevent nor requests until a test asks for a gq_daemon, and works in a
test session that does not use gevent.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # imported when a test asks for them: the plugin is loaded in every session
    from http.server import ThreadingHTTPServer

    from gq.client import Client

START_TIMEOUT = 30.0   # seconds gq may take to listen and be ready
STOP_TIMEOUT = 30.0    # seconds stop() waits for a drain before it kills
# Over gq's defaults: retries within a test's patience; 16 MB of free disk kept, not 256.
DEFAULTS: dict[str, dict[str, Any]] = {
    "retry": {"backoff_base": 0.05, "backoff_max": 0.5},
    "journal": {"min_free_mb": 16},
    "shutdown": {"drain_timeout": 5.0},
}
_LISTENING = re.compile(r"listening on (http://\S+)")


def toml(config: dict[str, dict[str, Any]]) -> str:
    """Sections of strings, numbers, booleans, lists and tables as a TOML file."""
    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{json.dumps(str(k))} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)  # TOML spells strings, numbers and booleans as JSON does
    return "".join(f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in section.items()) + "\n"
                   for name, section in config.items())


def merged(*configs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Config sections, each later key over the same earlier one."""
    out: dict[str, dict[str, Any]] = {}
    for config in configs:
        for name, section in config.items():
            out.setdefault(name, {}).update(section)
    return out


class GqDaemon:
    """A `gq run` subprocess in `workdir`, with the config `sections` (over DEFAULTS): its
    journal `workdir/journal.sqlite3`, its API on a loopback port chosen at the first
    start and kept by restart(). Its output goes to `workdir/gq.log`."""

    def __init__(self, workdir: Path, sections: dict[str, dict[str, Any]] | None = None):
        self.workdir = workdir
        self.config = merged(DEFAULTS, {"api": {"listen": "127.0.0.1:0"},
                                        "journal": {"path": str(workdir / "journal.sqlite3")}}, sections or {})
        self.config_path = workdir / "gq.toml"
        self.log_path = workdir / "gq.log"
        self.api = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        """A gq.Client of this daemon (its api.token, if set)."""
        if self._client is None:
            from gq.client import Client
            self._client = Client(self.api, str(self.config.get("api", {}).get("token", "")))
        return self._client

    def start(self) -> GqDaemon:
        """Start gq and return once it is ready (`/readyz` 200); fails the test with its log
        if it exits or is not ready within START_TIMEOUT."""
        self.config_path.write_text(toml(self.config))
        env = {k: v for k, v in os.environ.items() if k not in ("GQ_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC")}
        start = self.log_path.stat().st_size if self.log_path.exists() else 0  # this run's lines follow
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "gq", "run", "-c", str(self.config_path)],
                                         cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_TIMEOUT
        self.api = ""
        while not self._ready(start):
            if self.proc.poll() is not None:
                pytest.fail(f"gq exited with {self.proc.returncode} before it was ready:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"gq was not ready within {START_TIMEOUT:g}s:\n{self.log()}")
            time.sleep(0.02)
        # Restarts keep the address: the client and the application's settings stay right.
        self.config["api"]["listen"] = self.api.split("://", 1)[1]
        return self

    def _ready(self, start: int) -> bool:
        if not self.api:
            with open(self.log_path, "rb") as log:
                log.seek(start)
                found = _LISTENING.search(log.read().decode(errors="replace"))
            if not found:
                return False
            self.api = found.group(1)
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.api}/readyz", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def wait(self, job_id: str, state: str = "succeeded", timeout: float = 10.0) -> dict[str, Any]:
        """The job once it is in `state` (as client.get shows it); fails the test after `timeout`."""
        deadline = time.monotonic() + timeout
        while (job := self.client.get(job_id))["state"] != state:
            if time.monotonic() > deadline:
                pytest.fail(f"gq_daemon: job {job_id!r} is {job['state']}, not {state}, after {timeout:g}s")
            time.sleep(0.02)
        return job

    def log(self) -> str:
        """What gq wrote (every run's)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM: gq drains (shutdown.drain_timeout, 5 s here) and exits; killed after
        `timeout`. What is left unfinished stays in the journal. Returns its exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def kill(self) -> None:
        """Stop now, as a crash would (the journal keeps what was accepted)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> GqDaemon:
        """stop(), then start again on the same journal and address."""
        self.stop()
        return self.start()

    def close(self) -> None:
        self.kill()
        if self._client is not None:
            self._client.close()
            self._client = None


@dataclass
class Received:
    """One request as the receiver got it; `json`: its body parsed, None when it is not JSON."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    status: int = 200  # what the receiver answered


@dataclass
class _Answer:
    status: int = 200
    delay: float = 0.0
    times: int | None = None  # answers left before it is 200 again; None: until changed


@dataclass
class GqReceiver:
    """A threaded HTTP server on 127.0.0.1 that takes any method on any path, records it,
    and answers as respond() says (200 with no body by default)."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    _answer: _Answer = field(default_factory=_Answer)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _server: ThreadingHTTPServer | None = None

    def respond(self, status: int, delay: float = 0.0, times: int | None = None) -> None:
        """Answer the next requests with `status`, after `delay` seconds; `times`: that many
        of them only, then 200 again (None: until the next respond)."""
        with self._changed:
            self._answer = _Answer(status, delay, times)

    def wait(self, n: int = 1, timeout: float = 10.0) -> list[Received]:
        """The requests received once there are at least `n`; fails the test after `timeout`."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.requests) >= n, timeout):
                pytest.fail(f"gq_receiver: {len(self.requests)} request(s) received in {timeout:g}s, "
                            f"waited for {n}")
            return list(self.requests)

    def _take(self, request: Received) -> _Answer:
        with self._changed:
            answer = self._answer
            if answer.times is not None:
                answer.times -= 1
                if answer.times <= 0:
                    self._answer = _Answer()
            request.status = answer.status
            self.requests.append(request)
            self._changed.notify_all()
            return answer

    def start(self) -> GqReceiver:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as gq's connections are
            timeout = 60

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                answer = receiver._take(Received(self.command, self.path, dict(self.headers.items()), body, parsed))
                if answer.delay:
                    time.sleep(answer.delay)
                self.send_response(answer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test's output is the application's

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="gq_receiver", daemon=True).start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def gq_config() -> dict[str, dict[str, Any]]:
    """The config sections gq_daemon runs with, over the plugin's; `{}` here. Override it:

        @pytest.fixture
        def gq_config():
            return {"retry": {"max_attempts": 2}, "api": {"token": "t"}}
    """
    return {}


@pytest.fixture
def gq_daemon(gq_config: dict[str, dict[str, Any]], tmp_path: Path) -> Iterator[GqDaemon]:
    """A running `gq run`, its journal and log in the test's tmp dir; killed at the end."""
    workdir = tmp_path / "gq"
    workdir.mkdir()
    daemon = GqDaemon(workdir, gq_config)
    try:
        yield daemon.start()
    finally:
        daemon.close()


@pytest.fixture
def gq_receiver() -> Iterator[GqReceiver]:
    """A local HTTP receiver for gq's deliveries; closed at the end."""
    receiver = GqReceiver().start()
    try:
        yield receiver
    finally:
        receiver.close()
