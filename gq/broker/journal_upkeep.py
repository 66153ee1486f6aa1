"""The journal's two housekeeping loops: `gq dlq` commands from other processes, and the
expiry of succeeded jobs past journal.keep_succeeded. Both run until `stop` is set."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable
from typing import Protocol

import gevent
from gevent.event import Event

from gq.broker import Replayed
from gq.broker.journal_access import JournalAccess
from gq.broker.journal_file import JournalFile
from gq.core.audit import Audit, dlq_done

log = logging.getLogger("gq.journal")

CONTROL_POLL = 0.5    # seconds between looks for dlq commands from other processes
EXPIRE_EVERY = 1.0    # seconds between deletions of succeeded jobs past keep_succeeded
EXPIRE_STEP = 500     # rows deleted per transaction, so that a commit never waits long for it


class Kept(Protocol):
    """What the loops use of the journal broker (gq/broker/journal.py) that runs them."""

    db: JournalAccess
    audit: Audit | None
    keep_succeeded: float

    def replay(self, ids: Iterable[str] | None) -> Replayed: ...

    def purge(self, ids: Iterable[str] | None) -> list[str]: ...

    def expire(self, before: float, limit: int) -> int: ...


def answer_dlq(broker: Kept, stop: Event) -> None:
    """Carry out the replays and purges that `gq dlq` left in the control table."""
    while not stop.wait(CONTROL_POLL):
        try:
            for seq, op, ids in broker.db.write(JournalFile.requests):
                done = broker.replay(ids).ids if op == "replay" else broker.purge(ids)
                broker.db.write(JournalFile.answered, seq, done)
                log.info("dlq %s of %d job(s), as gq dlq asked", op, len(done))
                if broker.audit is not None:
                    dlq_done(broker.audit, op, ids, done)
        except sqlite3.Error as e:
            log.warning("journal: cannot read dlq commands: %s; will try again", e)


def expire(broker: Kept, stop: Event) -> None:
    """Delete succeeded jobs past keep_succeeded, a few at a time."""
    while not stop.wait(EXPIRE_EVERY):
        try:
            before = time.time() - broker.keep_succeeded
            while broker.expire(before, EXPIRE_STEP) == EXPIRE_STEP:
                gevent.sleep(0)
        except sqlite3.Error as e:
            log.warning("journal: cannot delete expired succeeded jobs: %s; will try again", e)
