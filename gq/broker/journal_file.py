"""The journal's SQLite file: its connection, and the statements of a job's path (its layout
and its start are journal_startup's, its look-ups journal_lookups', its operators' changes
journal_operations').

Not cooperative: the journal broker calls it from gevent's threadpool, one call
at a time per connection. Each method is one transaction.

A job's row goes through these states: `queued`, `scheduled` (its run_at ahead)
or `retrying` (waiting on disk until `due`), `blocked` (behind an earlier unfinished
job of its ordering key; shown as queued), `taken` (read into memory: about to run
here; a state of the file only, put back to `queued` when the file is opened again),
`running` (an attempt committed as started), then `succeeded` or `cancelled` (kept
`journal.keep_succeeded` seconds) or `dead` (a dead letter, until replayed or purged).

Of the unfinished jobs of one ordering key only the oldest is ever anything but
blocked; when it finishes, the next one in the order accepted is let go in the same
transaction (`_release`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from gq.broker import Entry, State, cut_history, drop_payload, journal_ledger, stored
from gq.broker.journal_lookups import BLOCKED, FINAL, TAKEN, JournalLookups, entry
from gq.broker.journal_operations import JournalOperations
from gq.broker.journal_startup import WAITING, JournalStartup
from gq.core import hosts
from gq.core.audit import AUDIT_KEEP, Position
from gq.core.job import Job
from gq.core.outcome import AttemptResult
from gq.errors import GqError

# Without it SQLite's planner picks jobs_state for WAITING and sorts every waiting job by due:
# seconds per look with a million of them, instead of a few index pages.
BY_DUE = "INDEXED BY jobs_waiting"
SUCCEEDED_HISTORY = 3   # attempts a succeeded job keeps: the first and the last two (and any of unknown outcome)


class JournalError(GqError):
    """The journal file cannot be opened, locked or written."""


class JournalMissing(JournalError):
    """The journal file a command was to read does not exist."""


class JournalInUse(JournalError):
    """Another gq process (a daemon, a batch) runs on the journal file."""


def _history(attempts: list[AttemptResult]) -> str:
    return json.dumps([stored(a) for a in attempts], ensure_ascii=False)


def state_row(entry: Entry, keep_payload: bool = False) -> tuple:
    """A changed entry as `write` takes it: state, attempts, due, finished_at, reason,
    history, spec (None: unchanged), trimmed, id. A succeeded job keeps a short history, and
    drops its body unless `keep_payload` (then it can be replayed)."""
    spec, trimmed, history = None, 0, entry.history
    finished = time.time() if entry.state.value in FINAL else None
    if entry.state is State.SUCCEEDED:
        history = cut_history(history, SUCCEEDED_HISTORY)
        drop_payload(entry, keep_payload)  # done at settle already: the entry shows it until written
        if entry.trimmed:
            spec, trimmed = entry.job.to_json(), 1
    return (entry.state.value, entry.attempts, entry.due, finished, entry.reason or None,
            _history(history), spec, trimmed, entry.job.id)


class JournalFile(JournalStartup, JournalLookups, JournalOperations):
    """The journal's connection: the transactions of a job's path; its layout and its
    recovery at start are JournalStartup's, its look-ups JournalLookups', its operators'
    changes JournalOperations'."""

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
                self._lay_out()
        except (OSError, sqlite3.Error) as e:
            raise JournalError(f"journal: cannot open {path}: {e}") from None

    # -- the daemon's connection

    def _next_due(self) -> float:
        """When the first waiting job is due (inf: none)."""
        rows = self.db.execute(f"SELECT due FROM jobs {BY_DUE} WHERE {WAITING} ORDER BY due LIMIT 1").fetchall()
        return rows[0][0] if rows else float("inf")

    def write(self, adds: list[tuple[list[Job], int]], budget: int, accepted_at: float,
              changed: list[tuple], deleted: Iterable[str], done: Iterable[str],
              keys: Iterable[str]) -> tuple[list[list[str] | None], list[str]]:
        """One transaction.
        - `adds`: each request's new jobs and how many of them it may take into memory at
          once (`taken`; the others wait in the file: `queued`, `scheduled` when their
          run_at is ahead, `blocked` behind their ordering key). For each, the states its
          jobs got (`""`: a duplicate, the id being known already), or None when they
          would take the unfinished jobs past `budget` (that add is left out).
        - `changed`: state_row()s; `deleted`: ids whose rows go; `done`: ids of a batch's
          succeeded jobs; `keys`: ordering keys whose running job may have finished.
        Also returns the states of the jobs let go from behind their key."""
        fates: list[list[str] | None] = []
        accepted = 0
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for jobs, hold in adds:
                self.db.execute("SAVEPOINT request")
                got = []
                for job in jobs:
                    state, due = self._arrival(job, accepted_at, hold > 0)
                    inserted = self.db.execute(
                        "INSERT OR IGNORE INTO jobs (id, spec, state, due, accepted_at, host, ordering_key) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (job.id, job.to_json(), state, due, accepted_at, hosts.destination(job.url),
                         job.ordering_key)).rowcount
                    got.append(state if inserted else "")
                    if inserted and state == TAKEN:
                        hold -= 1
                new = sum(1 for g in got if g)
                if new > budget:
                    self.db.execute("ROLLBACK TO request")
                    fates.append(None)
                else:
                    budget -= new
                    accepted += new
                    fates.append(got)
                self.db.execute("RELEASE request")
            self.db.executemany(
                "UPDATE jobs SET state = ?, attempts = ?, due = ?, finished_at = ?, reason = ?, history = ?, "
                "spec = coalesce(?, spec), trimmed = ? WHERE id = ?", changed)
            forgotten = self.db.executemany("DELETE FROM jobs WHERE id = ?", ((i,) for i in deleted)).rowcount
            journal_ledger.count(self.db, accepted, forgotten)
            self.db.executemany("INSERT OR IGNORE INTO done (id) VALUES (?)", ((i,) for i in done))
            released = [state for key in set(keys) if (state := self._release(key, accepted_at))]
        return fates, released

    def _arrival(self, job: Job, now: float, may_take: bool) -> tuple[str, float]:
        """A new job's first state and due."""
        due = max(now, job.run_at or 0.0)
        if job.ordering_key is not None and self._key_busy(job.ordering_key):
            return BLOCKED, due
        if due > now:
            return "scheduled", due
        return (TAKEN if may_take else "queued"), due

    def take(self, limit: int, now: float) -> tuple[list[Entry], list[str], list[str], float]:
        """Up to `limit` waiting jobs due by `now`, earliest first, marked taken; the states
        of those that could not be read back as jobs (made dead: an error gq cannot mend
        must not stop the jobs behind them), and of the jobs of their keys let go in their
        place; and when the next waiting one is due (inf: none)."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            entries, unreadable, released = self._readable(self.db.execute(
                f"SELECT * FROM jobs {BY_DUE} WHERE {WAITING} AND due <= ? ORDER BY due LIMIT ?",
                (now, limit)).fetchall(), now)
            self.db.executemany("UPDATE jobs SET state = ? WHERE id = ?", ((TAKEN, e.job.id) for e in entries))
            next_due = self._next_due()
        return entries, unreadable, released, next_due

    def _readable(self, rows: list[sqlite3.Row], now: float) -> tuple[list[Entry], list[str], list[str]]:
        """The rows as entries; those that are no longer jobs gq may run are dead letters that
        say why (gq/core/lifecycle.py: unreadable), made so in the transaction under way, and their
        keys let go. Returns the entries, the states the unreadable ones had, and the new
        states of the jobs let go from behind their keys."""
        entries, unreadable, released = [], [], []
        for row in rows:
            try:
                entries.append(entry(row))
            except (ValueError, GqError) as e:
                unreadable.append(row["state"])
                self.db.execute("UPDATE jobs SET state = 'dead', reason = ?, finished_at = ? WHERE id = ?",
                                (f"unreadable in the journal: {e}", now, row["id"]))
                if row["ordering_key"] is not None and (state := self._release(row["ordering_key"], now)):
                    released.append(state)
        return entries, unreadable, released

    def untake(self) -> None:
        """Jobs read into memory wait on disk again (the daemon stops)."""
        self.db.execute("UPDATE jobs SET state = 'queued' WHERE state = ?", (TAKEN,))

    def expire(self, before: float, limit: int) -> list[str]:
        """Delete up to `limit` succeeded or cancelled jobs that finished before `before`;
        returns the states they had."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            states = [row[0] for row in self.db.execute(
                "DELETE FROM jobs WHERE rowid IN (SELECT rowid FROM jobs WHERE state IN ('succeeded', 'cancelled') "
                "AND finished_at < ? LIMIT ?) RETURNING state", (before, limit)).fetchall()]
            journal_ledger.count(self.db, forgotten=len(states))
        return states

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

    def keep_action(self, row: dict[str, Any]) -> None:
        """Keep one operator action; the oldest beyond AUDIT_KEEP go in the same transaction."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            seq = self.db.execute("INSERT INTO audit (action) VALUES (?)",
                                  (json.dumps(row, ensure_ascii=False),)).lastrowid or 0
            self.db.execute("DELETE FROM audit WHERE seq <= ?", (seq - AUDIT_KEEP,))

    def actions(self, limit: int, after: Position | None = None) -> list[tuple[dict[str, Any], Position]]:
        """Up to `limit` kept actions older than `after`, newest first; none in a file no
        writer of this version has opened yet (it has no audit table)."""
        try:
            rows = self.db.execute("SELECT seq, action FROM audit WHERE seq < ? ORDER BY seq DESC LIMIT ?",
                                   (2**63 - 1 if after is None else after[1], limit)).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []
            raise
        found = []
        for seq, text in rows:
            row = json.loads(text)
            found.append((row, (float(row.get("at", 0.0)), seq)))
        return found

    def close(self) -> None:
        self.db.close()
