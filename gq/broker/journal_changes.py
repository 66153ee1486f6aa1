"""An operator's changes to the jobs of a running journal (cancel, replay, purge): made in
the file (journal_operations), and in memory in step with it (gq/broker/journal.py hands
them on from the API and from `gq dlq`'s control table)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any

from gq.broker import CANCELLABLE, Conflict, Counts, Replayed, State
from gq.broker.journal_access import JournalAccess
from gq.broker.journal_feed import JournalFeed
from gq.broker.journal_file import BLOCKED, TAKEN, JournalFile
from gq.broker.journal_operations import CANCELLABLE_ROWS
from gq.broker.journal_writer import JournalWriter
from gq.errors import StorageUnavailable


class JournalChanges:
    """Cancels, replays and purges on `db`, keeping the broker's `counts`, what `feed` holds
    (a cancelled job leaves it; the feeder looks again at the jobs let go or replayed) and
    `writer`'s pending changes (a job not yet written is cancelled there) in step."""

    def __init__(self, db: JournalAccess, counts: Counts, feed: JournalFeed, writer: JournalWriter):
        self.db, self.counts, self.feed, self.writer = db, counts, feed, writer

    def cancel(self, job_id: str) -> bool:
        """A job in memory (read ahead, queued or parked here, or a retry not yet written)
        is cancelled there, and returns once that is committed: the dispatcher skips it.
        Any other is cancelled in the file, if it waits there."""
        entry = self.feed.held.get(job_id) or self.writer.pending(job_id)
        if entry is None:
            was, released = self._write(JournalFile.cancel, job_id, time.time())
            if was in CANCELLABLE_ROWS:
                self.counts.shift(State.QUEUED if was == BLOCKED else State(was), State.CANCELLED)
                if released:  # the next job of its key waits in the file now: the feeder looks again
                    self.feed.wrote(0, [], time.time(), [released])
                return True
            if was != TAKEN:
                if not was:
                    return False
                raise Conflict(job_id, State(was))
            # Taken while this waited for the file: it is here now, or already ran meanwhile.
            entry = self.feed.held.get(job_id) or self.writer.pending(job_id)
            if entry is None:
                raise Conflict(job_id, State.RUNNING)
        if entry.state not in CANCELLABLE:
            raise Conflict(job_id, entry.state)
        self.feed.held.pop(job_id, None)
        self.counts.move(entry, State.CANCELLED)
        # The 200 promises it never runs: a crash after it must not undo it. A write that
        # failed promises nothing (503): the cancel stays pending, written with the next one.
        if not self.writer.commit(entry):
            raise StorageUnavailable(f"journal: the cancel of {job_id} could not be written; try again")
        return True

    def replay(self, ids: Iterable[str] | None, states: Iterable[State] = (State.DEAD,)) -> Replayed:
        done, dead = self._write(JournalFile.replay, None if ids is None else list(ids), [s.value for s in states])
        self.counts.shift(State.DEAD, State.QUEUED, dead)
        self.counts.shift(State.SUCCEEDED, State.QUEUED, len(done.ids) - dead)  # the others replayed
        self.feed.look_again()
        return done

    def purge(self, ids: Iterable[str] | None) -> list[str]:
        purged = self._write(JournalFile.purge, None if ids is None else list(ids))
        self.counts.shift(State.DEAD, None, len(purged))
        return purged

    def _write(self, function: Callable[..., Any], *args: Any) -> Any:
        """The file's change, or StorageUnavailable when it cannot be written (a full disk, an
        I/O error): the intake answers 503, as it does to jobs then."""
        try:
            return self.db.write(function, *args)
        except sqlite3.OperationalError as e:
            raise StorageUnavailable(f"journal: write failed: {e}") from None
