"""The journal file's start: its layout made as a writer opens it, or a file of an earlier
version brought up to date; and, at a daemon's start, what the last process left behind
recovered (gq/broker/journal_file.py runs the statements of a job's path on it)."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable

from gq.broker import Entry, journal_ledger
from gq.broker.journal_lookups import TAKEN
from gq.broker.journal_operations import KEYED
from gq.core import hosts

log = logging.getLogger("gq")

WAITING = "state IN ('queued', 'retrying', 'scheduled')"  # the jobs_waiting index's own condition, word for word
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
    host         TEXT,                       -- its destination (gq.core.hosts.destination), for finding
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
CREATE TABLE IF NOT EXISTS audit (         -- operator actions (gq/core/audit.py): the newest AUDIT_KEEP
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    action TEXT NOT NULL                    -- the row's JSON
);
"""
# Newest first by acceptance, for GET /v1/jobs: through jobs_accepted with no filter,
# jobs_state by state, jobs_host by host (and state), jobs_ordering by ordering key (and
# state); an id prefix through the id's own index, its matches sorted.
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
CREATE INDEX IF NOT EXISTS jobs_ordering ON jobs (ordering_key, state, accepted_at) WHERE ordering_key IS NOT NULL;
"""


def _destination(spec: str) -> str:
    try:
        return hosts.destination(str(json.loads(spec).get("url", "")))
    except (ValueError, AttributeError):
        return ""


class JournalStartup:
    """A writer's connection `db` to the file at `path` (a JournalFile) as it starts: laid out
    as it opens, recovered as a daemon starts on it. Rows are read back as the job's path
    reads them (`_readable`), and the next due job found as it finds it (`_next_due`)."""

    db: sqlite3.Connection
    path: str
    _readable: Callable[[list[sqlite3.Row], float], tuple[list[Entry], list[str], list[str]]]
    _next_due: Callable[[], float]

    def _lay_out(self) -> None:
        """Create the tables and indexes, or bring a file of an earlier version up to date:
        the columns it lacks added (each job's host read from its URL), old indexes dropped."""
        self.db.executescript(TABLES)
        self.db.executescript(journal_ledger.TABLE)
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

    def recover(self) -> tuple[dict[str, int], list[Entry], float]:
        """At start: jobs read into memory by the last process wait on disk again; returns
        the file's ledger, the jobs whose attempt was under way, and when the first waiting
        job is due (inf: none)."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("UPDATE jobs SET state = 'queued' WHERE state = ?", (TAKEN,))
            running, _, _ = self._readable(
                self.db.execute("SELECT * FROM jobs WHERE state = 'running'").fetchall(), time.time())
            ledger = journal_ledger.ledger_of(self.db)
        return ledger, running, self._next_due()
