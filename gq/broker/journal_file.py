"""The journal's SQLite file: its layout and every statement run on it.

Not cooperative: the journal broker calls it from gevent's threadpool, one call
at a time per connection. Each method is one transaction.

A job's row goes through these states: `queued` or `retrying` (waiting on disk
until `due`), `taken` (read into memory: about to run here; a state of the file
only, put back to `queued` when the file is opened again), `running` (an
attempt committed as started), then `succeeded` (kept `journal.keep_succeeded`
seconds without its body) or `dead` (a dead letter, until replayed or purged).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator

from gq.broker import Entry, State
from gq.errors import GqError
from gq.job import Job, parse
from gq.outcome import AttemptResult

TAKEN = "taken"
WAITING = "state IN ('queued', 'retrying')"  # the jobs_due index's own condition, word for word
# Without it SQLite's planner picks jobs_state for WAITING and sorts every waiting job by due:
# seconds per look with a million of them, instead of a few index pages.
BY_DUE = "INDEXED BY jobs_due"
SUCCEEDED_HISTORY = 3   # attempts a succeeded job keeps: the first and the last two

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (
    id          TEXT PRIMARY KEY,
    spec        TEXT NOT NULL,              -- the job's JSON form (without its body once succeeded)
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    due         REAL NOT NULL DEFAULT 0,    -- when a queued or retrying job may run
    accepted_at REAL NOT NULL,
    finished_at REAL,
    reason      TEXT,                       -- why it is dead
    history     TEXT NOT NULL DEFAULT '[]'  -- attempts: [started, duration, status, error, snippet]
);
DROP INDEX IF EXISTS jobs_by_state;         -- the layout of a journal read whole at start
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, accepted_at);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (due) WHERE {WAITING};
CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs (finished_at) WHERE state = 'succeeded';
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


class BacklogLimit(Exception):
    """An add would take the unfinished jobs past the budget it was given."""


def _history(attempts: list[AttemptResult]) -> str:
    return json.dumps([[a.started, round(a.duration, 6), a.status, a.error, a.snippet] for a in attempts],
                      ensure_ascii=False)


def state_row(entry: Entry) -> tuple:
    """A changed entry as `write` takes it: state, attempts, due, finished_at, reason,
    history, spec (None: unchanged), id. A succeeded job drops its body and keeps a short
    history."""
    spec, history = None, entry.history
    finished = time.time() if entry.state in (State.SUCCEEDED, State.DEAD) else None
    if entry.state is State.SUCCEEDED:
        spec = dataclasses.replace(entry.job, data=None, is_json=False).to_json()
        history = history[:1] + history[1:][-(SUCCEEDED_HISTORY - 1):]
    return (entry.state.value, entry.attempts, entry.due, finished, entry.reason or None,
            _history(history), spec, entry.job.id)


def entry(row: sqlite3.Row, strict: bool = True) -> Entry:
    """The row as an Entry. Its job is parsed again, checked as at intake (ValueError or
    GqError when it no longer passes); not `strict` (a look-up), a job that does not is
    shown as it is."""
    state = State.QUEUED if row["state"] == TAKEN else State(row["state"])
    history = [AttemptResult(*a) for a in json.loads(row["history"])]
    spec = json.loads(row["spec"])
    try:
        job = parse(spec)
    except GqError:
        if strict:
            raise
        job = Job(row["id"], str(spec.get("method", "")), str(spec.get("url", "")), {})
    return Entry(job, state, row["attempts"], row["due"], row["accepted_at"], history=history,
                 reason=row["reason"] or "")


class JournalFile:
    def __init__(self, path: str, reader: bool = False):
        """Open (creating it if need be) the file at `path`; a `reader` connection only reads."""
        self.path = path
        try:
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
            # Jobs carry their secrets (Authorization headers): the file is its owner's only.
            # SQLite gives the -wal and -shm files the same mode. Only a file not there yet
            # is opened here: closing any descriptor of an open database drops the POSIX locks
            # of every connection to it in this process, and another process would then take
            # the file for unused and remove its -wal.
            if not reader and not os.path.exists(path):
                with contextlib.suppress(FileExistsError):  # another process was first
                    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            if reader:
                self.db.execute("PRAGMA query_only=1")
            else:
                self.db.execute("PRAGMA synchronous=FULL")  # a 202 survives power loss, not just a crash
                self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise JournalError(f"journal: cannot open {path}: {e}") from None

    # -- the daemon's connection

    def recover(self) -> tuple[dict[State, int], list[Entry], float]:
        """At start: jobs read into memory by the last process wait on disk again; returns
        the jobs by state (unfinished and dead), those whose attempt was under way, and
        when the first waiting job is due (inf: none)."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("UPDATE jobs SET state = 'queued' WHERE state = ?", (TAKEN,))
            counts = {State(state): n for state, n in self.db.execute(
                "SELECT state, count(*) FROM jobs WHERE state != 'succeeded' GROUP BY state")}
            running, unreadable = self._readable(
                self.db.execute("SELECT * FROM jobs WHERE state = 'running'").fetchall(), time.time())
            for state in unreadable:
                counts[State(state)] -= 1
                counts[State.DEAD] = counts.get(State.DEAD, 0) + 1
        return counts, running, self._next_due()

    def _next_due(self) -> float:
        rows = self.db.execute(f"SELECT due FROM jobs {BY_DUE} WHERE {WAITING} ORDER BY due LIMIT 1").fetchall()
        return rows[0][0] if rows else float("inf")

    def write(self, adds: list[tuple[list[tuple[str, str]], int]], budget: int, accepted_at: float,
              changed: list[tuple], deleted: Iterable[str], done: Iterable[str]) -> list[list[str] | None]:
        """One transaction.
        - `adds`: each request's new jobs, (id, spec) pairs, and how many of them it may
          take into memory at once (`taken`; the others are `queued`). For each, the states
          its jobs got (`""`: a duplicate, the id being known already), or None when they
          would take the unfinished jobs past `budget` (that add is left out).
        - `changed`: state_row()s; `deleted`: ids whose rows go; `done`: ids of a batch's
          succeeded jobs."""
        fates: list[list[str] | None] = []
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for rows, hold in adds:
                self.db.execute("SAVEPOINT request")
                got = []
                for job_id, spec in rows:
                    state = TAKEN if hold > 0 else "queued"
                    inserted = self.db.execute(
                        "INSERT OR IGNORE INTO jobs (id, spec, state, due, accepted_at) VALUES (?, ?, ?, ?, ?)",
                        (job_id, spec, state, accepted_at, accepted_at)).rowcount
                    got.append(state if inserted else "")
                    if inserted and state == TAKEN:
                        hold -= 1
                new = sum(1 for g in got if g)
                if new > budget:
                    self.db.execute("ROLLBACK TO request")
                    fates.append(None)
                else:
                    budget -= new
                    fates.append(got)
                self.db.execute("RELEASE request")
            self.db.executemany(
                "UPDATE jobs SET state = ?, attempts = ?, due = ?, finished_at = ?, reason = ?, history = ?, "
                "spec = coalesce(?, spec) WHERE id = ?", changed)
            self.db.executemany("DELETE FROM jobs WHERE id = ?", ((i,) for i in deleted))
            self.db.executemany("INSERT OR IGNORE INTO done (id) VALUES (?)", ((i,) for i in done))
        return fates

    def take(self, limit: int, now: float) -> tuple[list[Entry], list[str], float]:
        """Up to `limit` waiting jobs due by `now`, earliest first, marked taken; the states
        of those that could not be read back as jobs (made dead: an error gq cannot mend
        must not stop the jobs behind them); and when the next waiting one is due (inf: none)."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            entries, unreadable = self._readable(self.db.execute(
                f"SELECT * FROM jobs {BY_DUE} WHERE {WAITING} AND due <= ? ORDER BY due LIMIT ?",
                (now, limit)).fetchall(), now)
            self.db.executemany("UPDATE jobs SET state = ? WHERE id = ?", ((TAKEN, e.job.id) for e in entries))
            next_due = self._next_due()
        return entries, unreadable, next_due

    def _readable(self, rows: list[sqlite3.Row], now: float) -> tuple[list[Entry], list[str]]:
        """The rows as entries; those that are no longer jobs gq may run are made dead
        (in the transaction under way), and their states returned."""
        entries, unreadable = [], []
        for row in rows:
            try:
                entries.append(entry(row))
            except (ValueError, GqError) as e:
                unreadable.append(row["state"])
                self.db.execute("UPDATE jobs SET state = 'dead', reason = ?, finished_at = ? WHERE id = ?",
                                (f"unreadable in the journal: {e}", now, row["id"]))
        return entries, unreadable

    def untake(self) -> None:
        """Jobs read into memory wait on disk again (the daemon stops)."""
        self.db.execute("UPDATE jobs SET state = 'queued' WHERE state = ?", (TAKEN,))

    def expire(self, before: float, limit: int) -> int:
        """Delete up to `limit` succeeded jobs that finished before `before`; returns how many."""
        return self.db.execute(
            "DELETE FROM jobs WHERE rowid IN (SELECT rowid FROM jobs WHERE state = 'succeeded' "
            "AND finished_at < ? LIMIT ?)", (before, limit)).rowcount

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

    # -- look-ups (any connection)

    def get(self, job_id: str) -> Entry | None:
        row = self.db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else entry(row, strict=False)

    def oldest(self) -> float | None:
        """When the oldest unfinished job was accepted (one index seek per state)."""
        return self.db.execute(
            "SELECT min(t) FROM (" + " UNION ALL ".join(
                f"SELECT min(accepted_at) AS t FROM jobs WHERE state = '{s}'"
                for s in ("queued", TAKEN, "running", "retrying")) + ")").fetchone()[0]

    def dead_letters(self) -> Iterator[Entry]:
        """Dead letters, oldest first, read as they are used (there may be millions)."""
        for row in self.db.execute("SELECT * FROM jobs WHERE state = 'dead' ORDER BY accepted_at"):
            yield entry(row, strict=False)

    # -- dead letters, for the process that holds the journal

    def _dead_ids(self, ids: list[str] | None) -> list[str]:
        if ids is None:
            return [r[0] for r in self.db.execute("SELECT id FROM jobs WHERE state = 'dead'")]
        found = set()
        for start in range(0, len(ids), 500):  # SQLite takes so many parameters at most
            chunk = ids[start:start + 500]
            found |= {r[0] for r in self.db.execute(
                f"SELECT id FROM jobs WHERE state = 'dead' AND id IN ({','.join('?' * len(chunk))})", chunk)}
        return [i for i in dict.fromkeys(ids) if i in found]

    def replay(self, ids: list[str] | None) -> list[str]:
        """Dead letters back to queued, attempts reset and due at once."""
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
        return cursor.lastrowid or 0

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
