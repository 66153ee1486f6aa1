"""The journal's SQLite file: its layout and every statement run on it.

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
import dataclasses
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from gq import hosts
from gq.broker import Entry, Filter, Found, Replayed, State, attempt_of, stored, unreplayable
from gq.errors import GqError
from gq.job import Job, as_stored, parse
from gq.outcome import AttemptResult

log = logging.getLogger("gq")

TAKEN = "taken"
BLOCKED = "blocked"
WAITING = "state IN ('queued', 'retrying', 'scheduled')"  # the jobs_waiting index's own condition, word for word
# Without it SQLite's planner picks jobs_state for WAITING and sorts every waiting job by due:
# seconds per look with a million of them, instead of a few index pages.
BY_DUE = "INDEXED BY jobs_waiting"
KEYED = ("ordering_key IS NOT NULL AND state IN "
         "('queued', 'scheduled', 'retrying', 'taken', 'running', 'blocked')")  # jobs_key's condition
FINAL = ("succeeded", "dead", "cancelled")
CANCELLABLE_ROWS = ("queued", "scheduled", "retrying", BLOCKED)  # states cancel() takes
# The file's states behind each state a user sees.
FILE_STATES = {State.QUEUED: ("queued", TAKEN, BLOCKED)}
ALL_FILE_STATES = ("queued", TAKEN, BLOCKED, "scheduled", "running", "retrying", *FINAL)
# What a look-up reads of a row: all but the job's body, which it does not show (read, a body
# as large as api.max_body_bytes would be parsed for nothing).
LOOKED_UP = ("id, state, attempts, due, accepted_at, reason, history, "
             "json_remove(spec, '$.json', '$.body') AS spec")
READ_BYTES = 262144     # characters of jobs a look-up reads at a time (in gevent's threadpool)
SUCCEEDED_HISTORY = 3   # attempts a succeeded job keeps: the first and the last two
VERSION = 1             # PRAGMA user_version of the layout below
COLUMNS_ADDED = (("host", "TEXT"), ("ordering_key", "TEXT"), ("trimmed", "INTEGER NOT NULL DEFAULT 0"))  # since 0

TABLES = """
CREATE TABLE IF NOT EXISTS jobs (
    id           TEXT PRIMARY KEY,
    spec         TEXT NOT NULL,              -- the job's JSON form
    state        TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    due          REAL NOT NULL DEFAULT 0,    -- when a waiting job may run (a blocked one, once let go)
    accepted_at  REAL NOT NULL,
    finished_at  REAL,
    reason       TEXT,                       -- why it is dead
    history      TEXT NOT NULL DEFAULT '[]', -- attempts: [started, duration, status, error, snippet]
    host         TEXT,                       -- its destination (gq.hosts.destination), for finding
    ordering_key TEXT,
    trimmed      INTEGER NOT NULL DEFAULT 0  -- 1: succeeded, its body dropped (it cannot be replayed)
);
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
# Newest first by acceptance, for GET /v1/jobs: through jobs_accepted with no filter,
# jobs_state by state, jobs_host by host (and state).
INDEXES = f"""
DROP INDEX IF EXISTS jobs_by_state;         -- the layouts of earlier versions
DROP INDEX IF EXISTS jobs_due;
DROP INDEX IF EXISTS jobs_expiry;
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, accepted_at);
CREATE INDEX IF NOT EXISTS jobs_waiting ON jobs (due) WHERE {WAITING};
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE state IN ('succeeded', 'cancelled');
CREATE INDEX IF NOT EXISTS jobs_accepted ON jobs (accepted_at);
CREATE INDEX IF NOT EXISTS jobs_host ON jobs (host, state, accepted_at);
CREATE INDEX IF NOT EXISTS jobs_key ON jobs (ordering_key, state) WHERE {KEYED};
"""


def _destination(spec: str) -> str:
    try:
        return hosts.destination(str(json.loads(spec).get("url", "")))
    except (ValueError, AttributeError):
        return ""


class JournalError(GqError):
    """The journal file cannot be opened, locked or written."""


def _history(attempts: list[AttemptResult]) -> str:
    return json.dumps([stored(a) for a in attempts], ensure_ascii=False)


def state_row(entry: Entry, keep_payload: bool = False) -> tuple:
    """A changed entry as `write` takes it: state, attempts, due, finished_at, reason,
    history, spec (None: unchanged), trimmed, id. A succeeded job keeps a short history, and
    drops its body unless `keep_payload` (then it can be replayed)."""
    spec, trimmed, history = None, 0, entry.history
    finished = time.time() if entry.state.value in FINAL else None
    if entry.state is State.SUCCEEDED:
        history = history[:1] + history[1:][-(SUCCEEDED_HISTORY - 1):]
        if not keep_payload and entry.job.data is not None:
            spec, trimmed = dataclasses.replace(entry.job, data=None, is_json=False).to_json(), 1
    return (entry.state.value, entry.attempts, entry.due, finished, entry.reason or None,
            _history(history), spec, trimmed, entry.job.id)


def shown(state: str) -> State:
    """The state a user sees of a row's state."""
    return State.QUEUED if state in (TAKEN, BLOCKED) else State(state)


def _unreplayable(row: sqlite3.Row | None, states: list[State]) -> str | None:
    """gq.broker.unreplayable of a row (None: no such job): a succeeded job whose body was
    dropped (trimmed) cannot be replayed."""
    if row is None:
        return unreplayable(None, states)
    return unreplayable(shown(row["state"]), states, payload_kept=not row["trimmed"])


def found(read: Callable[..., Any], where: Filter, limit: int) -> Iterator[Found]:
    """Up to `limit` jobs that match `where`, newest first, each with its position, read
    READ_BYTES at a time as they are asked for: the page that stops early (gq.jobs_api's byte
    budget) has read little more than it holds. `read(method, *args)` calls a JournalFile
    method on a connection (off the hub, for the daemon)."""
    positions = read(JournalFile.positions, where, limit)
    start = 0
    while start < len(positions):
        batch, start = read(JournalFile.rows, positions, start, READ_BYTES)
        yield from batch


def entry(row: sqlite3.Row, strict: bool = True) -> Entry:
    """The row as an Entry. `strict` (a job to run): its job is parsed again, checked as at
    intake (ValueError or GqError when it no longer passes); not (a look-up): the job is
    shown as the file holds it, without its body, valid or not."""
    state = shown(row["state"])
    history = [attempt_of(a) for a in json.loads(row["history"])]
    spec = json.loads(row["spec"])
    job = parse(spec) if strict else as_stored(row["id"], spec)
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
                self._lay_out()
        except (OSError, sqlite3.Error) as e:
            raise JournalError(f"journal: cannot open {path}: {e}") from None

    def _lay_out(self) -> None:
        """Create the tables and indexes, or bring a file of an earlier version up to date:
        the columns it lacks added (each job's host read from its URL), old indexes dropped."""
        self.db.executescript(TABLES)
        if self.db.execute("PRAGMA user_version").fetchone()[0] < VERSION:
            jobs = self.db.execute("SELECT max(rowid) FROM jobs").fetchone()[0] or 0  # at once, unlike count(*)
            if jobs:  # some 15 s per million jobs, before gq listens: say why it waits
                log.info("journal %s: upgrading the file's layout for about %d job(s); gq listens once done",
                         self.path, jobs)
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                columns = {row[1] for row in self.db.execute("PRAGMA table_info(jobs)")}
                for column, kind in COLUMNS_ADDED:
                    if column not in columns:
                        self.db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
                # Before, every succeeded job dropped its body (none of them can be replayed).
                self.db.execute("UPDATE jobs SET trimmed = 1 WHERE state = 'succeeded'")
                self.db.create_function("gq_destination", 1, _destination, deterministic=True)
                self.db.execute("UPDATE jobs SET host = gq_destination(spec) WHERE host IS NULL")
                self.db.execute(f"PRAGMA user_version = {VERSION}")
        self.db.executescript(INDEXES)  # IF NOT EXISTS: at once when they are there

    # -- the daemon's connection

    def recover(self) -> tuple[dict[State, int], list[Entry], float]:
        """At start: jobs read into memory by the last process wait on disk again; returns
        the jobs by state (unfinished and dead), those whose attempt was under way, and
        when the first waiting job is due (inf: none)."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("UPDATE jobs SET state = 'queued' WHERE state = ?", (TAKEN,))
            counts: dict[State, int] = {}
            for state, n in self.db.execute("SELECT state, count(*) FROM jobs WHERE state NOT IN "
                                            "('succeeded', 'cancelled') GROUP BY state"):
                counts[shown(state)] = counts.get(shown(state), 0) + n
            running, unreadable = self._readable(
                self.db.execute("SELECT * FROM jobs WHERE state = 'running'").fetchall(), time.time())
            for state in unreadable:
                counts[State(state)] -= 1
                counts[State.DEAD] = counts.get(State.DEAD, 0) + 1
        return counts, running, self._next_due()

    def _next_due(self) -> float:
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
                    fates.append(got)
                self.db.execute("RELEASE request")
            self.db.executemany(
                "UPDATE jobs SET state = ?, attempts = ?, due = ?, finished_at = ?, reason = ?, history = ?, "
                "spec = coalesce(?, spec), trimmed = ? WHERE id = ?", changed)
            self.db.executemany("DELETE FROM jobs WHERE id = ?", ((i,) for i in deleted))
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

    def _key_busy(self, key: str, blocked: bool = True) -> bool:
        """Whether an unfinished job of `key` is there (not counting blocked ones, unless `blocked`)."""
        others = "" if blocked else f"AND state != '{BLOCKED}'"
        return self.db.execute(f"SELECT 1 FROM jobs INDEXED BY jobs_key WHERE ordering_key = ? AND {KEYED} "
                               f"{others} LIMIT 1", (key,)).fetchone() is not None

    def _release(self, key: str, now: float) -> str:
        """When no job of `key` runs or waits to, let its oldest blocked job go; returns its
        new state (queued or scheduled), or "" for none let go."""
        if self._key_busy(key, blocked=False):
            return ""
        row = self.db.execute(f"SELECT rowid, due FROM jobs INDEXED BY jobs_key WHERE ordering_key = ? AND {KEYED} "
                              f"AND state = '{BLOCKED}' ORDER BY rowid LIMIT 1", (key,)).fetchone()
        if row is None:
            return ""
        state = "scheduled" if row["due"] > now else "queued"
        self.db.execute("UPDATE jobs SET state = ? WHERE rowid = ?", (state, row["rowid"]))
        return state

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
        """Delete up to `limit` succeeded or cancelled jobs that finished before `before`;
        returns how many."""
        return self.db.execute(
            "DELETE FROM jobs WHERE rowid IN (SELECT rowid FROM jobs WHERE state IN ('succeeded', 'cancelled') "
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
        row = self.db.execute(f"SELECT {LOOKED_UP} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else entry(row, strict=False)

    def oldest(self) -> float | None:
        """When the oldest unfinished job that is due was accepted (one index seek per
        state; a scheduled job is not late)."""
        return self.db.execute(
            "SELECT min(t) FROM (" + " UNION ALL ".join(
                f"SELECT min(accepted_at) AS t FROM jobs WHERE state = '{s}'"
                for s in ("queued", TAKEN, BLOCKED, "running", "retrying")) + ")").fetchone()[0]

    def find(self, where: Filter, limit: int) -> Iterator[Found]:
        """Up to `limit` jobs that match, newest first, each with its position (for a
        cursor), read a few at a time as they are asked for (see `found`)."""
        return found(lambda method, *args: method(self, *args), where, limit)

    def positions(self, where: Filter, limit: int) -> list[tuple[float, int]]:
        """Where the first `limit` jobs that match are, newest first. Each of the file's states
        is read through an index in order, and the positions merged, so no query sorts: a
        page costs `limit` index steps per state, and no job is read."""
        bounds: list[str] = []
        params: list[float | str] = []
        if where.since is not None:
            bounds.append("accepted_at >= ?")
            params.append(where.since)
        if where.until is not None:
            bounds.append("accepted_at < ?")
            params.append(where.until)
        if where.after is not None:
            bounds.append("(accepted_at, rowid) < (?, ?)")
            params.extend(where.after)
        looks: list[tuple[str, list[str], list[float | str]]] = [("jobs_accepted", bounds, params)]
        if where.host is not None or where.state is not None:
            states = ALL_FILE_STATES if where.state is None else FILE_STATES.get(where.state, (where.state.value,))
            if where.host is None:
                looks = [("jobs_state", ["state = ?", *bounds], [state, *params]) for state in states]
            else:
                looks = [("jobs_host", ["host = ?", "state = ?", *bounds], [where.host, state, *params])
                         for state in states]
        merged: list[tuple[float, int]] = []
        for index, conditions, values in looks:
            clause = f"WHERE {' AND '.join(conditions)}" if conditions else ""
            merged += [(r[0], r[1]) for r in self.db.execute(
                f"SELECT accepted_at, rowid FROM jobs INDEXED BY {index} {clause} "
                f"ORDER BY accepted_at DESC, rowid DESC LIMIT ?", (*values, limit))]
        return sorted(merged, reverse=True)[:limit]

    def rows(self, positions: list[tuple[float, int]], start: int, most: int) -> tuple[list[Found], int]:
        """The jobs at `positions[start:]` (those still there), in that order, read one by
        one until they hold `most` characters (one at least); and where the next read starts."""
        read: list[Found] = []
        for n in range(start, len(positions)):
            if most <= 0:
                return read, n
            row = self.db.execute(f"SELECT {LOOKED_UP} FROM jobs WHERE rowid = ?", (positions[n][1],)).fetchone()
            if row is not None:  # not deleted since
                read.append((entry(row, strict=False), positions[n]))
                most -= len(row["spec"]) + len(row["history"])
        return read, len(positions)

    def cancel(self, job_id: str, now: float) -> tuple[str, str]:
        """Cancel a job that waits in the file (queued, scheduled, retrying or blocked);
        returns the state it had ("" unknown): when it was not one of those, it is left.
        And the new state of the job of its ordering key let go in its place ("" none)."""
        released = ""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute("SELECT state, ordering_key FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return "", ""
            if row["state"] in CANCELLABLE_ROWS:
                self.db.execute("UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE id = ?", (now, job_id))
                if row["ordering_key"] is not None:
                    released = self._release(row["ordering_key"], now)
        return row["state"], released

    def dead_letters(self) -> Iterator[Entry]:
        """Dead letters, oldest first, read as they are used (there may be millions)."""
        for row in self.db.execute(f"SELECT {LOOKED_UP} FROM jobs WHERE state = 'dead' ORDER BY accepted_at"):
            yield entry(row, strict=False)

    # -- replays and purges, for the process that holds the journal

    def _rows(self, ids: list[str] | None, states: Iterable[str]) -> list[sqlite3.Row]:
        """The rows (id, state, trimmed, ordering_key) of `ids` whatever their state, or with
        None of every job in one of `states`; each once, in the order accepted."""
        columns = "rowid, id, state, trimmed, ordering_key"
        if ids is None:
            return self.db.execute(f"SELECT {columns} FROM jobs WHERE state IN "
                                   f"({','.join(repr(s) for s in states)}) ORDER BY rowid").fetchall()
        found: dict[int, sqlite3.Row] = {}
        for start in range(0, len(ids), 500):  # SQLite takes so many parameters at most
            chunk = ids[start:start + 500]
            found.update((r["rowid"], r) for r in self.db.execute(
                f"SELECT {columns} FROM jobs WHERE id IN ({','.join('?' * len(chunk))})", chunk))
        return [found[rowid] for rowid in sorted(found)]

    def replay(self, ids: list[str] | None, states: Iterable[str] = ("dead",)) -> tuple[Replayed, int]:
        """Finished jobs in `states` (dead letters, by default) back to waiting, attempts
        reset and due at once: queued, or blocked behind an unfinished job of their
        ordering key; the others of `ids` are skipped (see `_unreplayable`). Also returns
        how many of those replayed were dead."""
        wanted = [State(s) for s in states]
        replayed, dead, keys = [], 0, set()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            rows = self._rows(ids, states)
            found = {row["id"]: row for row in rows}
            skipped = [(job_id, why) for job_id in (found if ids is None else dict.fromkeys(ids))
                       if (why := _unreplayable(found.get(job_id), wanted))]  # in the order named
            passed = {job_id for job_id, _ in skipped}
            for row in rows:  # in the order accepted
                if row["id"] in passed:
                    continue
                key = row["ordering_key"]
                state = BLOCKED if key is not None and self._key_busy(key) else "queued"
                self.db.execute("UPDATE jobs SET state = ?, attempts = 0, due = 0, reason = NULL, "
                                "finished_at = NULL WHERE id = ?", (state, row["id"]))
                replayed.append(row["id"])
                dead += row["state"] == "dead"
                if state == BLOCKED:
                    keys.add(key)
            now = time.time()
            for key in keys:  # a key with blocked jobs only (an older one replayed): its oldest goes
                self._release(key, now)
        return Replayed(replayed, skipped), dead

    def purge(self, ids: list[str] | None) -> list[str]:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            done = [row["id"] for row in self._rows(ids, ("dead",)) if row["state"] == "dead"]
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
