"""Who is told what happens to jobs (metrics, the console's activity, a batch's tally): told,
never asked; an observer's error is logged and reaches neither the job path nor the other
observers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from gq.broker import Entry
from gq.core.outcome import AttemptResult, Outcome, Verdict

log = logging.getLogger("gq.dispatcher")


class Observer(Protocol):
    """Told what happens to jobs, by the dispatcher's parts, on the job's greenlet: a method
    must not block."""

    def accepted(self, count: int) -> None:
        """`count` new jobs were accepted."""

    def dequeued(self, waited: float) -> None:
        """A job left the queue for a worker after `waited` seconds."""

    def attempted(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        """An attempt ended; `entry.state` is already its outcome's."""

    def cancelled(self, job_id: str) -> None:
        """A job was cancelled: it is final, never attempted again."""


class Quiet:
    """An Observer that hears nothing: a base for one that listens to some events only."""

    def accepted(self, count: int) -> None:
        pass

    def dequeued(self, waited: float) -> None:
        pass

    def attempted(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        pass

    def cancelled(self, job_id: str) -> None:
        pass


class Observers:
    """Several observers, told in turn: an Observer itself. One that raises is logged and
    skipped; the others are still told."""

    def __init__(self, observers: Iterable[Observer] = ()):
        self._all = list(observers)

    def accepted(self, count: int) -> None:
        self._tell("accepted", lambda o: o.accepted(count))

    def dequeued(self, waited: float) -> None:
        self._tell("dequeued", lambda o: o.dequeued(waited))

    def attempted(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        self._tell("attempted", lambda o: o.attempted(entry, result, outcome))

    def cancelled(self, job_id: str) -> None:
        self._tell("cancelled", lambda o: o.cancelled(job_id))

    def _tell(self, event: str, call: Callable[[Observer], None]) -> None:
        for observer in self._all:
            try:
                call(observer)
            except Exception:
                log.exception("observer %r failed on %s", observer, event)


FINISHED = ("succeeded", "dead", "cancelled")


class Finished(Quiet):
    """Jobs finished since start, by how (`FINISHED`): the one tally the dispatcher's
    snapshot, and through it `gq status`, the drain's summary and gq_jobs_finished, read."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(FINISHED, 0)

    def attempted(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        if outcome.verdict is Verdict.SUCCESS:
            self.counts["succeeded"] += 1
        elif outcome.verdict is Verdict.FAIL:
            self.counts["dead"] += 1

    def cancelled(self, job_id: str) -> None:
        self.counts["cancelled"] += 1
