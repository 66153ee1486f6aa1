"""What a benchmark invocation carries from run to run (Context), and the record of one run (Run)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from harness.target import BenchTarget

QUIET_WAIT, QUIET_PCT = 10.0, 20.0  # before each measured run: wait up to 10 s for both cores < 20% busy
DISTURBED_PCT = 10.0                # a run during which others used more of core 0 is flagged (and re-run)


@dataclass
class Context:
    workdir: Path
    quick: bool
    pinned: bool
    env: dict[str, str]
    deadline: float = float("inf")   # for measuring a disturbed run again, not a hard stop
    target: BenchTarget | None = None
    counter: int = 0
    runs: dict[str, Run] = field(default_factory=dict)   # delivery runs by label, for later scenarios

    def scaled(self, jobs: int) -> int:
        return jobs // 10 if self.quick else jobs

    def name(self, label: str) -> str:
        """A unique name for a run's files in the work dir."""
        self.counter += 1
        return f"{self.counter:02d}-{label}"

    def quiet(self) -> float:
        """Wait (a few seconds at most, within the time budget) for a moment when other
        processes leave both cores alone: the machine may be shared. Returns the seconds waited."""
        started = time.monotonic()
        limit = min(QUIET_WAIT / 3 if self.quick else QUIET_WAIT, self.deadline - started)
        while time.monotonic() - started < limit:
            if max(psutil.cpu_percent(interval=0.5, percpu=True)[:2]) < QUIET_PCT:
                break
        return round(time.monotonic() - started, 1)

    def least_disturbed(self, measure_once: Callable[[], Run]) -> Run:
        """Measure; if other processes took more than DISTURBED_PCT of the measured core and
        the time budget allows, measure once more, and keep the less disturbed of the two."""
        started = time.monotonic()
        run = measure_once()
        spent = time.monotonic() - started
        if (run.others_pct or 0) > DISTURBED_PCT and time.monotonic() + 1.5 * spent < self.deadline:
            again = measure_once()
            again.extra["others_pct_of_discarded_run"] = run.others_pct
            if (again.others_pct or 0) < run.others_pct:
                run = again
        return run

    def run_bound(self, jobs: int) -> float:
        """Seconds a delivery run may take before it is stopped and reported FAILED."""
        return 60 + jobs / 100


@dataclass
class Run:
    """One measured process."""

    label: str
    jobs: int
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    jobs_per_s: float | None = None
    cpu_us_per_job: float | None = None
    max_rss_mb: float | None = None
    seconds: float | None = None
    others_pct: float | None = None    # the measured core's (cores') time used by other processes
    target_cpu_pct: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)
