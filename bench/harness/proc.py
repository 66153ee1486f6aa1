"""Child processes pinned to a core with their own CPU and peak RSS accounted, a clock of
what others take of the measured core, and the HTTP requests of control and checks."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import psutil

from harness import BenchError, TimedOut
from harness.shared import wait_for

TARGET_CORE, MEASURED_CORE = 1, 0
BOTH_CORES = frozenset({TARGET_CORE, MEASURED_CORE})   # "not pinned": a process may run on either
POLL = 0.005                        # seconds between looks at a child that is about to exit

Cores = int | frozenset[int]   # one core, or BOTH_CORES


class Placement(Protocol):
    """Where a child process starts: its work dir and environment, and whether it is pinned to
    a core (harness.context.Context is one; a protocol, so that context need not be imported)."""

    workdir: Path
    env: dict[str, str]
    pinned: bool


def core_set(cores: Cores) -> frozenset[int]:
    return frozenset({cores}) if isinstance(cores, int) else cores


class Proc:
    """A child process, pinned to one core (or let run on both), its stdout/stderr in files
    of the work dir, reaped with os.wait4 so its own rusage (CPU, peak RSS) is known: Linux
    adds to it that of the children it waited for, and its peak RSS is the largest of theirs."""

    live: dict[int, Proc] = {}

    def __init__(self, name: str, argv: list[str], ctx: Placement, cores: Cores | None):
        self.name = name
        self.out = ctx.workdir / f"{name}.out"
        self.err = ctx.workdir / f"{name}.err"
        pin = partial(os.sched_setaffinity, 0, core_set(cores)) if ctx.pinned and cores is not None else None
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                          cwd=ctx.workdir, env=ctx.env, preexec_fn=pin)
        self.pid = self.popen.pid
        self.started = time.monotonic()
        self.code: int | None = None
        self.rusage: Any = None
        Proc.live[self.pid] = self

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if still running after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self.code is None:
            pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self.code, self.rusage = os.waitstatus_to_exitcode(status), rusage
                self.popen.returncode = self.code  # reaped here, not by Popen
                Proc.live.pop(self.pid, None)
            elif time.monotonic() >= deadline:
                return None
            else:
                time.sleep(POLL)
        return self.code

    def send(self, sig: int) -> None:
        if self.code is None:
            os.kill(self.pid, sig)

    def stop(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGINT), timeout: float = 15.0) -> int:
        """Signal it (each signal once, 0.2 s apart) until it exits; SIGKILL past `timeout`."""
        for sig in signals:
            self.send(sig)
            if self.wait(0.2) is not None:
                return self.code
        if self.wait(timeout) is None:
            self.send(signal.SIGKILL)
            self.wait(5)
            raise BenchError(f"{self.name} did not exit within {timeout:g}s of {signals}: killed")
        return self.code

    def wait_line(self, pattern: str, timeout: float, stream: str = "err") -> re.Match:
        """Wait for a line of its stdout/stderr matching `pattern`."""
        path = self.err if stream == "err" else self.out

        def seen() -> re.Match | None:
            match = re.search(pattern, path.read_text(errors="replace"))
            if match is None and self.wait(0) is not None:
                raise BenchError(f"{self.name} exited ({self.code}) before {pattern!r}: {self.tail()}")
            return match

        try:
            return wait_for(seen, timeout, f"{self.name}: {pattern!r}")
        except TimedOut:
            raise BenchError(f"{self.name}: no {pattern!r} within {timeout:g}s: {self.tail()}") from None

    def tail(self, lines: int = 3) -> str:
        text = (self.err.read_text(errors="replace") + self.out.read_text(errors="replace")).strip()
        return " | ".join(text.splitlines()[-lines:]) or "(no output)"

    def stdout_json(self) -> dict:
        lines = self.out.read_text(errors="replace").strip().splitlines()
        try:
            return json.loads(lines[-1])
        except (IndexError, ValueError):
            raise BenchError(f"{self.name}: no JSON on stdout: {self.tail()}") from None

    @property
    def cpu_seconds(self) -> float:
        return self.rusage.ru_utime + self.rusage.ru_stime

    @property
    def max_rss_mb(self) -> float:
        return self.rusage.ru_maxrss / 1024

    @classmethod
    def kill_all(cls) -> None:
        """At exit: end every child this script started that is still running, by its pid."""
        for proc in list(cls.live.values()):
            proc.send(signal.SIGKILL)
            proc.wait(5)


def request(method: str, url: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
    """One HTTP request from this script (control and checks, never measured)."""
    host, _, rest = url.removeprefix("http://").partition("/")
    conn = http.client.HTTPConnection(host, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, "/" + rest, body=data,
                     headers={"Content-Type": "application/json"} if data is not None else {})
        response = conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode(errors="replace")
    finally:
        conn.close()


def cpu_seconds_of(ps: psutil.Process) -> float:
    """A running process's CPU so far (user + system)."""
    t = ps.cpu_times()
    return t.user + t.system


def let_run_on(pid: int, cores: Cores) -> None:
    """Let every thread of a running process `pid` run on `cores` (a child inherits this
    script's core, which is the target's, and so do the threads it has started)."""
    for thread in psutil.Process(pid).threads():
        os.sched_setaffinity(thread.id, core_set(cores))


class CoreClock:
    """CPU time spent on the measured core (or cores) by everything (steal included), to tell
    how much of it went to processes other than those measured: another load on the machine.
    This script's own CPU counts as measured when it runs on one of those cores."""

    def __init__(self, ctx: Placement, cores: Cores = MEASURED_CORE):
        self.enabled = ctx.pinned
        self.cores = sorted(core_set(cores))
        self.mine = bool(set(self.cores) & os.sched_getaffinity(0))
        self.wall, self.busy, self.own = time.monotonic(), self._busy(), time.process_time()

    def _busy(self) -> float:
        times = psutil.cpu_times(percpu=True)
        return sum(t.user + t.nice + t.system + t.irq + t.softirq + t.steal for t in (times[c] for c in self.cores))

    def others_pct(self, own_cpu_seconds: float) -> float | None:
        """Percent of the cores' wall time used by others (or stolen) since this clock started."""
        if not self.enabled:
            return None
        wall = time.monotonic() - self.wall
        if self.mine:
            own_cpu_seconds += time.process_time() - self.own
        others = max(0.0, self._busy() - self.busy - own_cpu_seconds)
        return round(others / (wall * len(self.cores)) * 100, 1) if wall else 0.0
