"""The journal's one writer: everything that changed since the last commit (new jobs,
attempts started, outcomes, deletions) committed in one transaction, off the hub, so
that concurrent intakes share each commit (group commit).

A failed write fails its own adds only (nothing of them is in memory); the state
changes it carried wait for the next write.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from gevent.event import AsyncResult, Event

from gq.broker import Added, Entry, State
from gq.broker.journal_file import FINAL, JournalFile, state_row
from gq.broker.storage import StorageGuard
from gq.core.job import Job
from gq.errors import StorageUnavailable

log = logging.getLogger("gq.journal")

WAITING = (State.QUEUED, State.RETRYING)   # states of jobs that wait in the file
FAILED_WRITE_PAUSE = 0.5  # seconds the writer waits after a failed write: a failing disk, no spinning


class Add:
    """One `add` call waiting for the commit that carries its jobs."""

    __slots__ = ("done", "hold", "jobs")

    def __init__(self, jobs: list[Job], hold: int):
        self.jobs = jobs
        self.hold = hold
        self.done: AsyncResult = AsyncResult()


class Commits(Protocol):
    """What the writer asks and tells the broker it writes for."""

    def budget(self) -> int:
        """New jobs the backlog may still take."""

    def accepted(self, request: Add, fate: list[str] | None, accepted_at: float) -> int:
        """Answer `request`, committed (`fate` None: refused, the backlog full); returns how
        many of its jobs wait in the file."""

    def wrote(self, stored: int, dues: list[float], written_at: float, released: list[str]) -> None:
        """A commit stored `stored` new jobs in the file, made jobs wait until `dues`, and let
        jobs go from behind their ordering key (`released`: the state each has now)."""


class JournalWriter:
    def __init__(self, call: Callable[..., Any], guard: StorageGuard, broker: Commits, keep_payload: bool = False):
        self._call = call       # call(JournalFile.method, *args) on the writer's connection, off the hub
        self.guard, self.broker = guard, broker
        self.keep_payload = keep_payload  # a succeeded job keeps its body (it may be replayed)
        self._dirty: dict[str, Entry] = {}     # changes not yet written
        self._writing: dict[str, Entry] = {}   # changes being written now
        self._deleted: set[str] = set()
        self._keys: set[str] = set()           # ordering keys of deleted jobs
        self._done: list[str] = []
        self._adding: list[Add] = []
        self._starting: list[AsyncResult] = []  # commit() calls waiting for a commit
        self._wake = Event()    # there is work
        self._stop = Event()

    def pending(self, job_id: str) -> Entry | None:
        """The job as changed here, not yet in the file."""
        return self._dirty.get(job_id) or self._writing.get(job_id)

    def add(self, jobs: list[Job], hold: int) -> Added:
        """Returns once `jobs` are committed (see JournalBroker.add)."""
        request = Add(jobs, hold)
        self._adding.append(request)
        self._wake.set()
        return request.done.get()

    def change(self, entry: Entry) -> None:
        self._dirty[entry.job.id] = entry
        self._wake.set()

    def forget(self, job: Job) -> None:
        """Delete the job's row."""
        self._dirty.pop(job.id, None)
        self._deleted.add(job.id)
        if job.ordering_key is not None:
            self._keys.add(job.ordering_key)
        self._wake.set()

    def done(self, job_id: str) -> None:
        """Keep only the id of a batch's succeeded job."""
        self._done.append(job_id)

    def commit(self, entry: Entry) -> bool:
        """Write `entry` and return once the write was tried (an attempt's start, a cancel):
        True when it is committed, False when the write failed (the change stays pending,
        written with the next write that succeeds)."""
        self.change(entry)
        committed = AsyncResult()
        self._starting.append(committed)
        return bool(committed.get())

    def run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            self.flush()

    def stop(self) -> None:
        """`run` returns after the commit under way, if any."""
        self._stop.set()
        self._wake.set()

    def flush(self) -> None:
        """Commit everything pending now, in one transaction; wakes the add() and commit()
        calls it covers."""
        self._writing, self._dirty = self._dirty, {}
        deleted, self._deleted = self._deleted, set()
        keys, self._keys = self._keys, set()
        done, self._done = self._done, []
        adding, self._adding = self._adding, []
        starting, self._starting = self._starting, []
        if not (self._writing or deleted or done or adding):
            self._release(starting)
            return
        accepted_at = time.time()
        rows = [(a.jobs, a.hold) for a in adding]
        changed = [state_row(e, self.keep_payload) for e in self._writing.values()]
        keys |= {e.job.ordering_key for e in self._writing.values()
                 if e.job.ordering_key is not None and e.state.value in FINAL}
        try:
            fates, released = self._call(JournalFile.write, rows, self.broker.budget(), accepted_at, changed,
                                         deleted, done, keys)
            self.guard.look()  # a file deleted before this commit: its adds are not stored
            if self.guard.gone:
                raise OSError("the journal file was deleted or replaced")
        except Exception as e:  # the writer must live on: a failed write fails its own adds only
            self._failed(e, adding, deleted, done, keys)
            self._release(starting, False)  # an attempt goes on: its start is written with the next write
            self._stop.wait(FAILED_WRITE_PAUSE)
            return
        stored = sum([self.broker.accepted(request, fate, accepted_at) for request, fate in zip(adding, fates)])
        self.broker.wrote(stored, [e.due for e in self._writing.values() if e.state in WAITING], accepted_at,
                          released)
        self._writing = {}
        self._release(starting)
        self.guard.wrote()

    def _failed(self, error: Exception, adding: list[Add], deleted: set[str], done: list[str],
                keys: set[str]) -> None:
        self.guard.write_failed(error)
        refusal = StorageUnavailable(f"journal: write failed: {error}")
        log.error("%s; %d job(s) refused, state changes kept for the next write", refusal,
                  sum(len(a.jobs) for a in adding))
        for job_id, entry in self._writing.items():
            self._dirty.setdefault(job_id, entry)
        self._writing = {}
        self._deleted |= deleted
        self._keys |= keys
        self._done[:0] = done
        for request in adding:
            request.done.set_exception(refusal)

    @staticmethod
    def _release(waiters: list[AsyncResult], committed: bool = True) -> None:
        for waiter in waiters:
            waiter.set(committed)
