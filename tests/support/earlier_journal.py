"""A journal file in the layout gq wrote before ordering keys, hosts and trimmed bodies
(user_version 0), for the tests of its upgrade.

As a script (run by the systemd tests inside their container, with gq's venv):
`python earlier_journal.py PATH URL N` writes N queued jobs to URL, ids q0 … q{N-1}.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Iterable
from contextlib import closing

from gq.core.job import parse

LAYOUT = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY, spec TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    due REAL NOT NULL DEFAULT 0, accepted_at REAL NOT NULL, finished_at REAL, reason TEXT,
    history TEXT NOT NULL DEFAULT '[]');
CREATE INDEX jobs_state ON jobs (state, accepted_at);
CREATE INDEX jobs_due ON jobs (due) WHERE state IN ('queued', 'retrying');
CREATE INDEX jobs_expiry ON jobs (finished_at) WHERE state = 'succeeded';
CREATE TABLE done (id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE control (seq INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL, ids TEXT, result TEXT);
"""


def write(path: str, rows: Iterable[tuple[str, str, str, float, float | None, str | None]]) -> None:
    """A new file at `path` holding `rows`: (id, url, state, accepted_at, finished_at, reason)."""
    with closing(sqlite3.connect(path)) as db, db:
        db.executescript(LAYOUT)
        db.executemany("INSERT INTO jobs (id, spec, state, accepted_at, finished_at, reason) VALUES (?, ?, ?, ?, ?, ?)",
                       ((job_id, parse({"id": job_id, "url": url}).to_json(), state, accepted, finished, reason)
                        for job_id, url, state, accepted, finished, reason in rows))


if __name__ == "__main__":
    path, url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    now = time.time()
    write(path, ((f"q{n}", url, "queued", now, None, None) for n in range(count)))
