"""The journal file's ledger (gq/core/lifecycle.py: every job accepted, by state or
forgotten): the jobs ever accepted and those forgotten (their rows gone) are two counts in
the `ledger` table, moved in the transaction that adds or deletes the rows; the states are
the rows themselves. Read in one statement, it is one consistent reading."""

from __future__ import annotations

import sqlite3

from gq.broker.journal_lookups import shown
from gq.core.lifecycle import ACCEPTED, FORGOTTEN

TABLE = f"""
CREATE TABLE IF NOT EXISTS ledger (        -- the jobs ever accepted, and those forgotten (rows gone)
    name  TEXT PRIMARY KEY,
    count INTEGER NOT NULL
) WITHOUT ROWID;
-- A file made by an earlier gq begins its ledger with the jobs it holds (and a batch's done
-- ids), once: when the ledger is new.
INSERT INTO ledger (name, count) SELECT '{ACCEPTED}', (SELECT count(*) FROM jobs) + (SELECT count(*) FROM done)
    WHERE NOT EXISTS (SELECT 1 FROM ledger WHERE name = '{ACCEPTED}');
INSERT INTO ledger (name, count) SELECT '{FORGOTTEN}', (SELECT count(*) FROM done)
    WHERE NOT EXISTS (SELECT 1 FROM ledger WHERE name = '{FORGOTTEN}');
"""
READ = f"""SELECT name, count FROM ledger WHERE name IN ('{ACCEPTED}', '{FORGOTTEN}') UNION ALL
SELECT state, count(*) FROM jobs GROUP BY state"""


def count(db: sqlite3.Connection, accepted: int = 0, forgotten: int = 0) -> None:
    """Within the transaction under way, which added `accepted` rows and deleted `forgotten`."""
    if accepted or forgotten:
        db.execute(f"UPDATE ledger SET count = count + CASE name WHEN '{ACCEPTED}' THEN ? ELSE ? END "
                   f"WHERE name IN ('{ACCEPTED}', '{FORGOTTEN}')", (accepted, forgotten))


def ledger_of(db: sqlite3.Connection) -> dict[str, int]:
    """The file's ledger (a blocked or taken job is queued)."""
    ledger: dict[str, int] = {}
    for name, n in db.execute(READ):
        name = name if name in (ACCEPTED, FORGOTTEN) else shown(name).value
        ledger[name] = ledger.get(name, 0) + n
    return ledger
