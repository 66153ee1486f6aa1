"""The journal broker's dispatch: the due jobs handed to the dispatcher (from its feed), each
attempt's start committed before the attempt goes, and its outcome written behind
(gq/broker/journal.py accepts the jobs and answers for the file)."""

from __future__ import annotations

import logging
import time

from gq.broker import Counts, Entry, State, drop_payload, record
from gq.broker.journal_feed import JournalFeed
from gq.broker.journal_writer import FAILED_WRITE_PAUSE, JournalWriter
from gq.core.outcome import AttemptResult, Outcome, Verdict

log = logging.getLogger("gq.journal")


class JournalDispatch:
    """Moves the jobs that `feed` holds through their attempts, keeping the broker's `counts`
    in step and handing `writer` what changed. `batch` (gq batch): a job that succeeds is
    deleted at once, only its id kept; else a succeeded job's row is kept `keep_succeeded`
    seconds (0: deleted at once)."""

    def __init__(self, feed: JournalFeed, counts: Counts, writer: JournalWriter, batch: bool, keep_succeeded: float):
        self.feed, self.counts, self.writer = feed, counts, writer
        self.batch, self.keep_succeeded = batch, keep_succeeded

    def take(self, limit: int, timeout: float) -> list[Entry]:
        return self.feed.take(limit, timeout)

    def started(self, entry: Entry) -> None:
        """Returns once the attempt is committed: a job whose attempts crash or freeze the
        process uses them up like any other. When it cannot be committed (a full disk, an
        I/O error), the attempt does not go ahead: a start not on record would be a
        delivery no restart knows of, sent again and never shown as one of unknown outcome.
        The job is handed back, to run once the file takes writes again."""
        was = entry.state
        entry.attempts += 1
        self.counts.move(entry, State.RUNNING)
        if self.writer.commit(entry):
            return
        entry.attempts -= 1
        self.counts.move(entry, was)
        log.warning("job %s: the start of its attempt could not be written; it waits until the journal takes "
                    "writes again", entry.job.id)
        self.defer(entry, time.time() + FAILED_WRITE_PAUSE)

    def settle(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        record(entry, result)
        self.feed.held.pop(entry.job.id, None)
        if outcome.verdict is Verdict.SUCCESS:
            drop_payload(entry, self.writer.keep_payload)
            self.counts.move(entry, State.SUCCEEDED)
            if self.batch or not self.keep_succeeded:  # its row goes (a batch keeps its id)
                self.counts.shift(State.SUCCEEDED, None)
                self.writer.forget(entry.job)
                if self.batch:
                    self.writer.done(entry.job.id)
                return
        elif outcome.verdict is Verdict.FAIL:
            entry.reason = outcome.reason
            self.counts.move(entry, State.DEAD)
        else:
            entry.due = time.time() + outcome.delay
            self.counts.move(entry, State.RETRYING)
        self.writer.change(entry)

    def defer(self, entry: Entry, due: float) -> None:
        """Back to the file, unattempted, until `due`."""
        self.feed.held.pop(entry.job.id, None)
        entry.due = due
        self.writer.change(entry)
