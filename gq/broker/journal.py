"""The embedded broker: a SQLite file (WAL) that is the backlog.

Jobs wait in the file, not in memory: the dispatcher's feeder reads the due
ones in small batches as the queue makes room (`take`, by the jobs_due index),
and memory holds only the jobs taken from it (queued, parked or in flight here)
and a read-ahead of READ_AHEAD. Retries wait in the file on their own schedule;
dead letters and succeeded jobs (for `journal.keep_succeeded`) are rows of it.

Every accepted job is committed before `add` returns, so a 202 survives a
crash; duplicates are found by the file's primary key, so an id is a duplicate
only once its first commit succeeded. An attempt's start is committed before
the attempt; its outcome is written behind (a crash may lose the last few,
which at worst runs a job once more: at-least-once, same Idempotency-Key). One
writer greenlet commits everything pending in one transaction, in gevent's
threadpool, so the hub keeps serving while SQLite waits on the disk, and
concurrent intakes share each commit (group commit).

Only one process runs jobs from a journal: the daemon holds an exclusive lock
on `PATH.lock`. `gq dlq` commands work on the file directly when no daemon
holds the lock, and through the `control` table (polled by the daemon) when one
does.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import gevent
from gevent.event import AsyncResult, Event
from gevent.lock import BoundedSemaphore

from gq.broker import Added, Counts, Entry, State, record
from gq.broker.journal_file import JournalError, JournalFile, state_row
from gq.broker.storage import StorageGuard
from gq.errors import BacklogFull, StorageUnavailable
from gq.job import Job
from gq.outcome import AttemptResult, Outcome, Verdict
from gq.supervisor import Supervisor

log = logging.getLogger("gq.journal")

READ_AHEAD = 256      # jobs read from the file at a time, held until the queue has room
CONTROL_POLL = 0.5    # seconds between looks for dlq commands from other processes
EXPIRE_EVERY = 1.0    # seconds between deletions of succeeded jobs past keep_succeeded
EXPIRE_STEP = 500     # rows deleted per transaction, so that a commit never waits long for it
FAILED_WRITE_PAUSE = 0.5  # seconds the writer waits after a failed write: a failing disk, no spinning

def _size(path: str) -> int:
    """A file's size; 0 when it is not there (the -wal between checkpoints, a file deleted)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _captured(function: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
    """Run in a thread of the pool: an exception comes back as a value (gevent's threadpool
    would also print it, with a traceback, as an error of its own)."""
    try:
        return True, function(*args)
    except Exception as e:  # raised again by the caller, in its greenlet
        return False, e


class JournalLock:
    """An exclusive lock on `PATH.lock`: held by the one process that runs the journal's jobs."""

    def __init__(self, path: str):
        self.path = path + ".lock"
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def try_acquire(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        os.close(self.fd)


class _Add:
    """One `add` call waiting for the commit that carries its jobs."""

    __slots__ = ("done", "hold", "jobs")

    def __init__(self, jobs: list[Job], hold: int):
        self.jobs = jobs
        self.hold = hold
        self.done: AsyncResult = AsyncResult()


class JournalBroker:
    """The backlog in a JournalFile; in memory, only what runs here soon.

    For `gq batch` (`batch=True`), which answers no look-ups, a job of the batch that
    succeeds is deleted at once and only its id is kept (`done`): the batch run again
    skips every job that succeeded.

    Each connection is used by one thread at a time (`_call`): SQLite transactions on one
    connection from two threads would interleave. Look-ups use a connection of their own,
    so that they do not wait for the writer's commits."""

    backlog = True

    def __init__(self, path: str, batch: bool = False, max_backlog: int = 10_000_000, min_free_mb: int = 256,
                 keep_succeeded: float = 3600.0, supervisor: Supervisor | None = None):
        self.batch = batch
        self.max_backlog = max_backlog
        self.keep_succeeded = keep_succeeded
        self.lock = JournalLock(path)
        if not self.lock.try_acquire():
            self.lock.release()
            raise JournalError(f"journal: {path} is in use by another gq process")
        self.file = JournalFile(path)
        self.reader = JournalFile(path, reader=True)
        self.guard = StorageGuard(path, min_free_mb)
        self._threadpool = gevent.get_hub().threadpool
        self._locks = {self.file: BoundedSemaphore(), self.reader: BoundedSemaphore()}
        self._held: dict[str, Entry] = {}      # taken from the file: read ahead, queued or running here
        self._ahead: deque[Entry] = deque()    # taken, not yet handed to the dispatcher
        self._dirty: dict[str, Entry] = {}     # changes not yet written
        self._writing: dict[str, Entry] = {}   # changes being written now
        self._deleted: set[str] = set()
        self._done: list[str] = []
        self._adding: list[_Add] = []
        self._starting: list[AsyncResult] = []  # started() calls waiting for a commit
        self._writes = 0                # commits so far that may have made a job due sooner
        self._wake = Event()            # the writer has work
        self._due = Event()             # a job may be due in the file sooner than thought
        self._stop = Event()
        # _next_due: when the file's next waiting job is due (-inf: look at the file)
        counts, running, self._next_due = self.file.recover()
        self._counts = Counts(counts)
        for entry in running:  # their attempt was under way when the last process ended
            entry.interrupted = True
            self._counts.move(entry, State.QUEUED)
            self._keep(entry)
        self.recovered = self._counts.unfinished()
        supervisor = supervisor or Supervisor()
        self._loops = [supervisor.spawn("journal writer", self._write_loop),
                       supervisor.spawn("journal control poll", self._control_loop)]
        if keep_succeeded and not batch:
            self._loops.append(supervisor.spawn("journal expiry", self._expire_loop))

    def _call(self, connection: JournalFile, function: Callable[..., Any], *args: Any) -> Any:
        """`function(connection, *args)` in the threadpool, one call per connection at a time;
        what it raises is raised here."""
        with self._locks[connection]:
            ok, value = self._threadpool.apply(_captured, (function, connection) + args)
        if not ok:
            raise value
        return value

    # -- intake

    def add(self, jobs: Iterable[Job], hold: int = 0) -> Added:
        """Returns once the new jobs are committed to the file. Up to `hold` of them are
        returned to run at once, unless older jobs wait in the file (they go first). Raises
        BacklogFull past max_backlog, StorageUnavailable when the storage cannot take them
        (see StorageGuard) or the commit fails."""
        problem = self.guard.problem()
        if problem:
            raise StorageUnavailable(problem)
        if self._ahead or self._next_due <= time.time():
            hold = 0
        request = _Add(list(jobs), hold)
        self._adding.append(request)
        self._wake.set()
        return request.done.get()

    def get(self, job_id: str) -> Entry | None:
        """From memory when it runs here soon, else from the file (off the hub)."""
        for place in (self._held, self._dirty, self._writing):
            if job_id in place:
                return place[job_id]
        return self._call(self.reader, JournalFile.get, job_id)

    def counts(self) -> dict[str, int]:
        return self._counts.shown()

    def health(self) -> str | None:
        return self.guard.problem()

    # -- dispatch

    def take(self, limit: int, timeout: float) -> list[Entry]:
        if not self._ahead:
            self._read_ahead()
        if not self._ahead and timeout > 0:
            self._due.wait(max(0.0, min(timeout, self._next_due - time.time())))
            self._due.clear()
            self._read_ahead()
        return [self._ahead.popleft() for _ in range(min(limit, len(self._ahead)))]

    def _read_ahead(self) -> None:
        now = time.time()
        if self._next_due > now:
            return
        writes = self._writes
        try:
            entries, unreadable, next_due = self._call(self.file, JournalFile.take, READ_AHEAD, now)
        except (sqlite3.Error, OSError) as e:
            log.warning("journal: cannot read due jobs: %s; will try again", e)
            self._stop.wait(FAILED_WRITE_PAUSE)
            return
        for state in unreadable:
            log.error("journal: a job could not be read back from the file; kept as a dead letter")
            self._counts.by_state[State(state)] -= 1
            self._counts.by_state[State.DEAD] += 1
        for entry in entries:
            self._counts.move(entry, State.QUEUED)  # a due retry is queued again
            self._keep(entry)
        # A commit meanwhile may have made a job due sooner than the file said: look again.
        more = len(entries) + len(unreadable) == READ_AHEAD or writes != self._writes
        self._next_due = float("-inf") if more else next_due

    def _keep(self, entry: Entry) -> None:
        self._held[entry.job.id] = entry
        self._ahead.append(entry)

    def started(self, entry: Entry) -> None:
        """Returns once the attempt is committed: a job whose attempts crash or freeze the
        process uses them up like any other."""
        entry.attempts += 1
        self._counts.move(entry, State.RUNNING)
        self._changed(entry)
        committed = AsyncResult()
        self._starting.append(committed)
        committed.get()

    def settle(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        record(entry, result)
        self._held.pop(entry.job.id, None)
        if outcome.verdict is Verdict.SUCCESS:
            self._counts.move(entry, State.SUCCEEDED)
            if self.batch:  # only its id is kept
                self._forget(entry.job.id)
                self._done.append(entry.job.id)
                return
            if not self.keep_succeeded:
                self._forget(entry.job.id)
                return
        elif outcome.verdict is Verdict.FAIL:
            entry.reason = outcome.reason
            self._counts.move(entry, State.DEAD)
        else:
            entry.due = time.time() + outcome.delay
            self._counts.move(entry, State.RETRYING)
        self._changed(entry)

    def defer(self, entry: Entry, due: float) -> None:
        """Back to the file, unattempted, until `due`."""
        self._held.pop(entry.job.id, None)
        entry.due = due
        self._changed(entry)

    def _changed(self, entry: Entry) -> None:
        self._dirty[entry.job.id] = entry
        self._wake.set()

    def _forget(self, job_id: str) -> None:
        self._dirty.pop(job_id, None)
        self._deleted.add(job_id)
        self._wake.set()

    # -- gauges

    def oldest_accepted(self) -> float | None:
        try:
            return self._call(self.reader, JournalFile.oldest)
        except sqlite3.Error:
            return None

    def stored_bytes(self) -> int:
        return sum(_size(self.file.path + suffix) for suffix in ("", "-wal", "-shm"))

    # -- dead letters

    def dead_letters(self) -> list[Entry]:
        return self._call(self.reader, lambda f: list(f.dead_letters()))

    def replay(self, ids: Iterable[str] | None) -> list[str]:
        replayed = self._call(self.file, JournalFile.replay, None if ids is None else list(ids))
        self._counts.by_state[State.DEAD] -= len(replayed)
        self._counts.by_state[State.QUEUED] += len(replayed)
        self._next_due = float("-inf")
        self._due.set()
        return replayed

    def purge(self, ids: Iterable[str] | None) -> list[str]:
        purged = self._call(self.file, JournalFile.purge, None if ids is None else list(ids))
        self._counts.by_state[State.DEAD] -= len(purged)
        return purged

    def batch_done(self, ids: Iterable[str], forget_others: bool = False) -> set[str]:
        """See JournalFile.batch_done."""
        return self._call(self.file, JournalFile.batch_done, ids, forget_others)

    # -- the writer

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Commit everything pending now, in one transaction; wakes the add() and started()
        calls it covers."""
        self._writing, self._dirty = self._dirty, {}
        deleted, self._deleted = self._deleted, set()
        done, self._done = self._done, []
        adding, self._adding = self._adding, []
        starting, self._starting = self._starting, []
        if not (self._writing or deleted or done or adding):
            self._release(starting)
            return
        accepted_at = time.time()
        budget = self.max_backlog - self._counts.unfinished()
        rows = [([(job.id, job.to_json()) for job in a.jobs], a.hold) for a in adding]
        changed = [state_row(e) for e in self._writing.values()]
        try:
            fates = self._call(self.file, JournalFile.write, rows, budget, accepted_at, changed, deleted, done)
            self.guard.look()  # a file deleted before this commit: its adds are not stored
            if self.guard.gone:
                raise OSError("the journal file was deleted or replaced")
        except Exception as e:  # the writer must live on: a failed write fails its own adds only
            self._failed(e, adding, deleted, done)
            self._release(starting)  # the attempts go on: their state is written with the next write
            self._stop.wait(FAILED_WRITE_PAUSE)
            return
        stored = sum([self._accepted(request, fate, accepted_at) for request, fate in zip(adding, fates)])
        waiting = [e.due for e in self._writing.values() if e.state in (State.QUEUED, State.RETRYING)]
        if stored or waiting:  # jobs wait in the file now: the feeder looks again
            self._writes += 1
            self._next_due = min([self._next_due, *waiting] + ([accepted_at] if stored else []))
            self._due.set()
        self._writing = {}
        self._release(starting)
        self.guard.wrote()

    def _accepted(self, request: _Add, fate: list[str] | None, accepted_at: float) -> int:
        """Answer an add whose write committed; returns how many of its jobs wait in the file."""
        if fate is None:
            unfinished = self._counts.unfinished()
            request.done.set_exception(BacklogFull(
                f"backlog full: {unfinished} unfinished jobs, journal.max_backlog ({self.max_backlog}) "
                f"at most; try again once some are delivered"))
            return 0
        entries, duplicates, stored = [], [], 0
        for job, state in zip(request.jobs, fate):
            if not state:
                duplicates.append(job.id)
            elif state == "queued":
                stored += 1
            else:
                entry = Entry(job, accepted_at=accepted_at)
                self._held[job.id] = entry
                entries.append(entry)
        self._counts.by_state[State.QUEUED] += len(entries) + stored
        request.done.set(Added(entries, duplicates, stored))
        return stored

    def _failed(self, error: Exception, adding: list[_Add], deleted: set[str], done: list[str]) -> None:
        """A write failed: its adds are refused (nothing of them is in memory), its state
        changes are kept for the next write."""
        self.guard.write_failed(error)
        refusal = StorageUnavailable(f"journal: write failed: {error}")
        log.error("%s; %d job(s) refused, state changes kept for the next write", refusal,
                  sum(len(a.jobs) for a in adding))
        for job_id, entry in self._writing.items():
            self._dirty.setdefault(job_id, entry)
        self._writing = {}
        self._deleted |= deleted
        self._done[:0] = done
        for request in adding:
            request.done.set_exception(refusal)

    @staticmethod
    def _release(waiters: list[AsyncResult]) -> None:
        for waiter in waiters:
            waiter.set(True)

    # -- housekeeping

    def _control_loop(self) -> None:
        while not self._stop.wait(CONTROL_POLL):
            try:
                for seq, op, ids in self._call(self.file, JournalFile.requests):
                    done = self.replay(ids) if op == "replay" else self.purge(ids)
                    self._call(self.file, JournalFile.answered, seq, done)
                    log.info("dlq %s of %d job(s), as gq dlq asked", op, len(done))
            except sqlite3.Error as e:
                log.warning("journal: cannot read dlq commands: %s; will try again", e)

    def _expire_loop(self) -> None:
        """Succeeded jobs past keep_succeeded are deleted, a few at a time."""
        while not self._stop.wait(EXPIRE_EVERY):
            try:
                before = time.time() - self.keep_succeeded
                while self._call(self.file, JournalFile.expire, before, EXPIRE_STEP) == EXPIRE_STEP:
                    gevent.sleep(0)
            except sqlite3.Error as e:
                log.warning("journal: cannot delete expired succeeded jobs: %s; will try again", e)

    def close(self) -> None:
        """Stop the loops between writes, commit what is pending, release the file; jobs
        read ahead wait on disk again."""
        self._stop.set()
        self._wake.set()
        gevent.joinall(self._loops)
        self.flush()
        try:
            self._call(self.file, JournalFile.untake)
        except sqlite3.Error as e:  # opened again, the file puts them back itself
            log.warning("journal: %s", e)
        self.file.close()
        self.reader.close()
        self.lock.release()


class DeadLetterAdmin:
    """`gq dlq` on a journal: directly when no daemon holds it, through the daemon when one does."""

    WAIT = 10.0  # seconds to wait for a running daemon to carry out a command

    def __init__(self, path: str):
        if not os.path.exists(path):
            raise JournalError(f"journal: {path} does not exist (journal.path)")
        self.file = JournalFile(path)
        self.path = path

    def dead_letters(self) -> Iterator[Entry]:
        return self.file.dead_letters()

    def run(self, op: str, ids: list[str] | None) -> list[str]:
        lock = JournalLock(self.path)
        try:
            if lock.try_acquire():
                return getattr(self.file, op)(ids)
            seq = self.file.request(op, ids)
            deadline = time.monotonic() + self.WAIT
            while (done := self.file.answer(seq)) is None:
                if time.monotonic() > deadline:
                    raise JournalError(f"journal: the daemon running {self.path} did not answer within "
                                       f"{self.WAIT:g}s; the {op} will happen when it does")
                time.sleep(0.05)
            return done
        finally:
            lock.release()

    def close(self) -> None:
        self.file.close()
