"""The target (tests/support/target.py) as the benchmark runs it: alone on its core, its CPU accounted."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import psutil

from harness import PY, ROOT, BenchError
from harness.proc import BOTH_CORES, TARGET_CORE, Cores, Placement, Proc, core_set, cpu_seconds_of, request
from harness.shared import Target


class BenchTarget(Target):
    """The tests' Target, started as a Proc pinned to the target's core (the tests' start_target
    pins nothing and is reaped by Popen), with what a run needs besides: a reset between runs,
    its CPU, a check that every job came exactly once, and its cores shared for a while."""

    def __init__(self, ctx: Placement):
        launched = Proc("target", [PY, str(ROOT / "tests" / "support" / "target.py"), "--port", "0"], ctx, TARGET_CORE)
        port = launched.wait_line(r"listening (\d+)", 15, stream="out").group(1)
        super().__init__(launched.popen, int(port))
        self.ps = psutil.Process(launched.pid)

    def job_url(self, delay: float = 0) -> str:
        """The URL of a job the target answers after `delay` seconds."""
        return self.url("/hook", **({"delay": f"{delay:g}"} if delay else {}))

    def reset(self) -> None:
        status, _ = request("POST", f"{self.base}/_reset")
        if status != 200:
            raise BenchError(f"target: /_reset answered {status}")

    def cpu_seconds(self) -> float:
        return cpu_seconds_of(self.ps)

    @contextlib.contextmanager
    def beside(self, ctx: Placement, cores: Cores) -> Iterator[None]:
        """While what is measured runs on `cores`: when that is both cores, the target may run
        on either too (it shares them), and is back on its own core afterwards."""
        shared = ctx.pinned and core_set(cores) == BOTH_CORES
        if shared:
            os.sched_setaffinity(self.proc.pid, BOTH_CORES)
        try:
            yield
        finally:
            if shared:
                os.sched_setaffinity(self.proc.pid, {TARGET_CORE})

    def received_times(self, since: int = 0) -> list[float]:
        """When (wall clock) each job request since the reset arrived, from the `since`-th on."""
        return [r["t"] for r in self.received(since)]

    def check(self, jobs: int) -> list[str]:
        """What is wrong with what the target received, if it was not every job exactly once."""
        s = self.stats()
        problems = []
        if s["count"] != jobs:
            problems.append(f"target received {s['count']} requests, expected {jobs}")
        if s["keys"] != jobs:
            problems.append(f"target saw {s['keys']} distinct Idempotency-Keys, expected {jobs}")
        return problems
