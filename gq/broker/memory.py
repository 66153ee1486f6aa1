"""The in-memory broker, used when `journal.path = ""`: a crash loses what it holds.

It keeps no backlog beyond the queue: the intake waits for queue room (and
`journal.max_backlog` bounds the unfinished jobs, retries included).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable

from gevent.event import Event

from gq.broker import (
    UNFINISHED,
    Added,
    Counts,
    Entry,
    InProcess,
    State,
    drop_payload,
    record,
)
from gq.broker.memory_operations import MemoryOperations
from gq.broker.memory_parts import AuditRows, Finished, KeyLines, Waiting
from gq.broker.sections import JournalConfig
from gq.core.job import Job
from gq.core.lifecycle import Event as JobEvent
from gq.core.lifecycle import allows
from gq.core.outcome import AttemptResult, Outcome, Verdict
from gq.errors import BacklogFull

KEEP_FINISHED = 10000  # succeeded jobs remembered for status look-ups and duplicate detection


class MemoryBroker(MemoryOperations, AuditRows, InProcess):
    """Jobs of an ordering key wait behind the one of it that runs or waits to (KeyLines),
    counted as queued, until it finishes; jobs not due yet wait in a heap (Waiting). An
    operator's cancels, replays, purges and finds are MemoryOperations'."""

    backlog = False

    @classmethod
    def from_config(cls, journal: JournalConfig, *, batch: bool = False) -> MemoryBroker:
        """Memory only, kept by the journal's limits ([journal] with path = ""); for `gq batch`,
        no succeeded job is remembered (nobody looks them up)."""
        return cls(keep_finished=0 if batch else KEEP_FINISHED, max_backlog=journal.max_backlog,
                   keep_seconds=journal.keep_succeeded, keep_payload=journal.keep_succeeded_payload)

    def __init__(self, clock: Callable[[], float] = time.time, keep_finished: int = KEEP_FINISHED,
                 max_backlog: int = 10_000_000, keep_seconds: float = float("inf"), keep_payload: bool = False):
        """`keep_finished` and `keep_seconds` (journal.keep_succeeded): succeeded and
        cancelled jobs are remembered, for look-ups and as duplicates, that many at most and
        that long at most; `keep_payload` (journal.keep_succeeded_payload): a succeeded job
        keeps its body meanwhile (it can be replayed), else drops it as the journal does."""
        self.clock = clock
        self.keep_payload = keep_payload
        self.max_backlog = max_backlog
        self._entries: dict[str, Entry] = {}
        self._finished = Finished(clock, keep_finished, keep_seconds)
        self._seq = itertools.count()
        self._lines = KeyLines()
        self._waiting = Waiting(self._seq)
        self._wakeup = Event()
        self._counts = Counts()
        AuditRows.__init__(self)  # keep_action, actions: the newest AUDIT_KEEP in memory

    # -- intake

    def add(self, jobs: Iterable[Job], hold: int = 0) -> Added:
        """New entries for the jobs whose id is not known, the first `hold` to run at once
        (the others wait here for `take`); raises BacklogFull when they would take the
        unfinished jobs past max_backlog."""
        new: dict[str, Job] = {}
        duplicates = []
        self._forget()
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
        fresh = [Entry(job, accepted_at=now, handle=next(self._seq)) for job in new.values()]
        at_once: list[Entry] = []
        for entry in fresh:
            self._entries[entry.job.id] = entry
            self._counts.arrived(entry.state)
            if self._lines.join(entry):
                continue
            if (entry.job.run_at or 0.0) > now:
                self._hold(entry, entry.job.run_at or 0.0, State.SCHEDULED)
            elif len(at_once) < hold:
                at_once.append(entry)
            else:
                self._hold(entry, now, State.QUEUED)
        return Added(at_once, duplicates, len(fresh) - len(at_once))

    # -- dispatch

    def take(self, limit: int, timeout: float) -> list[Entry]:
        taken = self._due(limit)
        if not taken and timeout > 0:
            due = self._waiting.next_due()
            if due is not None:
                timeout = max(0.0, min(timeout, due - self.clock()))
            self._wakeup.wait(timeout)
            self._wakeup.clear()
            taken = self._due(limit)
        return taken

    def _due(self, limit: int) -> list[Entry]:
        taken = self._waiting.due(self.clock(), limit, self._entries.get)
        for entry in taken:
            self._counts.move(entry, State.QUEUED)
        return taken

    def started(self, entry: Entry) -> None:
        """Nothing for a job cancelled while it waited in the dispatcher's hands: its state
        says so, and it is not attempted."""
        if allows(JobEvent.STARTED, entry.state):
            entry.attempts += 1
            self._counts.move(entry, State.RUNNING)

    def settle(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        record(entry, result)
        if outcome.verdict is Verdict.SUCCESS:
            drop_payload(entry, self.keep_payload)
            self._counts.move(entry, State.SUCCEEDED)
            self._remember_finished(entry)
        elif outcome.verdict is Verdict.FAIL:
            entry.reason = outcome.reason
            self._counts.move(entry, State.DEAD)
            self._release(entry)
        else:
            self._hold(entry, self.clock() + outcome.delay, State.RETRYING)

    def defer(self, entry: Entry, due: float) -> None:
        """Back to waiting until `due`; a job cancelled meanwhile is not (it is final)."""
        if allows(JobEvent.DEFERRED, entry.state):
            self._hold(entry, due, State.QUEUED)

    def _hold(self, entry: Entry, due: float, state: State) -> None:
        """Keep `entry` here, in `state`, until `take` finds it due."""
        entry.due = due
        self._counts.move(entry, state)
        self._waiting.push(entry)
        self._wakeup.set()

    def _remember_finished(self, entry: Entry) -> None:
        """A job succeeded or cancelled: its key goes on; it is kept for look-ups a while."""
        self._release(entry)
        for job_id in self._finished.add(entry.job.id):
            self._drop(job_id)

    def _forget(self) -> None:
        for job_id in self._finished.expired():
            self._drop(job_id)

    def _release(self, entry: Entry) -> None:
        """`entry` finished: the next job of its key, if it was its key's head, is let go."""
        head = self._lines.leave(entry)
        if head is not None:
            run_at, now = head.job.run_at or 0.0, self.clock()
            self._hold(head, max(run_at, now), State.SCHEDULED if run_at > now else State.QUEUED)

    def _drop(self, job_id: str) -> None:
        """Forget a job: a succeeded or cancelled one past the window, or a purged dead letter."""
        self._counts.shift(self._entries.pop(job_id).state, None)

    # -- look-ups

    def get(self, job_id: str) -> Entry | None:
        self._forget()
        return self._entries.get(job_id)

    def counts(self) -> dict[str, int]:
        return self._counts.shown()

    def health(self) -> str | None:
        return None

    def oldest_accepted(self) -> float | None:
        """When the oldest unfinished job that is due was accepted (entries are kept in the
        order they came; a scheduled job is not late)."""
        return next((e.accepted_at for e in self._entries.values()
                     if e.state in UNFINISHED and e.state is not State.SCHEDULED), None)

    def stored_bytes(self) -> int:
        return 0

    def ledger(self) -> dict[str, int]:
        self._forget()
        return dict(self._counts.ledger)

    def close(self) -> None:
        pass
