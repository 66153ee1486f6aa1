"""Deliveries and failures per minute over the last hour, for the console's chart.

Sixty counters in a ring, whatever the load: what the chart needs and no more. It
counts this daemon's attempts (on a shared Redis stream, each daemon draws its own).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gq.broker import Entry
from gq.core.outcome import AttemptResult, Outcome, Verdict
from gq.dispatch.observers import Quiet

MINUTES = 60


@dataclass(frozen=True, slots=True)
class Minute:
    start: float      # wall-clock seconds at the minute's start
    delivered: int    # attempts that succeeded
    failed: int       # attempts that failed (retried or dead)


class Activity(Quiet):
    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._minute = [-1] * MINUTES   # the minute (since the epoch) each slot counts
        self._delivered = [0] * MINUTES
        self._failed = [0] * MINUTES

    def attempted(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        minute = int(self.clock() // 60)
        slot = minute % MINUTES
        if self._minute[slot] != minute:  # an hour old, or never used: start it again
            self._minute[slot], self._delivered[slot], self._failed[slot] = minute, 0, 0
        if outcome.verdict is Verdict.SUCCESS:
            self._delivered[slot] += 1
        else:
            self._failed[slot] += 1

    def last_hour(self) -> list[Minute]:
        """The last MINUTES minutes, oldest first, the current one last (still counting)."""
        now = int(self.clock() // 60)
        minutes = []
        for minute in range(now - MINUTES + 1, now + 1):
            slot = minute % MINUTES
            counted = self._minute[slot] == minute
            minutes.append(Minute(minute * 60.0, self._delivered[slot] if counted else 0,
                                  self._failed[slot] if counted else 0))
        return minutes
