"""`gq verify`: a journal file checked whole, whether a daemon runs on it or not: SQLite's own
integrity check, and the ledger's sum (gq/core/lifecycle.py: every job accepted is in one
state or forgotten), read in one transaction on a read-only connection."""

from __future__ import annotations

import os
import sqlite3

from gq.broker.journal_file import JournalMissing
from gq.broker.journal_ledger import ledger_of
from gq.core.lifecycle import said, unbalanced

INTEGRITY_LINES = 10  # of SQLite's integrity report, shown at most


def verify(path: str) -> tuple[list[str], str]:
    """What is wrong with the journal at `path` (none: it holds), and its ledger as one line."""
    if not os.path.exists(path):
        raise JournalMissing(f"journal: {path} does not exist (journal.path)")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=10)
    try:
        db.execute("BEGIN")  # one reading: a daemon's commits meanwhile are not half seen
        report = [row[0] for row in db.execute("PRAGMA integrity_check")]
        problems = [] if report == ["ok"] else [f"integrity: {line}" for line in report[:INTEGRITY_LINES]]
        try:
            ledger = ledger_of(db)
        except sqlite3.OperationalError as e:  # a file no gq of this version has opened yet
            return problems + [f"ledger: none ({e}); a daemon of this version opening the file begins it"], ""
        db.execute("COMMIT")
    except sqlite3.DatabaseError as e:
        return [f"cannot read the file: {e}"], ""
    finally:
        db.close()
    why = unbalanced(ledger)
    return problems + ([f"ledger: {why}"] if why else []), said(ledger)
