"""`gq batch`: deliver every job of a file through the daemon's own dispatcher, then exit."""

from __future__ import annotations

import logging
import time
from typing import TextIO

import gevent

from gq.config import Config
from gq.daemon import Runtime, StopSignals
from gq.dispatcher import Dispatcher, Draining
from gq.job import Job

log = logging.getLogger("gq.batch")

SUBMIT_CHUNK = 500   # jobs handed to the dispatcher at once
PROGRESS_EVERY = 0.25


def _submit_all(dispatcher: Dispatcher, jobs: list[Job]) -> None:
    """Hand every job to the dispatcher, blocking while the queue is full (no timeout)."""
    i = 0
    while i < len(jobs):
        dispatcher.wait_until(lambda: dispatcher.room() > 0, None)
        chunk = jobs[i:i + max(1, min(dispatcher.room(), SUBMIT_CHUNK))]
        try:
            dispatcher.submit(chunk, None)
        except Draining:
            return
        i += len(chunk)


def _unfinished(runtime: Runtime) -> int:
    counts = runtime.broker.counts()
    return counts["queued"] + counts["running"] + counts["retrying"]


def _progress(runtime: Runtime, total: int, started: float, out: TextIO) -> None:
    finished = runtime.dispatcher.finished
    while True:
        done = finished["succeeded"] + finished["dead"]
        elapsed = time.monotonic() - started
        width = 30
        filled = width * done // total if total else width
        out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                  f"ok {finished['succeeded']} dead {finished['dead']} "
                  f"{done / elapsed if elapsed else 0:.0f} jobs/s ")
        out.flush()
        gevent.sleep(PROGRESS_EVERY)


def run_batch(config: Config, jobs: list[Job], progress: TextIO | None = None) -> dict:
    """Deliver `jobs`; returns the summary. SIGTERM/SIGINT drains and counts what is left."""
    started = time.monotonic()
    runtime = Runtime.build(config)
    signals = StopSignals()
    dispatcher = runtime.dispatcher
    total = len({job.id for job in jobs})
    dispatcher.start()
    submitter = gevent.spawn(_submit_all, dispatcher, jobs)
    bar = gevent.spawn(_progress, runtime, total, started, progress) if progress else None
    completed = dispatcher.wait_until(lambda: submitter.dead and _unfinished(runtime) == 0,
                                      None, signals.stop)
    if not completed:
        log.info("%s received: draining for up to %gs", signals.received, config.shutdown.drain_timeout)
        submitter.kill()
        dispatcher.drain(config.shutdown.drain_timeout, signals.hurry)
    submitter.kill()
    if bar is not None:
        bar.kill()
        progress.write("\n")
    runtime.close()
    signals.close()
    succeeded, dead = dispatcher.finished["succeeded"], dispatcher.finished["dead"]
    return {"total": total, "succeeded": succeeded, "dead": dead,
            "remaining": total - succeeded - dead,
            "seconds": round(time.monotonic() - started, 3)}
