"""`gq batch`: deliver every job of a file through the daemon's own dispatcher, then exit.

On a journal, a batch that was interrupted resumes: jobs are identified by
their `id`, or by their line when they have none, so the jobs of the same
file already finished are not sent again.
"""

from __future__ import annotations

import logging
import time
from typing import TextIO

import gevent

from gq.broker import State
from gq.config import Config
from gq.daemon import Runtime, StopSignals
from gq.dispatcher import Dispatcher, Draining, Observer
from gq.job import Job
from gq.outcome import Verdict

log = logging.getLogger("gq.batch")

SUBMIT_CHUNK = 500   # jobs handed to the dispatcher at once
PROGRESS_EVERY = 0.25


class Tally(Observer):
    """Final outcomes of the batch's own jobs (the journal may hold others)."""

    def __init__(self, ids: set[str]):
        self.ids = ids
        self.succeeded = 0
        self.dead = 0

    def done(self) -> bool:
        return self.succeeded + self.dead == len(self.ids)

    def count(self, state: State) -> None:
        if state is State.SUCCEEDED:
            self.succeeded += 1
        elif state is State.DEAD:
            self.dead += 1

    def attempted(self, entry, result, outcome) -> None:
        if outcome.verdict is not Verdict.RETRY and entry.job.id in self.ids:
            self.count(entry.state)


def _submit_all(dispatcher: Dispatcher, jobs: list[Job], tally: Tally) -> None:
    """Hand every job to the dispatcher, blocking while the queue is full (no timeout).
    Jobs the journal already knows count as what they are (resumed batch)."""
    i = 0
    while i < len(jobs):
        dispatcher.wait_until(lambda: dispatcher.room() > 0, None)
        chunk = jobs[i:i + max(1, min(dispatcher.room(), SUBMIT_CHUNK))]
        try:
            added = dispatcher.submit(chunk, None)
        except Draining:
            return
        for job_id in added.duplicates:
            entry = dispatcher.broker.get(job_id)
            if entry is not None:
                tally.count(entry.state)
        i += len(chunk)


def _progress(tally: Tally, total: int, started: float, out: TextIO) -> None:
    while True:
        done = tally.succeeded + tally.dead
        elapsed = time.monotonic() - started
        width = 30
        filled = width * done // total if total else width
        out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                  f"ok {tally.succeeded} dead {tally.dead} "
                  f"{done / elapsed if elapsed else 0:.0f} jobs/s ")
        out.flush()
        gevent.sleep(PROGRESS_EVERY)


def run_batch(config: Config, jobs: list[Job], progress: TextIO | None = None) -> dict:
    """Deliver `jobs`; returns the summary once each is succeeded or dead (on a journal,
    unfinished jobs of an earlier run are recovered and run too). SIGTERM/SIGINT drains,
    and what is left counts as remaining."""
    started = time.monotonic()
    tally = Tally({job.id for job in jobs})
    runtime = Runtime.build(config)
    runtime.dispatcher.observers.append(tally)
    signals = StopSignals()
    dispatcher = runtime.dispatcher
    dispatcher.start()
    submitter = gevent.spawn(_submit_all, dispatcher, jobs, tally)
    bar = gevent.spawn(_progress, tally, len(tally.ids), started, progress) if progress else None
    completed = dispatcher.wait_until(lambda: submitter.dead and tally.done(), None, signals.stop)
    if not completed:
        log.info("%s received: draining for up to %gs", signals.received, config.shutdown.drain_timeout)
        submitter.kill()
    # Whatever else is in flight (a journal's older jobs) finishes or stays in the journal.
    dispatcher.drain(config.shutdown.drain_timeout, signals.hurry)
    if bar is not None:
        bar.kill()
        progress.write("\n")
    runtime.close()
    signals.close()
    total = len(tally.ids)
    return {"total": total, "succeeded": tally.succeeded, "dead": tally.dead,
            "remaining": total - tally.succeeded - tally.dead,
            "seconds": round(time.monotonic() - started, 3)}
