"""`gq batch`: deliver every job of a file through the daemon's own dispatcher, then exit.

On a journal, a batch that was interrupted resumes: jobs are identified by
their `id`, or by their line when they have none, and the journal keeps the
ids of the batch's succeeded jobs, so none of them is sent again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator
from typing import TextIO

import gevent

from gq.broker import Entry, Intake, State
from gq.config import Config
from gq.core.job import Job, loads, not_json, parse
from gq.core.outcome import AttemptResult, Outcome
from gq.core.supervisor import Supervisor
from gq.dispatch.admission import Admission
from gq.dispatch.observers import Quiet
from gq.errors import Draining, GqError, JobError, UsageError
from gq.operate.runtime import Runtime
from gq.operate.signals import STOP_SIGNALS, StopSignals

log = logging.getLogger("gq.batch")

SUBMIT_CHUNK = 500   # jobs handed to the dispatcher at once
PROGRESS_EVERY = 0.25


class Tally(Quiet):
    """Final outcomes of the batch's own jobs (the journal may hold others), each id once:
    one table of the batch's ids, the outcome of each or None yet."""

    def __init__(self, ids: Iterable[str]):
        self.final: dict[str, State | None] = dict.fromkeys(ids)
        self.total = len(self.final)
        self.succeeded = 0
        self.dead = 0

    def done(self) -> bool:
        return self.succeeded + self.dead == self.total

    def finished(self, job_id: str) -> bool:
        return self.final.get(job_id) is not None

    def count(self, job_id: str, state: State) -> None:
        if state not in (State.SUCCEEDED, State.DEAD) or job_id not in self.final or self.finished(job_id):
            return
        self.final[job_id] = state
        if state is State.SUCCEEDED:
            self.succeeded += 1
        else:
            self.dead += 1

    def attempted(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        self.count(entry.job.id, entry.state)


class JobFile:
    """A JSON-lines file of jobs, read twice: whole first, to check every line and collect
    the ids (nothing is sent if one line is wrong), then line by line as the queue takes
    them: the jobs are not held, only their ids. Standard input is spooled to a file."""

    def __init__(self, path: str, shown: str, config: Config, spooled: bool):
        self.path, self.shown, self._spooled = path, shown, spooled
        self.default_url, self.policy = config.target.url, config.target.policy()

    @classmethod
    def open(cls, path: str, config: Config) -> JobFile:
        if path != "-":
            return cls(path, path, config, spooled=False)
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as spool:
            shutil.copyfileobj(sys.stdin, spool)
        return cls(spool.name, "stdin", config, spooled=True)

    def __enter__(self) -> JobFile:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._spooled:
            os.unlink(self.path)

    def __iter__(self) -> Iterator[Job]:
        """The jobs, in file order; raises UsageError naming FILE:LINE."""
        try:
            with open(self.path, encoding="utf-8", newline="\n") as f:
                for number, line in enumerate(f, 1):
                    if line.strip():
                        yield self._parse(number, line)
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"{self.shown}: cannot read: {getattr(e, 'strerror', None) or e}") from None

    def _parse(self, number: int, line: str) -> Job:
        try:
            obj = loads(line.rstrip("\r\n"))  # an error's position on the line, not past its end
        except ValueError as e:
            raise UsageError(f"{self.shown}: {not_json(e, number)}") from None
        try:
            return parse(obj, default_url=self.default_url, policy=self.policy,
                         default_id=line_id(number, obj))
        except JobError as e:
            raise UsageError(f"{self.shown}:{number}: {e}") from None

    def ids(self) -> Iterator[str]:
        return (job.id for job in self)

    def split(self, count: int, directory: str) -> list[str]:
        """Write the jobs into `count` files in `directory`, each job to the part its id
        hashes to (one id is always in one part), with its id, so that a part reads its own
        jobs only and resumes by the same ids; returns their paths."""
        paths = [os.path.join(directory, f"part{i}of{count}.jsonl") for i in range(count)]
        with contextlib.ExitStack() as stack:
            parts = [stack.enter_context(open(p, "w", encoding="utf-8")) for p in paths]
            for job in self:
                parts[zlib.crc32(job.id.encode()) % count].write(job.to_json() + "\n")
        return paths


def line_id(number: int, obj: object) -> str:
    """A batch job's id when it has none: the same for the same line of the same content
    (however its JSON is spaced or its keys ordered), so a batch resumed on a journal does
    not send its finished jobs again."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:20]
    return f"line{number}-{digest}"


def _submit_all(admission: Admission, broker: Intake, jobs: Iterable[Job], tally: Tally) -> GqError | None:
    """Hand every job in, blocking while the queue is full (no timeout). Jobs the journal
    already knows count as what they are (resumed batch). Returns the error that stopped
    it early (a journal that cannot write), if one did."""
    jobs = iter(jobs)
    while True:
        admission.wait_for_room()
        chunk = list(itertools.islice(jobs, max(1, min(admission.room(), SUBMIT_CHUNK))))
        if not chunk:
            return None
        try:
            added = admission.submit(chunk, None)
        except Draining:
            return None
        except GqError as e:
            return e
        for job_id in added.duplicates:
            entry = broker.get(job_id)
            if entry is not None:
                tally.count(job_id, entry.state)


class ProgressLine:
    """A line kept at the bottom of a terminal while log lines scroll above it. `draw` redraws
    it in place; it is also the stream the log handler writes to: a log line first clears
    the bar's line, then is written, then the bar is drawn again below it."""

    CLEAR = "\r\x1b[K"  # to the line's start, erase to its end

    def __init__(self, out: TextIO):
        self.out = out
        self.text = ""

    def draw(self, text: str) -> None:
        self.text = text
        self.out.write(f"\r{text}")
        self.out.flush()

    def write(self, text: str) -> int:
        """A log handler's write: whole lines (logging writes a record and its newline at once)."""
        self.out.write(self.CLEAR + text)
        if text.endswith("\n") and self.text:
            self.out.write(self.text)
        self.out.flush()
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def end(self) -> None:
        """The bar stays as last drawn; what follows starts on a line of its own."""
        if self.text:
            self.out.write("\n")
            self.out.flush()

    @contextlib.contextmanager
    def above(self) -> Iterator[None]:
        """While in it, gq's log lines that went to the bar's stream go through `write`."""
        handlers = [h for h in logging.getLogger("gq").handlers
                    if isinstance(h, logging.StreamHandler) and h.stream is self.out]
        for handler in handlers:
            handler.setStream(self)  # a stream: it writes and flushes
        try:
            yield
        finally:
            for handler in handlers:
                handler.setStream(self.out)


def bar_text(tally: Tally, elapsed: float, width: int = 30) -> str:
    total, done = tally.total, tally.succeeded + tally.dead
    filled = width * done // total if total else width
    return (f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} ok {tally.succeeded} dead {tally.dead} "
            f"{done / elapsed if elapsed else 0:.0f} jobs/s ")


def _progress(tally: Tally, started: float, line: ProgressLine) -> None:
    while True:
        line.draw(bar_text(tally, time.monotonic() - started))
        gevent.sleep(PROGRESS_EVERY)


def run_batch(config: Config, jobs: JobFile, progress: TextIO | None = None) -> dict:
    """Deliver the file's jobs, once every line is checked; returns the summary once each is
    succeeded or dead (on a journal, unfinished jobs of an earlier run are recovered and run
    too). SIGTERM/SIGINT drains, and what is left counts as remaining."""
    started = time.monotonic()
    signals = StopSignals()
    line = ProgressLine(progress) if progress is not None else None
    try:
        tally = Tally(jobs.ids())  # raises before anything is sent if a line is wrong
        with line.above() if line is not None else contextlib.nullcontext():
            _deliver(config, jobs, tally, signals, started, line)
    finally:
        signals.close()
    return {"total": tally.total, "succeeded": tally.succeeded, "dead": tally.dead,
            "remaining": tally.total - tally.succeeded - tally.dead,
            "seconds": round(time.monotonic() - started, 3)}


def _deliver(config: Config, jobs: JobFile, tally: Tally, signals: StopSignals, started: float,
             progress: ProgressLine | None) -> None:
    # A loop that fails for good stops the batch as a signal would: what is left is remaining.
    # A signal while it waits for a command to let the journal go stops it there.
    runtime = Runtime.build(config, Supervisor(on_fatal=lambda why: signals.stop.set()), batch=True,
                            observers=[tally], waiting=lambda _: not signals.stop.is_set())
    ledger = runtime.broker.batch_ledger()
    if ledger:  # an earlier run's successes are not sent again
        for job_id in ledger.batch_done(tally.final):
            tally.count(job_id, State.SUCCEEDED)
    dispatcher = runtime.dispatcher
    dispatcher.start()
    # A job finished already (in an earlier run, or earlier in the file: the same id) is
    # not handed over again: the broker forgets succeeded jobs at once in a batch.
    unfinished = (job for job in jobs if not tally.finished(job.id))
    submitter = gevent.spawn(_submit_all, dispatcher.admission, runtime.broker, unfinished, tally)
    bar = gevent.spawn(_progress, tally, started, progress) if progress else None
    dispatcher.wait_until(lambda: submitter.dead and (tally.done() or submitter.value), None, signals.stop)
    if signals.stop.is_set():
        log.info("%s received: draining for up to %gs", signals.received, config.shutdown.drain_timeout)
        submitter.kill()
    elif submitter.value:
        log.error("stopping the batch: %s", submitter.value)
    # Whatever else is in flight (a journal's older jobs) finishes or stays in the journal.
    dispatcher.drain(config.shutdown.drain_timeout, signals.hurry)
    if bar is not None and progress is not None:
        bar.kill()
        progress.draw(bar_text(tally, time.monotonic() - started))
        progress.end()
    if ledger and tally.total and tally.done():  # complete: the ids of other batches may go
        ledger.batch_done(tally.final, forget_others=True)
    runtime.close()


# -- several processes: one core each

def parse_part(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise UsageError(f"usage error: --part must be I/N with I < N, got {text!r}")
    return int(index), int(count)


def part_config(config: Config, index: int, count: int) -> Config:
    """Part I of N keeps its own journal beside the configured one (PATH.partIofN...), so a
    batch resumed with the same N finds each part's leftovers (a part's share of the jobs
    is by id: JobFile.split)."""
    if count == 1 or not config.journal.path:
        return config
    stem, suffix = os.path.splitext(config.journal.path)
    journal = dataclasses.replace(config.journal, path=f"{stem}.part{index}of{count}{suffix}")
    return dataclasses.replace(config, journal=journal)


def run_processes(config_path: str | None, jobs: JobFile, count: int, journal: str | None = None) -> dict:
    """Split the file (checking every line), run `count` child batches, one on each part;
    sum their summaries. SIGTERM/SIGINT are passed on: each child drains as a batch does.
    `journal`: the --journal given, passed on (each part's own is beside it)."""
    started = time.monotonic()
    base = [sys.executable, "-m", "gq", "batch"] + (["-c", config_path] if config_path else [])
    base += ["--journal", journal] if journal is not None else []
    signals = StopSignals()  # from here a SIGTERM stops in order: the split files are removed
    try:
        with tempfile.TemporaryDirectory(prefix="gq-batch-") as directory:
            parts = jobs.split(count, directory)
            # In sessions of their own, the parts take their signals from this process only
            # (Ctrl-C at a terminal would otherwise reach each part twice: a second one hurries);
            # blocked until a part handles them, so that one passed on at once waits for it.
            children = [subprocess.Popen(base + ["--part", f"{i}/{count}", path], stdout=subprocess.PIPE,
                                         text=True, start_new_session=True, preexec_fn=_block_stop_signals)
                        for i, path in enumerate(parts)]
            forwarder = gevent.spawn(_forward_signals, signals, children)
            try:
                outputs = [child.communicate()[0] for child in children]
            finally:
                forwarder.kill()
    finally:
        signals.close()
    summary: dict[str, float] = {"total": 0, "succeeded": 0, "dead": 0, "remaining": 0}
    for i, (child, out) in enumerate(zip(children, outputs)):
        try:
            part = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise GqError(f"batch part {i}/{count} failed (exit {child.returncode})") from None
        for key in summary:
            summary[key] += part[key]
    summary["seconds"] = round(time.monotonic() - started, 3)
    return summary


def _block_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def _forward_signals(signals: StopSignals, children: list[subprocess.Popen]) -> None:
    for event, sig in ((signals.stop, signal.SIGTERM), (signals.hurry, signal.SIGTERM)):
        event.wait()
        for child in children:
            if child.poll() is None:
                child.send_signal(sig)
