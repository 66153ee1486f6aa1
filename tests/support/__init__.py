"""What the tests share: real processes on loopback (gq itself, the HTTP target), patient
waiting, what a running daemon shows (jobs, metrics), and an HTTP client that sends
exactly the bytes it is given. The benchmarks use the same helpers."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).parent   # tests/support/: the helper scripts run by path (target.py, proxy.py …)
ROOT = HERE.parent.parent
DEADLINE = 30.0  # seconds any condition in a test may take before it fails
FUZZED_MAX_BODY = 65536  # api.max_body_bytes of the fuzzed daemon (tests/process/conftest.py)
CLIENT_TIMEOUT = 2.0     # api.client_timeout of the fuzzed daemon and of the one slow clients attack
# Why a succeeded job is not replayed when its body was dropped, as the API and the CLI say it.
NOT_KEPT = "payload not kept: journal.keep_succeeded_payload was false when it succeeded"


def wait_for(condition: Callable[[], Any], timeout: float = DEADLINE, what: str = "condition",
             every: float = 0.02, sleep: Callable[[float], Any] = time.sleep) -> Any:
    """Poll `condition` every `every` seconds until it returns something truthy; fail the
    test after `timeout`. `sleep`: how to wait (gevent.sleep, for greenlets of this process)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        sleep(every)


class Clock:
    """A monotonic clock for in-process tests, moved by hand (`clock.now += 5`)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    """A loopback port free at the moment of asking (for a server to listen on)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused."""
    return free_port()


def unavailable(why: str) -> NoReturn:
    """What a test needs cannot be had on this machine (a program, a namespace): skip it —
    but under CI, where every test must run, fail."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI=true: every test must run)", pytrace=False)
    pytest.skip(why)


def gq_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gq", *args]


def run_gq(*args: str, input: str | None = None, timeout: float = 60, cwd: Path | None = None,
           env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a gq command to completion, as a user would."""
    return subprocess.run(gq_command(*args), input=input, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


class Target:
    """tests/support/target.py in its own process; `url(path, **query)` builds job URLs."""

    def __init__(self, proc: subprocess.Popen, port: int, scheme: str = "http", **tls: Any):
        """`tls`: what requests needs to reach an HTTPS target (verify=, cert=)."""
        self.proc, self.port, self.tls = proc, port, tls
        self.base = f"{scheme}://127.0.0.1:{port}"

    def url(self, path: str = "/hook", **query: Any) -> str:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{self.base}{path}" + (f"?{qs}" if qs else "")

    def stats(self) -> dict:
        return requests.get(f"{self.base}/_stats", timeout=10, **self.tls).json()

    def received(self, since: int = 0) -> list[dict]:
        return requests.get(f"{self.base}/_received", params={"since": since}, timeout=30, **self.tls).json()

    def count(self) -> int:
        return self.stats()["count"]

    def control(self, path: str) -> None:
        """POST a control path: /_down (every job request gets 503 until /_up), /_up, /_reset."""
        requests.post(f"{self.base}{path}", timeout=10, **self.tls).raise_for_status()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def start_target(port: int = 0) -> Target:
    """The target on `port` (0: any free one)."""
    return spawn_target("--port", str(port))


def spawn_target(*args: str, scheme: str = "http", **tls: Any) -> Target:
    """tests/support/target.py started with `args` (--host, --port, --tls-cert...), once it listens."""
    proc, port = spawn_listening("target.py", *args)
    return Target(proc, port, scheme, **tls)


def spawn_listening(script: str, *args: str) -> tuple[subprocess.Popen, int]:
    """tests/SCRIPT started with `args`, once it printed `listening PORT`: (process, port)."""
    proc = subprocess.Popen([sys.executable, str(HERE / script), *args], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{script} {' '.join(args)} did not start: {line!r}")
    return proc, int(line.split()[1])


class Daemon:
    """A `gq run` subprocess with its config in a temp dir; its stderr is collected in a file."""

    def __init__(self, workdir: Path, config: dict[str, dict[str, Any]], env: dict | None = None,
                 wait: bool = True):
        """wait=False: return at once; `api` then waits for the "listening on" line."""
        self.workdir = workdir
        self.config_path = workdir / "gq.toml"
        self.config_path.write_text(to_toml(config))
        self.log_path = workdir / f"gq-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.command(), cwd=workdir, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env)
        self.pid = self.proc.pid
        self._api: str | None = None
        self.session = requests.Session()
        self.auth: dict[str, str] = {}  # sent by fetch() and post_job(): Authorization, if api.token is set
        if wait:
            self.api  # noqa: B018 - waits for it

    def command(self) -> list[str]:
        """What runs gq (a subclass may run it inside something)."""
        return gq_command("run", "-c", str(self.config_path))

    @property
    def api(self) -> str:
        if self._api is None:
            self._api = wait_for(self._listening, what="gq to listen")
        return self._api

    @api.setter
    def api(self, url: str) -> None:
        self._api = url

    def _listening(self) -> str | None:
        if self.proc.poll() is not None:
            pytest.fail(f"gq exited with {self.proc.returncode} before listening:\n{self.log()}")
        m = re.search(r"listening on (http://\S+)", self.log())
        return m.group(1) if m else None

    def log(self) -> str:
        return self.log_path.read_text()

    def post(self, body: Any, content_type: str = "application/json", **kw) -> requests.Response:
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return self.session.post(f"{self.api}/v1/jobs", data=data,
                                 headers={"Content-Type": content_type, **kw.pop("headers", {})},
                                 timeout=30, **kw)

    def get(self, path: str, **kw) -> requests.Response:
        return self.session.get(f"{self.api}{path}", timeout=30, **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        return self.session.delete(f"{self.api}{path}", timeout=30, **kw)

    def job(self, job_id: str) -> dict:
        return self.get(f"/v1/jobs/{job_id}").json()

    def status(self) -> dict:
        return self.get("/v1/status").json()

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = DEADLINE) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"gq did not exit within {timeout:g}s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a test may have stopped it
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def to_toml(config: dict[str, dict[str, Any]]) -> str:
    """`config` as a TOML file: a table per section, the tables within it inline."""
    return "".join(f"[{section}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in values.items())
                   for section, values in config.items())


def _toml_value(value: Any) -> str:
    # TOML spells strings, numbers, booleans and arrays as JSON does; tables differently.
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def daemon_config(**sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A config for tests: any free port, memory journal unless given, fast retries."""
    config: dict[str, dict[str, Any]] = {
        "api": {"listen": "127.0.0.1:0"},
        # Tests run wherever there is disk: the default 256 MB of free space kept could refuse
        # every job on a nearly full machine (the storage tests set their own).
        "journal": {"path": "", "min_free_mb": 16},
        "retry": {"backoff_base": 0.05, "backoff_max": 0.5},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    return config


# -- what a running daemon shows

TOKEN = "s3cret-token"  # api.token of the token_daemon fixture
FINAL = ("succeeded", "dead")  # the states a job ends in


def new_id(prefix: str = "job") -> str:
    """A job id no other job in the test run has."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def fetch(daemon: Daemon, path: str, timeout: float = 10) -> requests.Response:
    """GET on a connection of its own (quick polling, unaffected by earlier requests), with
    the daemon's `auth` headers."""
    return requests.get(f"{daemon.api}{path}", timeout=timeout, headers=daemon.auth)


def healthy(daemon: Daemon) -> bool:
    """Whether /healthz answers 200 within 3 seconds."""
    try:
        return requests.get(f"{daemon.api}/healthz", timeout=3).status_code == 200
    except requests.RequestException:
        return False


def post_job(daemon: Daemon, job: Any, timeout: float = 10, **headers: str) -> requests.Response:
    """POST /v1/jobs on a connection of its own, with the daemon's `auth` headers."""
    return requests.post(f"{daemon.api}/v1/jobs", data=json.dumps(job), timeout=timeout,
                         headers={"Content-Type": "application/json", **daemon.auth, **headers})


def final_state(daemon: Daemon, job_id: str, timeout: float = 20) -> dict:
    """The job once it is succeeded or dead; the test fails after `timeout`."""
    def done():
        job = fetch(daemon, f"/v1/jobs/{quote(job_id, safe='')}").json()
        return job if job.get("state") in FINAL else None
    return wait_for(done, timeout, f"job {job_id!r} to finish")


def wait_state(daemon: Daemon, job_id: str, state: str, timeout: float = 20) -> dict:
    """The job once GET /v1/jobs/{id} shows it in `state`; the test fails after `timeout`."""
    def reached():
        job = fetch(daemon, f"/v1/jobs/{quote(job_id, safe='')}").json()
        return job if job.get("state") == state else None
    return wait_for(reached, timeout, f"job {job_id!r} to be {state}")


def records(target: Target, key: str, since: int = 0) -> list[dict]:
    """The requests the target received with Idempotency-Key `key`."""
    return [r for r in target.received(since) if r["key"] == key]


def exposition_samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a Prometheus text exposition, keyed by (sample name, sorted labels)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def samples(daemon: Daemon) -> dict[tuple[str, tuple], float]:
    """exposition_samples of the daemon's /metrics."""
    response = fetch(daemon, "/metrics")
    assert response.status_code == 200
    return exposition_samples(response.text)


def metric(daemon: Daemon, name: str, **labels: str) -> float | None:
    """The sample `name` with exactly these labels; None if the daemon exports none."""
    return samples(daemon).get((name, tuple(sorted(labels.items()))))


def rejected(daemon: Daemon, reason: str) -> float | None:
    return metric(daemon, "gq_intake_rejected_total", reason=reason)


def assert_clean_log(daemon: Daemon) -> None:
    log = daemon.log()
    assert "Traceback" not in log and "internal error" not in log, log[-4000:]


# -- an HTTP client that sends exactly the bytes it is given

ANSWER_TIMEOUT = 8.0  # seconds any well-formed request may take to be answered


@dataclass
class Answer:
    status: int | None                      # None: no answer (closed, reset or timed out)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    note: str = ""                          # why there is no answer

    def json(self) -> Any:
        return json.loads(self.body)

    def __str__(self) -> str:
        if self.status is None:
            return f"no answer ({self.note})"
        return f"{self.status} {self.body[:300]!r}"


class Conn:
    """One TCP connection to gq; reads HTTP/1.1 answers with Content-Length bodies."""

    def __init__(self, api: str, timeout: float = ANSWER_TIMEOUT):
        parts = urlsplit(api)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> str:
        """'' when sent, else the error (the server may close early: that is allowed)."""
        try:
            self.sock.sendall(data)
            return ""
        except OSError as e:
            return f"send: {e}"

    def _fill(self, deadline: float) -> str:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout"
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return "timeout"
        except OSError as e:
            return f"reset: {e}"
        if not chunk:
            return "closed"
        self.buf += chunk
        return ""

    def answer(self, timeout: float = ANSWER_TIMEOUT) -> Answer:
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            problem = self._fill(deadline)
            if problem:
                return Answer(None, note=problem)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        while len(self.buf) < length:
            if self._fill(deadline):
                break
        body, self.buf = self.buf[:length], self.buf[length:]
        return Answer(status, headers, body)

    def close(self) -> None:
        self.sock.close()


def head_bytes(method: str, path: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: gq"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def exchange(api: str, body: bytes, content_type: str | None, *, path: str = "/v1/jobs",
             method: str = "POST", expect_continue: bool = False, chunked: bool = False,
             extra: list[tuple[str, str]] = (), timeout: float = ANSWER_TIMEOUT) -> Answer:
    """One request on a new connection, exactly as given; its answer."""
    headers = list(extra)
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    if chunked:
        headers.append(("Transfer-Encoding", "chunked"))
        step = max(1, len(body) // 3)
        payload = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + step]), body[i:i + step])
                           for i in range(0, len(body), step)) + b"0\r\n\r\n"
    else:
        headers.append(("Content-Length", str(len(body))))
        payload = body
    if expect_continue and body:
        headers.append(("Expect", "100-continue"))
    conn = Conn(api, timeout)
    try:
        sent = conn.send(head_bytes(method, path, headers))
        if expect_continue and body and not sent:
            first = conn.answer(timeout)
            if first.status != 100:
                return first
        if not sent:
            sent = conn.send(payload)
        return conn.answer(timeout)
    finally:
        conn.close()
