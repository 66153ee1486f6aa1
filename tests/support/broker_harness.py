"""The three brokers behind one harness, for the broker contract suite
(tests/support/broker_contract.py) and its stateful test (tests/process/test_broker_states.py).

Each broker is built in this process as gq/operate/runtime.py builds it: memory only
(MemoryBroker), the embedded journal (JournalBroker on a file of the test's own), or
Redis Streams (RedisBroker on a real redis-server, under a key prefix of its own).
The test process is not monkey-patched: gevent's hub and threadpool still run the
brokers' loops whenever the test waits on gevent (every wait here does), and Redis
commands block the thread, which is fine for a test. Only the memory broker takes a clock;
the journal and Redis read time.time() themselves, so the tests use real time: due times
a fraction of a second ahead that they wait for, or far ahead or behind.

The harness drives a broker through its public interface (gq.broker's Intake,
Dispatch and Operations), as the dispatcher does: it drops a job found cancelled
before or at its start, and it never defers a job it sees cancelled. A few things
the interface does not offer yet are reached for inside the broker; each such place
is marked INTERFACE: and says what the interface should offer instead.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent

from gq.broker import Added, Broker, Entry, State
from gq.broker.journal import JournalBroker
from gq.broker.memory import KEEP_FINISHED, MemoryBroker
from gq.core.job import Job, parse
from gq.core.outcome import AttemptResult, Outcome, Verdict, recorded
from support import wait_for

KINDS = ("memory", "journal", "redis")
URL = "http://example.com/hook"
DEADLINE = 2.0          # seconds any awaited condition may take before the test fails (10 times
                        # the longest a broker needs: a Redis move, 0.2 s)
TAKE_WAIT = 0.05        # seconds one take() may block when nothing is due
# A Redis broker moves due retries, deferred and scheduled jobs back onto its stream every
# 0.2 s (redis_maintenance.MOVE_EVERY): a job due now may take that long to be takeable.
DUE_MARGIN = {"memory": 0.0, "journal": 0.0, "redis": 0.3}

SUCCESS = Outcome(Verdict.SUCCESS, answered=True)


def retry(delay: float) -> Outcome:
    return Outcome(Verdict.RETRY, delay=delay, answered=False)


def dead(reason: str = "permanent status 404") -> Outcome:
    return Outcome(Verdict.FAIL, reason=reason, answered=True)


def answer(status: int | None = 200) -> AttemptResult:
    return AttemptResult(time.time(), 0.001, status=status, error=None if status else "connect: refused")


def result_of(outcome: Outcome) -> AttemptResult:
    return answer({Verdict.SUCCESS: 200, Verdict.RETRY: 503, Verdict.FAIL: 404}[outcome.verdict])


def job(job_id: str, **fields: Any) -> Job:
    """A job as the intake parses it (so a run_at given as text is read as the intake reads it)."""
    return parse({"id": job_id, "url": URL, **fields})


def pause(seconds: float) -> None:
    """Let time pass while the brokers' loops run (gevent's hub)."""
    gevent.sleep(seconds)


def wait_until(moment: float) -> None:
    """Let the wall clock pass `moment` (a job's due time), the brokers' loops running."""
    while time.time() < moment:
        gevent.sleep(min(0.05, max(0.001, moment - time.time())))


def poll(condition: Callable[[], Any], timeout: float = DEADLINE, what: str = "a condition",
         every: float = 0.005) -> Any:
    """`condition()`'s first truthy value, the broker's greenlets running meanwhile; fails
    the test after `timeout` seconds."""
    return wait_for(condition, timeout, what, every, sleep=gevent.sleep)


@dataclass
class Options:
    """What a test may set of a broker; each broker takes what applies to it."""

    max_backlog: int = 10_000_000        # journal.max_backlog (memory, journal); broker.max_backlog (Redis)
    keep_succeeded: float = 3600.0       # journal.keep_succeeded (memory too: keep_seconds)
    keep_finished: int = KEEP_FINISHED   # memory: finished jobs remembered
    status_ttl: int = 86400              # broker.status_ttl (Redis)
    heartbeat: float = 1.0               # broker.heartbeat (Redis)
    keep_payload: bool = False           # journal.keep_succeeded_payload (every broker)


_prefixes = itertools.count()


@dataclass
class Storage:
    """Where one broker's jobs live, so that a second instance can open the same: a journal
    file, a Redis key prefix (memory has none)."""

    kind: str
    path: str = ""
    redis_url: str = ""
    prefix: str = ""
    options: Options = field(default_factory=Options)

    def open(self, clock: Callable[[], float] = time.time) -> Broker:
        """A broker on this storage, as gq/operate/runtime.py's open_broker builds it."""
        o = self.options
        if self.kind == "memory":
            return MemoryBroker(clock=clock, keep_finished=o.keep_finished, max_backlog=o.max_backlog,
                                keep_seconds=o.keep_succeeded, keep_payload=o.keep_payload)
        if self.kind == "journal":
            return JournalBroker(self.path, max_backlog=o.max_backlog, min_free_mb=0,
                                 keep_succeeded=o.keep_succeeded, keep_payload=o.keep_payload)
        from gq.broker.redis_streams import RedisBroker
        from gq.broker.sections import BrokerConfig
        # Built directly: the config's checks (status_ttl >= 60, say) are not applied, so a
        # test may shorten what it needs to see pass.
        config = BrokerConfig(kind="redis", url=self.redis_url, prefix=self.prefix, max_backlog=o.max_backlog,
                              status_ttl=o.status_ttl, heartbeat=o.heartbeat, claim_idle=60.0)
        return RedisBroker(config, hold_at_most=200, keep_payload=o.keep_payload)


def storage(kind: str, tmp_path: Path, redis_url: str = "", options: Options | None = None) -> Storage:
    directory = tmp_path / f"{kind}-{next(_prefixes)}"
    directory.mkdir(parents=True, exist_ok=True)
    prefix = "gqc-" + re.sub(r"[^A-Za-z0-9_-]", "-", directory.name) + "-" + os.urandom(3).hex()
    return Storage(kind, str(directory / "journal.sqlite3"), redis_url, prefix, options or Options())


class Harness:
    """One broker, driven as the dispatcher drives it; what it took is `held` until started,
    what it started is `running` until settled."""

    def __init__(self, where: Storage, clock: Callable[[], float] = time.time):
        self.where = where
        self.kind = where.kind
        self.broker: Broker = where.open(clock)
        self.held: dict[str, Entry] = {}      # taken (or handed back by add), not started
        self.running: dict[str, Entry] = {}   # started, not settled
        self.attempted: list[str] = []        # ids whose attempt went ahead, in order
        self.taken: list[str] = []            # ids taken (or handed back by add), in order
        self.interrupted: set[str] = set()    # started as gq.dispatch.attempts settles an attempt gq died during
        self.closed = False

    # -- intake

    def add(self, *jobs: Job, hold: int = 0) -> Added:
        added = self.broker.add(list(jobs), hold)
        for entry in added.entries:
            self.held[entry.job.id] = entry
            self.taken.append(entry.job.id)
        return added

    def get(self, job_id: str) -> Entry | None:
        self.settled()
        return self.broker.get(job_id)

    def state(self, job_id: str) -> State | None:
        entry = self.get(job_id)
        return None if entry is None else entry.state

    # -- dispatch, as the dispatcher does it

    def take(self, limit: int = 100, timeout: float = TAKE_WAIT) -> list[Entry]:
        taken = self.broker.take(limit, timeout)
        for entry in taken:
            self.held[entry.job.id] = entry
            self.taken.append(entry.job.id)
        # The brokers' loops run between the dispatcher's calls. Not sleep(0): a loop of
        # blocking calls and sleep(0) never lets the hub's timers fire (a Redis broker's
        # mover waits on one), where the daemon, patched, waits on the hub in every call.
        gevent.sleep(0.001)
        return taken

    def take_ids(self, ids: Iterable[str], timeout: float = DEADLINE) -> dict[str, Entry]:
        """Take until every one of `ids` is held here; what else comes is held too. Returns
        their entries in the order they were taken."""
        wanted = set(ids)

        def all_taken() -> bool:
            self.take()
            return wanted <= self.held.keys()

        poll(all_taken, timeout, f"{sorted(wanted - self.held.keys())} to be taken (held: {sorted(self.held)})")
        last = {job_id: n for n, job_id in enumerate(self.taken)}
        return {i: self.held[i] for i in sorted(wanted, key=last.__getitem__)}

    def take_one(self, job_id: str) -> Entry:
        return self.take_ids([job_id])[job_id]

    def start(self, entry: Entry) -> bool:
        """Start an attempt of a held entry, as gq.dispatch.attempts does: not when it is found
        cancelled before its start, nor when the broker did not start it (False: dropped as
        cancelled, or handed back, its start not written)."""
        self.held.pop(entry.job.id, None)
        if entry.state is State.CANCELLED:
            return False
        if entry.interrupted:  # gq died during its last attempt: that one is settled now, uncounted again
            entry.interrupted = False
            self.interrupted.add(entry.job.id)
        else:
            self.broker.started(entry)
            if entry.state is not State.RUNNING:
                return False
        self.running[entry.job.id] = entry
        self.attempted.append(entry.job.id)
        return True

    def settle(self, entry: Entry, outcome: Outcome = SUCCESS) -> None:
        self.running.pop(entry.job.id, None)
        interrupted = entry.job.id in self.interrupted
        self.interrupted.discard(entry.job.id)
        self.broker.settle(entry, recorded(result_of(outcome), outcome, interrupted), outcome)

    def run(self, entry: Entry, outcome: Outcome = SUCCESS) -> bool:
        """One whole attempt of a held entry; False when it was dropped, cancelled."""
        if not self.start(entry):
            return False
        self.settle(entry, outcome)
        return True

    def defer(self, entry: Entry, due: float) -> bool:
        """Hand a held entry back until `due` (its host at a cap, a drain), as the dispatcher
        does: only an entry it does not see cancelled. False when it was dropped instead."""
        self.held.pop(entry.job.id, None)
        if entry.state is State.CANCELLED:
            return False
        self.broker.defer(entry, due)
        return True

    def run_all(self, until: Callable[[], bool], timeout: float = DEADLINE) -> list[str]:
        """The dispatcher's loop: take, start, succeed, until `until()` holds; returns the ids
        attempted meanwhile."""
        before = len(self.attempted)

        def step() -> bool:
            self.take()
            for entry in list(self.held.values()):
                self.run(entry)
            return until()

        poll(step, timeout, "the jobs to run")
        return self.attempted[before:]

    def run_past(self, due: float) -> list[str]:
        """Run every job due by `due`: wait past it, add a job, and run until that job has
        run (every broker takes what is due oldest first); returns the ids attempted
        meanwhile (that last job's included)."""
        wait_until(due + DUE_MARGIN[self.kind])
        marker = f"marker-{os.urandom(4).hex()}"
        self.add(job(marker))
        return self.run_all(lambda: marker in self.attempted)

    # -- what the interface lacks

    def settled(self) -> None:
        """INTERFACE: the brokers write settlements and deferrals behind (the journal's
        writer, the Redis writer): a look-up right after may see the state before. The
        interface should say when a change is visible (a flush(), or settle() that returns
        once it is written); until then this waits for the writer to be done."""
        broker: Any = self.broker
        writer: Any = getattr(broker, "writer", None)
        if self.kind == "journal":
            def idle() -> bool:  # nothing pending, and no commit under way on the writer's connection
                return not (writer._dirty or writer._writing or writer._deleted or writer._adding
                            or broker.db._locks[broker.db.file].locked())

            # Twice, a turn of the hub apart: the writer may have taken what was pending and
            # still wait for the connection another call just let go.
            poll(lambda: idle() and (gevent.sleep(0.001) or idle()), what="the journal's writer")
        elif self.kind == "redis":  # (an ack alone does not wake the writer: it waits for the next write)
            poll(lambda: not (any(op[0] != "ack" for op in writer._ops) or writer.settling),
                 what="the Redis writer")

    def counts(self) -> dict[str, int]:
        """INTERFACE: the Redis broker's counts are refreshed once a second by its maintenance
        loop; the interface should give counts that follow the changes it answered."""
        self.settled()
        broker: Any = self.broker
        if self.kind == "redis":
            broker.maintenance.refresh_counts()
        return self.broker.counts()

    def ledger(self) -> dict[str, int]:
        """The broker's ledger once what it answered is written; on the journal, also the
        file's own (`gq verify`'s reading), which must agree."""
        self.settled()
        ledger = self.broker.ledger()
        assert ledger is not None
        if self.kind == "journal":
            from gq.broker.journal_ledger import ledger_of
            broker: Any = self.broker
            on_disk = broker.db.read(lambda file: ledger_of(file.db))
            assert {k: on_disk.get(k, 0) for k in ledger} == ledger, f"the file's ledger {on_disk} != {ledger}"
        return ledger

    def purge(self, *ids: str) -> list[str]:
        """Dead letters deleted, as `gq dlq purge` does (on Redis: DeadLetters, no daemon needed)."""
        broker: Any = self.broker
        if self.kind == "redis":
            from gq.broker.redis_streams import DeadLetters
            return DeadLetters(broker.redis, broker.config).run("purge", list(ids))
        return broker.purge(list(ids))

    # -- lifetime

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.broker.close()

    def vanish(self) -> None:
        """This broker's process dies: what it holds is left as a crash leaves it.
        INTERFACE: no broker can be made to vanish through its interface; the journal's
        close() leaves a started attempt as `running` as a crash does (its other jobs wait
        on disk again, as the next start would put them), and a Redis broker's loops are
        stopped without giving anything back (its liveness key then expires)."""
        self.closed = True
        broker: Any = self.broker
        if self.kind == "journal":
            broker.close()
        elif self.kind == "redis":
            broker._stopped.set()
            broker.writer.stop()
            broker.maintenance.stopped.set()
            gevent.killall(broker._loops)
            broker.redis.close()
        else:
            raise AssertionError("memory only: nothing survives a crash")

    def successor(self, **changes: Any) -> Harness:
        """A broker on the same storage: another daemon of the fleet (Redis), or the next
        start on the journal file (the first one must be closed or gone)."""
        if changes:
            self.where.options = Options(**{**self.where.options.__dict__, **changes})
        return Harness(self.where)
