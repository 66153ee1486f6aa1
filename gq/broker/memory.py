"""The in-memory broker, used when `journal.path = ""`: a crash loses what it holds.

It keeps no backlog beyond the queue: the intake waits for queue room (and
`journal.max_backlog` bounds the unfinished jobs, retries included).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import OrderedDict
from collections.abc import Iterable

from gevent.event import Event

from gq.broker import UNFINISHED, Added, Counts, Entry, State, record
from gq.errors import BacklogFull
from gq.job import Job
from gq.outcome import AttemptResult, Outcome, Verdict

KEEP_FINISHED = 10000  # succeeded jobs remembered for status look-ups and duplicate detection


class MemoryBroker:
    backlog = False

    def __init__(self, clock=time.time, keep_finished: int = KEEP_FINISHED, max_backlog: int = 10_000_000):
        self.clock = clock
        self.keep_finished = keep_finished
        self.max_backlog = max_backlog
        self._entries: dict[str, Entry] = {}
        self._succeeded: OrderedDict[str, None] = OrderedDict()  # oldest first, for pruning
        self._waiting: list[tuple[float, int, str]] = []        # (due, seq, id): held here, not queued
        self._seq = itertools.count()
        self._wakeup = Event()
        self._counts = Counts()

    # -- intake

    def add(self, jobs: Iterable[Job], hold: int = 0) -> Added:
        """New entries for the jobs whose id is not known, the first `hold` to run at once
        (the others wait here for `take`); raises BacklogFull when they would take the
        unfinished jobs past max_backlog."""
        new: dict[str, Job] = {}
        duplicates = []
        for job in jobs:
            if job.id in self._entries or job.id in new:
                duplicates.append(job.id)
            else:
                new[job.id] = job
        unfinished = self._counts.unfinished()
        if new and unfinished + len(new) > self.max_backlog:
            raise BacklogFull(f"backlog full: {unfinished} unfinished jobs, journal.max_backlog "
                              f"({self.max_backlog}) at most; try again once some are delivered")
        now = self.clock()
        fresh = [Entry(job, accepted_at=now) for job in new.values()]
        for entry in fresh:
            self._entries[entry.job.id] = entry
        self._counts.by_state[State.QUEUED] += len(fresh)
        for entry in fresh[hold:]:
            self._hold(entry, now, State.QUEUED)
        return Added(fresh[:hold], duplicates, len(fresh[hold:]))

    # -- dispatch

    def take(self, limit: int, timeout: float) -> list[Entry]:
        taken = self._due(limit)
        if not taken and timeout > 0:
            if self._waiting:
                timeout = max(0.0, min(timeout, self._waiting[0][0] - self.clock()))
            self._wakeup.wait(timeout)
            self._wakeup.clear()
            taken = self._due(limit)
        return taken

    def _due(self, limit: int) -> list[Entry]:
        taken: list[Entry] = []
        now = self.clock()
        while self._waiting and len(taken) < limit and self._waiting[0][0] <= now:
            _, _, job_id = heapq.heappop(self._waiting)
            entry = self._entries.get(job_id)
            if entry is not None and entry.state in (State.QUEUED, State.RETRYING):
                self._move(entry, State.QUEUED)
                taken.append(entry)
        return taken

    def started(self, entry: Entry) -> None:
        entry.attempts += 1
        self._move(entry, State.RUNNING)

    def settle(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        record(entry, result)
        if outcome.verdict is Verdict.SUCCESS:
            self._move(entry, State.SUCCEEDED)
            self._remember_success(entry.job.id)
        elif outcome.verdict is Verdict.FAIL:
            entry.reason = outcome.reason
            self._move(entry, State.DEAD)
        else:
            self._hold(entry, self.clock() + outcome.delay, State.RETRYING)

    def defer(self, entry: Entry, due: float) -> None:
        self._hold(entry, due, State.QUEUED)

    def _hold(self, entry: Entry, due: float, state: State) -> None:
        """Keep `entry` here, in `state`, until `take` finds it due."""
        entry.due = due
        self._move(entry, state)
        heapq.heappush(self._waiting, (due, next(self._seq), entry.job.id))
        self._wakeup.set()

    def _move(self, entry: Entry, state: State) -> None:
        self._counts.move(entry, state)

    def _remember_success(self, job_id: str) -> None:
        self._succeeded[job_id] = None
        while len(self._succeeded) > self.keep_finished:
            old, _ = self._succeeded.popitem(last=False)
            self._drop(old)

    def _drop(self, job_id: str) -> None:
        """Forget a job: a succeeded one past the window, or a purged dead letter."""
        del self._entries[job_id]

    # -- look-ups

    def get(self, job_id: str) -> Entry | None:
        return self._entries.get(job_id)

    def counts(self) -> dict[str, int]:
        return self._counts.shown()

    def health(self) -> str | None:
        return None

    def oldest_accepted(self) -> float | None:
        """When the oldest unfinished job was accepted (entries are kept in the order they came)."""
        return next((e.accepted_at for e in self._entries.values() if e.state in UNFINISHED), None)

    def stored_bytes(self) -> int:
        return 0

    # -- dead letters

    def dead_letters(self) -> list[Entry]:
        return [e for e in self._entries.values() if e.state is State.DEAD]

    def _pick_dead(self, ids: Iterable[str] | None) -> list[Entry]:
        if ids is None:
            return self.dead_letters()
        picked = (self._entries.get(i) for i in dict.fromkeys(ids))  # each id once
        return [e for e in picked if e is not None and e.state is State.DEAD]

    def replay(self, ids: Iterable[str] | None) -> list[str]:
        replayed = []
        for entry in self._pick_dead(ids):
            entry.attempts, entry.reason = 0, ""
            self._hold(entry, 0.0, State.QUEUED)
            replayed.append(entry.job.id)
        return replayed

    def purge(self, ids: Iterable[str] | None) -> list[str]:
        purged = []
        for entry in self._pick_dead(ids):
            self._counts.by_state[State.DEAD] -= 1
            self._drop(entry.job.id)
            purged.append(entry.job.id)
        return purged

    def close(self) -> None:
        pass
