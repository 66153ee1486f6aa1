"""The embedded broker: a SQLite file (WAL) that is the backlog.

Jobs wait in the file, not in memory: the dispatcher's feeder reads the due
ones in small batches as the queue makes room (`take`, by the jobs_due index),
and memory holds only the jobs taken from it (queued, parked or in flight here)
and a read-ahead of READ_AHEAD (journal_feed). Retries wait in the file on their
own schedule; dead letters and succeeded jobs (for `journal.keep_succeeded`) are rows of it.

Every accepted job is committed before `add` returns, so a 202 survives a
crash; duplicates are found by the file's primary key, so an id is a duplicate
only once its first commit succeeded. An attempt's start is committed before
the attempt; its outcome is written behind (a crash may lose the last few,
which at worst runs a job once more: at-least-once, same Idempotency-Key). One
writer greenlet commits everything pending in one transaction, in gevent's
threadpool, so the hub keeps serving while SQLite waits on the disk, and
concurrent intakes share each commit (group commit).

Only one process runs jobs from a journal: the daemon holds an exclusive lock
on `PATH.lock`. `gq dlq` and `gq jobs` (JournalAdmin) read the file directly and
change it directly when no daemon holds the lock (holding it meanwhile: a daemon
that starts then waits for them, see journal_access); when one does, `gq dlq` goes
through the `control` table (polled by the daemon) and `gq jobs` through the
daemon's API.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from functools import partial
from typing import Any

import gevent
from gevent.event import Event

from gq.broker import (
    REPLAYABLE,
    Added,
    Conflict,
    Counts,
    Entry,
    Filter,
    Found,
    InProcess,
    JobsAdmin,
    Replayed,
    State,
)
from gq.broker import journal_upkeep as upkeep
from gq.broker.journal_access import JournalAccess, JournalLock, Waiting
from gq.broker.journal_changes import JournalChanges
from gq.broker.journal_dispatch import JournalDispatch
from gq.broker.journal_feed import JournalFeed
from gq.broker.journal_file import TAKEN, JournalError, JournalFile, JournalMissing
from gq.broker.journal_lookups import found
from gq.broker.journal_operations import CANCELLABLE_ROWS
from gq.broker.journal_writer import Add, JournalWriter
from gq.broker.sections import JournalConfig
from gq.broker.storage import StorageGuard
from gq.core.audit import Audit, Position, dlq_done
from gq.core.job import Job
from gq.core.outcome import AttemptResult, Outcome
from gq.core.supervisor import Supervisor
from gq.errors import BacklogFull, StorageUnavailable

log = logging.getLogger("gq.journal")


def _size(path: str) -> int:
    """A file's size; 0 when it is not there (the -wal between checkpoints, a file deleted)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class JournalBroker(InProcess):
    """The backlog in a JournalFile; in memory, only what runs here soon.

    For `gq batch` (`batch=True`), which answers no look-ups, a job of the batch that
    succeeds is deleted at once and only its id is kept (`done`): the batch run again
    skips every job that succeeded. The file is reached through JournalAccess (off the
    hub, look-ups on a connection of their own), once a command that holds it is done
    (`waiting`: see journal_access.Waiting). What memory holds from the file, and the
    read-ahead of due jobs, are its `feed` (JournalFeed); the attempts of the jobs it hands
    the dispatcher its `dispatch` (JournalDispatch); an operator's cancels, replays and
    purges its `changes` (JournalChanges)."""

    backlog = True

    @classmethod
    def from_config(cls, journal: JournalConfig, supervisor: Supervisor | None = None, *, batch: bool = False,
                    waiting: Waiting | None = None) -> JournalBroker:
        """The journal [journal] names, its unfinished jobs recovered."""
        return cls(journal.path, batch=batch, max_backlog=journal.max_backlog, min_free_mb=journal.min_free_mb,
                   keep_succeeded=journal.keep_succeeded, supervisor=supervisor,
                   keep_payload=journal.keep_succeeded_payload, waiting=waiting)

    def __init__(self, path: str, batch: bool = False, max_backlog: int = 10_000_000, min_free_mb: int = 256,
                 keep_succeeded: float = 3600.0, supervisor: Supervisor | None = None, keep_payload: bool = False,
                 waiting: Waiting | None = None):
        self.max_backlog = max_backlog
        self.keep_succeeded = keep_succeeded
        self.db = JournalAccess(path, "gq batch" if batch else "gq run", waiting)
        self.guard = StorageGuard(path, min_free_mb)
        self.writer = JournalWriter(self.db.write, self.guard, self, keep_payload)
        self._stop = Event()
        ledger, running, next_due = self.db.write(JournalFile.recover)
        self._counts = Counts(ledger)
        self.feed = JournalFeed(self.db, self._counts, self._stop, next_due, running)
        self.dispatch = JournalDispatch(self.feed, self._counts, self.writer, batch, keep_succeeded)
        self.changes = JournalChanges(self.db, self._counts, self.feed, self.writer)
        self.audit: Audit | None = None  # the daemon's (Runtime sets it): records the dlq commands it carries out
        self.recovered = self._counts.unfinished()
        supervisor = supervisor or Supervisor()
        self._loops = [supervisor.spawn("journal writer", self.writer.run),
                       supervisor.spawn("journal control poll", partial(upkeep.answer_dlq, self, self._stop))]
        if not batch:  # keep_succeeded = 0 too: cancelled jobs go within a second
            self._loops.append(supervisor.spawn("journal expiry", partial(upkeep.expire, self, self._stop)))

    # -- intake

    def add(self, jobs: Iterable[Job], hold: int = 0) -> Added:
        """Returns once the new jobs are committed to the file. Up to `hold` of them are
        returned to run at once, unless older jobs wait in the file (they go first). Raises
        BacklogFull past max_backlog, StorageUnavailable when the storage cannot take them
        (see StorageGuard) or the commit fails."""
        problem = self.guard.problem()
        if problem:
            raise StorageUnavailable(problem)
        if self.feed.waiting():
            hold = 0
        return self.writer.add(list(jobs), hold)

    def budget(self) -> int:
        return self.max_backlog - self._counts.unfinished()

    def accepted(self, request: Add, fate: list[str] | None, accepted_at: float) -> int:
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
            elif state == TAKEN:
                entry = Entry(job, accepted_at=accepted_at)
                self.feed.held[job.id] = entry
                entries.append(entry)
                self._counts.arrived(State.QUEUED)
            else:  # it waits in the file: queued, scheduled, or blocked behind its key (queued)
                stored += 1
                self._counts.arrived(State.SCHEDULED if state == "scheduled" else State.QUEUED)
        request.done.set(Added(entries, duplicates, stored))
        return stored

    def wrote(self, stored: int, dues: list[float], written_at: float, released: list[str]) -> None:
        self.feed.wrote(stored, dues, written_at, released)

    def get(self, job_id: str) -> Entry | None:
        """From memory when it runs here soon, else from the file (off the hub)."""
        entry = self.feed.held.get(job_id) or self.writer.pending(job_id)
        return entry or self.db.read(JournalFile.get, job_id)

    def counts(self) -> dict[str, int]:
        return self._counts.shown()

    def ledger(self) -> dict[str, int]:
        """Of the journal's life: as the file had it at start, moved since as this broker
        moves its jobs (the file keeps its own: `gq verify`)."""
        return dict(self._counts.ledger)

    def expire(self, before: float, limit: int) -> int:
        """Forget up to `limit` succeeded or cancelled jobs that finished before `before`."""
        states = self.db.write(JournalFile.expire, before, limit)
        for state in states:
            self._counts.shift(State(state), None)
        return len(states)

    def health(self) -> str | None:
        return self.guard.problem()

    # -- dispatch (journal_dispatch)

    def take(self, limit: int, timeout: float) -> list[Entry]:
        return self.dispatch.take(limit, timeout)

    def started(self, entry: Entry) -> None:
        self.dispatch.started(entry)

    def settle(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        self.dispatch.settle(entry, result, outcome)

    def defer(self, entry: Entry, due: float) -> None:
        self.dispatch.defer(entry, due)

    # -- gauges

    def oldest_accepted(self) -> float | None:
        try:
            return self.db.read(JournalFile.oldest)
        except sqlite3.Error:
            return None

    def stored_bytes(self) -> int:
        return sum(_size(self.db.file.path + suffix) for suffix in ("", "-wal", "-shm"))

    def batch_ledger(self) -> JournalBroker:
        """gq.broker.Capabilities: a batch's ledger is the file's."""
        return self

    # -- operations

    def cancel(self, job_id: str) -> bool:
        """See JournalChanges.cancel."""
        return self.changes.cancel(job_id)

    def find(self, where: Filter, limit: int) -> Iterator[Found]:
        """From the file (off the hub), a few at a time; jobs in memory as last written."""
        return found(self.db.read, where, limit)

    def count(self, where: Filter, most: int) -> int:
        """The matching jobs' positions only, from the indexes: no job is read."""
        return len(self.db.read(JournalFile.positions, dataclasses.replace(where, after=None), most))

    def dead_letters(self) -> list[Entry]:
        return self.db.read(lambda f: list(f.dead_letters()))

    def replay(self, ids: Iterable[str] | None, states: Iterable[State] = (State.DEAD,)) -> Replayed:
        return self.changes.replay(ids, states)

    def purge(self, ids: Iterable[str] | None) -> list[str]:
        return self.changes.purge(ids)

    # -- the audit (gq.core.audit.AuditLog)

    def keep_action(self, row: dict[str, Any]) -> None:
        self.db.write(JournalFile.keep_action, row)

    def actions(self, limit: int, after: Position | None = None) -> list[tuple[dict[str, Any], Position]]:
        return self.db.read(JournalFile.actions, limit, after)

    def batch_done(self, ids: Iterable[str], forget_others: bool = False) -> set[str]:
        """See JournalFile.batch_done."""
        return self.db.write(JournalFile.batch_done, ids, forget_others)

    def close(self) -> None:
        """Stop the loops between writes, commit what is pending, release the file; jobs
        read ahead wait on disk again."""
        self._stop.set()
        self.writer.stop()
        gevent.joinall(self._loops)
        self.writer.flush()
        try:
            self.db.write(JournalFile.untake)
        except sqlite3.Error as e:  # opened again, the file puts them back itself
            log.warning("journal: %s", e)
        self.db.close()


class JournalAdmin:
    """`gq dlq` and `gq jobs` on a journal, from a process that does not run it (JobsAdmin,
    DeadLetters' look-ups).

    Look-ups read the file on a read-only connection (WAL lets it read while a daemon
    writes). Changes are made in the file when no daemon holds it, the file's lock then
    held until `close` (a daemon that starts meanwhile waits for it); when a daemon holds
    it, they go through that daemon, so that its memory and its metrics stay right: `gq
    dlq`'s through the control table it polls, `gq jobs`' through `daemon()`, its API."""

    WAIT = 10.0   # seconds to wait for a running daemon to carry out a dlq command
    PAGE = 1000   # jobs read (or replayed) at a time

    def __init__(self, path: str, hidden: frozenset[str] = frozenset(),
                 daemon: Callable[[], JobsAdmin] | None = None, command: str = "gq jobs"):
        """`hidden`: header names whose values are redacted besides the usual ones;
        `daemon`: the API of the daemon that holds the journal, asked for when one does;
        `command`: this one, as named to a daemon that waits for the file meanwhile."""
        if not os.path.exists(path):
            raise JournalMissing(f"journal: {path} does not exist (journal.path)")
        self.path, self.hidden, self._daemon, self.command = path, hidden, daemon, command
        self.reader = JournalFile(path, reader=True)
        self._lock: JournalLock | None = None
        self._writer: JournalFile | None = None   # while the lock is held
        self._through: JobsAdmin | None = None    # the daemon that holds the file
        self.audit = Audit(self)  # what it changes in the file itself (a daemon records its own)

    # -- look-ups

    def dead_letters(self) -> Iterator[Entry]:
        return self.reader.dead_letters()

    def job(self, job_id: str) -> dict[str, Any] | None:
        entry = self.reader.get(job_id)
        return None if entry is None else entry.status(self.hidden)

    def jobs(self, where: Filter, limit: int | None) -> Iterator[dict[str, Any]]:
        left = limit
        while left is None or left > 0:
            asked = self.PAGE if left is None else min(left, self.PAGE)
            got = 0
            for job, at in self.reader.find(where, asked):  # read a few at a time: jobs may be large
                yield job.status(self.hidden, listed=True)
                got += 1
                where = replace(where, after=at)
            if left is not None:
                left -= got
            if got < self.PAGE:
                return

    # -- changes

    def _file(self) -> JournalFile | None:
        """The file to change, when no daemon holds it (its lock is held from now until
        close: a daemon started meanwhile waits for it); None when one does. Another
        command that holds it: JournalError."""
        if self._writer is None and self._lock is None:
            self._lock = JournalLock(self.path, self.command, runner=False)
            if self._lock.try_acquire():
                try:
                    self._writer = JournalFile(self.path)
                    self._writer.untake()  # read into memory by a process gone: waiting, as at its next start
                except BaseException:  # not taken for a daemon's hold by a later call
                    self._let_go()
                    raise
            elif (holder := self._lock.holder()) is not None and not holder.runner:
                raise JournalError(f"journal: {self.path} is in use by {holder}; try again once it is done")
        return self._writer

    def _api(self) -> JobsAdmin:
        if self._through is None:
            if self._daemon is None:
                raise JournalError(f"journal: {self.path} is in use by a running gq")
            self._through = self._daemon()
        return self._through

    def run(self, op: str, ids: list[str] | None) -> list[str]:
        """A dlq `op` (replay, purge) on the dead letters `ids` (None: all); returns the ids done."""
        file = self._file()
        if file is not None:
            ran = file.replay(ids)[0].ids if op == "replay" else file.purge(ids)
            dlq_done(self.audit, op, ids, ran)
            return ran
        file = JournalFile(self.path)  # the daemon that holds it does it, and records it
        try:
            seq = file.request(op, ids)
            deadline = time.monotonic() + self.WAIT
            while (done := file.answer(seq)) is None:
                if time.monotonic() > deadline:
                    raise JournalError(f"journal: the daemon running {self.path} did not answer within "
                                       f"{self.WAIT:g}s; the {op} will happen when it does")
                time.sleep(0.05)
            return done
        finally:
            file.close()

    def cancel(self, job_id: str) -> bool:
        file = self._file()
        if file is None:
            return self._api().cancel(job_id)
        was, _ = file.cancel(job_id, time.time())  # a job let go from behind it runs at the next start
        if not was:
            return False
        if was not in CANCELLABLE_ROWS:
            raise Conflict(job_id, State(was))
        self.audit.record("cancel", by="local", via="cli", ids=[job_id], count=1)
        return True

    def replay(self, ids: list[str]) -> Replayed:
        file = self._file()
        if file is None:
            return self._api().replay(ids)
        done = file.replay(ids, [s.value for s in REPLAYABLE])[0]
        if done.ids:
            self.audit.record("replay", by="local", via="cli", ids=done.ids, count=len(done.ids))
        return done

    def replay_matching(self, where: Filter) -> Iterator[Replayed]:
        if where.state not in REPLAYABLE:
            raise ValueError("replay_matching: where.state must be dead or succeeded")
        file = self._file()
        if file is None:
            yield from self._api().replay_matching(where)
            return
        shown, count = where.fields(), 0
        try:  # one row for every page
            while True:  # the replayed leave the filter's state; the position moves on past them
                page = [(e.job.id, at) for e, at in file.find(where, self.PAGE)]  # ids only: jobs may be large
                done = file.replay([job_id for job_id, _ in page], [where.state.value])[0]
                count += len(done.ids)
                yield done
                if len(page) < self.PAGE:
                    return
                where = replace(where, after=page[-1][1])
        finally:
            if count:
                self.audit.record("replay", by="local", via="cli", filter=shown, count=count)

    # -- the audit (gq.core.audit.AuditLog): the file's, written only while this command holds it

    def keep_action(self, row: dict[str, Any]) -> None:
        if self._writer is None:
            raise JournalError(f"journal: {self.path}: its actions are recorded by the daemon that holds it")
        self._writer.keep_action(row)

    def actions(self, limit: int, after: Position | None = None) -> list[tuple[dict[str, Any], Position]]:
        return self.reader.actions(limit, after)

    def _let_go(self) -> None:
        """Let the file go: a daemon may start on it again."""
        if self._writer is not None:
            self._writer.close()
        if self._lock is not None:
            self._lock.release()
        self._writer = self._lock = None

    def close(self) -> None:
        self.reader.close()
        self._let_go()
        if self._through is not None:
            self._through.close()
