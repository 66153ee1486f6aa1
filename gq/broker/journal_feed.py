"""What the journal broker holds in memory from its file: the jobs taken from it, and the
read-ahead of the due ones that the dispatcher's feeder takes (gq/broker/journal.py accepts
them, journal_dispatch settles them, journal_changes changes them)."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import deque
from collections.abc import Iterable

from gevent.event import Event

from gq.broker import Counts, Entry, State
from gq.broker.journal_access import JournalAccess
from gq.broker.journal_file import JournalFile
from gq.broker.journal_writer import FAILED_WRITE_PAUSE

log = logging.getLogger("gq.journal")

READ_AHEAD = 256      # jobs read from the file at a time, held until the queue has room


class JournalFeed:
    """The jobs taken from the file (`held`: read ahead, queued, parked or running here; the
    broker adds those it takes at intake and lets each go as it leaves memory), those of them
    not yet handed to the dispatcher (the read-ahead), and when the file's next waiting job is
    due. Reading ahead moves `counts` (the broker's) as the jobs read are taken; `stop` ends
    the pause after a failed read."""

    def __init__(self, db: JournalAccess, counts: Counts, stop: Event, next_due: float,
                 interrupted: Iterable[Entry] = ()):
        """`next_due`: when the file's next waiting job is due (-inf: look at the file);
        `interrupted`: jobs whose attempt was under way when the last process ended."""
        self.db, self.counts, self._stop = db, counts, stop
        self.held: dict[str, Entry] = {}       # taken from the file: read ahead, queued or running here
        self._ahead: deque[Entry] = deque()    # taken, not yet handed to the dispatcher
        self._writes = 0                # commits so far that may have made a job due sooner
        self._due = Event()             # a job may be due in the file sooner than thought
        self._next_due = next_due
        for entry in interrupted:
            entry.interrupted = True
            self.counts.move(entry, State.QUEUED)
            self._keep(entry)

    def waiting(self) -> bool:
        """Whether jobs taken or due in the file wait to run (new ones go after them)."""
        return bool(self._ahead) or self._next_due <= time.time()

    def wrote(self, stored: int, dues: list[float], written_at: float, released: list[str]) -> None:
        """See journal_writer.Commits.wrote."""
        for state in released:  # let go from behind their key: counted as queued until now
            if state == "scheduled":
                self.counts.shift(State.QUEUED, State.SCHEDULED)
        if stored or dues or released:  # jobs wait in the file now: the feeder looks again
            self._writes += 1
            self._next_due = min([self._next_due, *dues] + ([written_at] if stored or released else []))
            self._due.set()

    def look_again(self) -> None:
        """Jobs may be due in the file now (replayed): the feeder looks at once."""
        self._next_due = float("-inf")
        self._due.set()

    def take(self, limit: int, timeout: float) -> list[Entry]:
        if not self._ahead:
            self._read_ahead()
        if not self._ahead and timeout > 0:
            self._due.wait(max(0.0, min(timeout, self._next_due - time.time())))
            self._due.clear()
            self._read_ahead()
        return [self._ahead.popleft() for _ in range(min(limit, len(self._ahead)))]

    def _read_ahead(self) -> None:
        now = time.time()
        if self._next_due > now:
            return
        writes = self._writes
        try:
            entries, unreadable, released, next_due = self.db.write(JournalFile.take, READ_AHEAD, now)
        except (sqlite3.Error, OSError) as e:
            log.warning("journal: cannot read due jobs: %s; will try again", e)
            self._stop.wait(FAILED_WRITE_PAUSE)
            return
        for state in unreadable:
            log.error("journal: a job could not be read back from the file; kept as a dead letter")
            self.counts.shift(State(state), State.DEAD)
        self.wrote(0, [], now, released)
        for entry in entries:
            self.counts.move(entry, State.QUEUED)  # a due retry is queued again
            self._keep(entry)
        # A commit meanwhile may have made a job due sooner than the file said: look again.
        more = len(entries) + len(unreadable) == READ_AHEAD or writes != self._writes
        self._next_due = float("-inf") if more else next_due

    def _keep(self, entry: Entry) -> None:
        self.held[entry.job.id] = entry
        self._ahead.append(entry)
