"""Who is told what happens to jobs (metrics, a batch's tally): told, never asked; an
observer's error is logged and reaches neither the job path nor the other observers."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from gq.broker import Entry
from gq.outcome import AttemptResult, Outcome

log = logging.getLogger("gq.dispatcher")


class Observer:
    """Told what happens to jobs; each method does nothing unless overridden."""

    def accepted(self, count: int) -> None:
        """`count` new jobs were accepted."""

    def dequeued(self, waited: float) -> None:
        """A job left the queue for a worker after `waited` seconds."""

    def attempted(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        """An attempt ended; `entry.state` is already its outcome's."""

    def cancelled(self, job_id: str) -> None:
        """A job was cancelled: it is final, never attempted again."""


class Observers:
    """Several observers, told in turn."""

    def __init__(self, observers: Iterable[Observer] = ()):
        self._all = list(observers)

    def tell(self, event: str, *args: Any) -> None:
        """Call `event` (a method of Observer) on each."""
        for observer in self._all:
            try:
                getattr(observer, event)(*args)
            except Exception:
                log.exception("observer %r failed on %s", observer, event)
