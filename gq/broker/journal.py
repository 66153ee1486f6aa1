"""The embedded journal: a SQLite file (WAL) behind the in-memory broker.

Every accepted job is committed before `add` returns, so a 202 survives a
crash. State changes after that are written behind: a crash may lose the
last few, which at worst runs a job once more (at-least-once, same
Idempotency-Key). One writer greenlet commits everything pending in one
transaction, in gevent's threadpool, so the hub keeps serving while SQLite
waits on the disk, and concurrent intakes share each commit (group commit).

Only one process runs jobs from a journal: the daemon holds an exclusive
lock on `PATH.lock`. `gq dlq` commands work on the file directly when no
daemon holds the lock, and through the `control` table (polled by the
daemon) when one does.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import time
from typing import Iterable

import gevent
from gevent.event import AsyncResult, Event
from gevent.lock import BoundedSemaphore

from gq.broker import Added, Entry, State
from gq.broker.memory import KEEP_FINISHED, MemoryBroker
from gq.broker.storage import StorageGuard
from gq.errors import GqError, StorageUnavailable
from gq.job import Job, parse
from gq.outcome import AttemptResult, Outcome
from gq.supervisor import Supervisor

log = logging.getLogger("gq.journal")

CONTROL_POLL = 0.5  # seconds between looks for dlq commands from other processes

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id          TEXT PRIMARY KEY,
    spec        TEXT NOT NULL,              -- the job's JSON form
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    due         REAL NOT NULL DEFAULT 0,    -- when a retrying job may run again
    accepted_at REAL NOT NULL,
    finished_at REAL,
    reason      TEXT,                       -- why it is dead
    history     TEXT NOT NULL DEFAULT '[]'  -- attempts: [started, duration, status, error, snippet]
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, finished_at);
CREATE TABLE IF NOT EXISTS done (          -- gq batch: ids of its succeeded jobs, rows deleted
    id TEXT PRIMARY KEY
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS control (       -- dlq commands for a running daemon
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    op     TEXT NOT NULL,                   -- replay | purge
    ids    TEXT,                            -- JSON list; NULL = all
    result TEXT                             -- JSON list of ids done; NULL = not yet
);
"""


class JournalError(GqError):
    """The journal file cannot be opened, locked or written."""


def _size(path: str) -> int:
    """A file's size; 0 when it is not there (the -wal between checkpoints, a file deleted)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _history_row(a: AttemptResult) -> list:
    return [a.started, round(a.duration, 6), a.status, a.error, a.snippet]


def _new_row(entry: Entry) -> tuple:
    return (entry.job.id, entry.job.to_json(), entry.accepted_at) + _state_row(entry)


def _state_row(entry: Entry) -> tuple:
    finished = time.time() if entry.state in (State.SUCCEEDED, State.DEAD) else None
    return (entry.state.value, entry.attempts, entry.due, finished, entry.reason or None,
            json.dumps([_history_row(a) for a in entry.history], ensure_ascii=False))


def _entry(row: sqlite3.Row) -> Entry:
    job = parse(json.loads(row["spec"]))
    history = [AttemptResult(*a) for a in json.loads(row["history"])]
    return Entry(job, State(row["state"]), row["attempts"], row["due"], row["accepted_at"],
                 history=history, reason=row["reason"] or "")


class JournalFile:
    """The SQLite file. Not cooperative: the daemon calls it from gevent's threadpool."""

    def __init__(self, path: str):
        self.path = path
        try:
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
            # Jobs carry their secrets (Authorization headers): the file is its owner's only.
            # SQLite gives the -wal and -shm files the same mode.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # a 202 survives power loss, not just a crash
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise JournalError(f"journal: cannot open {path}: {e}") from None

    def load(self, succeeded: int) -> list[Entry]:
        """Every job kept: unfinished, dead, and the `succeeded` most recent succeeded ones."""
        rows = self.db.execute(  # unfinished ones first, oldest first (see oldest_accepted)
            "SELECT * FROM (SELECT * FROM jobs WHERE state != 'succeeded' ORDER BY accepted_at) UNION ALL "
            "SELECT * FROM (SELECT * FROM jobs WHERE state = 'succeeded' "
            "ORDER BY finished_at DESC LIMIT ?)", (succeeded,)).fetchall()
        return [_entry(r) for r in rows]

    def write(self, new: list[tuple], changed: list[tuple], deleted: Iterable[str], done: Iterable[str]) -> None:
        """One transaction: new jobs (_new_row), state changes (_state_row + id), deletions,
        ids of a batch's succeeded jobs."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT INTO jobs (id, spec, accepted_at, state, attempts, due, finished_at, reason, "
                "history) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", new)
            self.db.executemany(
                "UPDATE jobs SET state = ?, attempts = ?, due = ?, finished_at = ?, reason = ?, "
                "history = ? WHERE id = ?", changed)
            self.db.executemany("DELETE FROM jobs WHERE id = ?", ((i,) for i in deleted))
            self.db.executemany("INSERT OR IGNORE INTO done (id) VALUES (?)", ((i,) for i in done))

    def batch_done(self, ids: Iterable[str], forget_others: bool) -> set[str]:
        """Those of a batch's `ids` that succeeded before (in an interrupted run of it, or
        as a daemon's jobs). With `forget_others` (the batch completed), the record of done
        ids keeps this batch's only: it grows by the batches left unfinished, no more."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("CREATE TEMP TABLE batch (id TEXT PRIMARY KEY) WITHOUT ROWID")
            self.db.executemany("INSERT OR IGNORE INTO temp.batch (id) VALUES (?)", ((i,) for i in ids))
            if forget_others:
                self.db.execute("DELETE FROM done WHERE id NOT IN (SELECT id FROM temp.batch)")
            done = {row[0] for row in self.db.execute(
                "SELECT id FROM done WHERE id IN (SELECT id FROM temp.batch) UNION "
                "SELECT id FROM jobs WHERE state = 'succeeded' AND id IN (SELECT id FROM temp.batch)")}
            self.db.execute("DROP TABLE temp.batch")
        return done

    def dead_letters(self) -> list[Entry]:
        rows = self.db.execute("SELECT * FROM jobs WHERE state = 'dead' ORDER BY finished_at").fetchall()
        return [_entry(r) for r in rows]

    def _dead_ids(self, ids: list[str] | None) -> list[str]:
        if ids is None:
            return [r[0] for r in self.db.execute("SELECT id FROM jobs WHERE state = 'dead'")]
        found = {r[0] for r in self.db.execute(
            f"SELECT id FROM jobs WHERE state = 'dead' AND id IN ({','.join('?' * len(ids))})", ids)}
        return [i for i in ids if i in found]

    def replay(self, ids: list[str] | None) -> list[str]:
        """Dead letters back to queued, attempts reset (for a journal no daemon holds)."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            done = self._dead_ids(ids)
            self.db.executemany("UPDATE jobs SET state = 'queued', attempts = 0, due = 0, reason = NULL, "
                                "finished_at = NULL WHERE id = ?", ((i,) for i in done))
        return done

    def purge(self, ids: list[str] | None) -> list[str]:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            done = self._dead_ids(ids)
            self.db.executemany("DELETE FROM jobs WHERE id = ?", ((i,) for i in done))
        return done

    # -- commands for a running daemon

    def request(self, op: str, ids: list[str] | None) -> int:
        cursor = self.db.execute("INSERT INTO control (op, ids) VALUES (?, ?)",
                                 (op, None if ids is None else json.dumps(ids)))
        return cursor.lastrowid

    def answer(self, seq: int) -> list[str] | None:
        row = self.db.execute("SELECT result FROM control WHERE seq = ?", (seq,)).fetchone()
        return None if row is None or row[0] is None else json.loads(row[0])

    def requests(self) -> list[tuple[int, str, list[str] | None]]:
        rows = self.db.execute("SELECT seq, op, ids FROM control WHERE result IS NULL ORDER BY seq")
        return [(seq, op, None if ids is None else json.loads(ids)) for seq, op, ids in rows]

    def answered(self, seq: int, result: list[str]) -> None:
        with self.db:
            self.db.execute("UPDATE control SET result = ? WHERE seq = ?", (json.dumps(result), seq))
            self.db.execute("DELETE FROM control WHERE result IS NOT NULL AND seq < ?", (seq - 100,))

    def close(self) -> None:
        self.db.close()


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


class JournalBroker(MemoryBroker):
    """The in-memory broker, with every job and its outcome kept in a JournalFile.

    For `gq batch` (`batch=True`), which answers no look-ups, a job of the batch that
    succeeds is forgotten at once, its row too, and only its id is kept (`done`): memory
    and file stay small however long the batch, and the batch run again skips every job
    that succeeded. Succeeded jobs a daemon left in the file are neither loaded nor pruned.

    The file is used by one thread at a time (`_file`): SQLite transactions on one
    connection from two threads would interleave."""

    def __init__(self, path: str, batch: bool = False, max_backlog: int = 10_000_000, min_free_mb: int = 256,
                 supervisor: Supervisor | None = None):
        super().__init__(keep_finished=0 if batch else KEEP_FINISHED, max_backlog=max_backlog)
        self.batch = batch
        self.lock = JournalLock(path)
        if not self.lock.try_acquire():
            self.lock.release()
            raise JournalError(f"journal: {path} is in use by another gq process")
        self.file = JournalFile(path)
        self.guard = StorageGuard(path, min_free_mb)
        self._threadpool = gevent.get_hub().threadpool
        self._file_lock = BoundedSemaphore()
        self._dirty: dict[str, Entry] = {}
        self._deleted: set[str] = set()
        self._done: list[str] = []
        self._adding: list[tuple[AsyncResult, list[str]]] = []  # add() calls waiting for a commit
        self._uncommitted: dict[str, AsyncResult] = {}  # new ids → the commit they wait for
        self._starting: list[AsyncResult] = []  # started() calls waiting for a commit
        self._wake = Event()
        self._stop = Event()
        self.recovered = self._recover()
        supervisor = supervisor or Supervisor()
        self._loops = [supervisor.spawn("journal writer", self._write_loop),
                       supervisor.spawn("journal control poll", self._control_loop)]

    def _recover(self) -> int:
        """Load the file; unfinished jobs wait here until the feeder has room for them."""
        recovered = 0
        for entry in self.file.load(0 if self.batch else KEEP_FINISHED):
            self._entries[entry.job.id] = entry
            if entry.state is State.SUCCEEDED:
                self._succeeded[entry.job.id] = None
                continue
            self._counts[entry.state] += 1
            if entry.state is State.RETRYING:
                self._hold(entry, entry.due, State.RETRYING)
            elif entry.state is not State.DEAD:  # queued, or running when the process died
                entry.interrupted = entry.state is State.RUNNING
                self._hold(entry, 0.0, State.QUEUED)
            recovered += entry.state is not State.DEAD
        return recovered

    # -- what changes is written

    def add(self, jobs: Iterable[Job]) -> Added:
        """As MemoryBroker.add, returning once the new jobs are committed to the file. Raises
        StorageUnavailable when the storage cannot take them (see StorageGuard), or when the
        commit fails. A duplicate is one of a job whose commit succeeded."""
        jobs = list(jobs)
        problem = self.guard.problem()
        if problem:
            raise StorageUnavailable(problem)
        # An id whose first commit is still under way is not known yet: wait for that commit
        # (a failed one forgets the id, which is then new here).
        while pending := {self._uncommitted[j.id] for j in jobs if j.id in self._uncommitted}:
            gevent.wait(list(pending))
        added = super().add(jobs)
        if not added.entries:
            return added
        ids = [entry.job.id for entry in added.entries]
        self._dirty.update(zip(ids, added.entries))
        committed = AsyncResult()
        self._adding.append((committed, ids))
        self._uncommitted.update(dict.fromkeys(ids, committed))
        self._wake.set()
        committed.get()  # the writer settles the ids first: kept, or forgotten on a failure
        return added

    def health(self) -> str | None:
        return self.guard.problem()

    def stored_bytes(self) -> int:
        return sum(_size(self.file.path + suffix) for suffix in ("", "-wal", "-shm"))

    def started(self, entry: Entry) -> None:
        """As MemoryBroker.started, returning once the attempt is committed: a job whose
        attempts crash or freeze the process uses them up like any other."""
        super().started(entry)
        self._changed(entry)
        committed = AsyncResult()
        self._starting.append(committed)
        committed.get()

    def settle(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        super().settle(entry, result, outcome)
        if self.batch and entry.state is State.SUCCEEDED:  # forgotten (_drop) but for its id
            self._done.append(entry.job.id)
            self._wake.set()
        else:
            self._changed(entry)

    def batch_done(self, ids: Iterable[str], forget_others: bool = False) -> set[str]:
        """See JournalFile.batch_done."""
        return self._file(self.file.batch_done, ids, forget_others)

    def _file(self, method, *args):
        """Call a JournalFile method in the threadpool, one call at a time."""
        with self._file_lock:
            return self._threadpool.apply(method, args)

    def defer(self, entry: Entry, due: float) -> None:
        super().defer(entry, due)
        self._changed(entry)

    def replay(self, ids: Iterable[str] | None) -> list[str]:
        replayed = super().replay(ids)
        for job_id in replayed:
            self._changed(self._entries[job_id])
        return replayed

    def _drop(self, job_id: str) -> None:
        super()._drop(job_id)
        self._dirty.pop(job_id, None)
        self._deleted.add(job_id)
        self._wake.set()

    def _changed(self, entry: Entry) -> None:
        self._dirty[entry.job.id] = entry
        self._wake.set()

    # -- the writer

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Commit everything pending now, in one transaction; wakes the add() calls it covers."""
        dirty, self._dirty = self._dirty, {}
        deleted, self._deleted = self._deleted, set()
        done, self._done = self._done, []
        adding, self._adding = self._adding, []
        starting, self._starting = self._starting, []
        if not (dirty or deleted or done or adding):
            self._release(starting)
            return
        fresh = {job_id for _, ids in adding for job_id in ids}
        new = [_new_row(e) for i, e in dirty.items() if i in fresh]
        changed = [_state_row(e) + (i,) for i, e in dirty.items() if i not in fresh]
        try:
            self._file(self.file.write, new, changed, deleted, done)
            self.guard.look()  # a file deleted before this commit: its adds are not stored
            if self.guard.gone:
                raise OSError("the journal file was deleted or replaced")
        except Exception as e:  # the writer must live on: a failed write fails its own adds only
            self.guard.write_failed(e)
            error = StorageUnavailable(f"journal: write failed: {e}")
            log.error("%s; %d job(s) refused, state changes kept for the next write", error, len(fresh))
            for job_id, entry in dirty.items():
                if job_id not in fresh:
                    self._dirty.setdefault(job_id, entry)
            self._deleted |= deleted
            self._done[:0] = done
            for waiter, ids in adding:
                for job_id in ids:  # never stored: unknown again, before anyone asks
                    self._uncommitted.pop(job_id, None)
                    self._counts[State.QUEUED] -= 1
                    del self._entries[job_id]
                waiter.set_exception(error)
            self._release(starting)  # the attempts go on: their state is written with the next write
            self._stop.wait(0.5)  # a failing disk: do not spin
            return
        for waiter, ids in adding:
            for job_id in ids:
                self._uncommitted.pop(job_id, None)
            waiter.set(True)
        self._release(starting)
        self.guard.wrote()

    @staticmethod
    def _release(waiters: list[AsyncResult]) -> None:
        for waiter in waiters:
            waiter.set(True)

    def _control_loop(self) -> None:
        while not self._stop.wait(CONTROL_POLL):
            try:
                for seq, op, ids in self._file(self.file.requests):
                    done = self.replay(ids) if op == "replay" else self.purge(ids)
                    self.flush()
                    self._file(self.file.answered, seq, done)
                    log.info("dlq %s of %d job(s), as gq dlq asked", op, len(done))
            except sqlite3.Error as e:
                log.warning("journal: cannot read dlq commands: %s; will try again", e)

    def close(self) -> None:
        """Stop the loops between writes, commit what is pending, release the file."""
        self._stop.set()
        self._wake.set()
        gevent.joinall(self._loops)
        self.flush()
        self.file.close()
        self.lock.release()


class DeadLetterAdmin:
    """`gq dlq` on a journal: directly when no daemon holds it, through the daemon when one does."""

    WAIT = 10.0  # seconds to wait for a running daemon to carry out a command

    def __init__(self, path: str):
        if not os.path.exists(path):
            raise JournalError(f"journal: {path} does not exist (journal.path)")
        self.file = JournalFile(path)
        self.path = path

    def list(self) -> list[Entry]:
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

