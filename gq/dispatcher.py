"""The dispatcher: a bounded gevent Queue feeding a fixed gevent Pool, and the drain.

    intake ─submit()─▶ broker.add ─▶ Queue(maxsize) ─▶ Pool(size) ─▶ worker.attempt
                           │            ▲                               │
                           └─(backlog)─ broker.take (due, recovered)    ▼
                                                  broker.settle ◀─ outcome.decide

The broker holds the backlog (the journal's file, a Redis stream): `submit`
queues at once what the queue has room for and leaves the rest to the broker,
whose own bound pushes back; a broker without a backlog (memory only) makes
`submit` wait for room for a whole request, then refuse. The feeder moves work
the broker holds into the queue only as room appears; the dispatch loop takes
a job from the queue only when a worker is free.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import gevent
from gevent.event import Event
from gevent.pool import Pool
from gevent.queue import Empty, Queue

from gq import hosts
from gq.broker import Added, Broker, Entry
from gq.destinations import Destinations, Limits
from gq.errors import GqError, QueueFull
from gq.job import Job
from gq.outcome import AttemptResult, Outcome, Verdict, decide
from gq.retry import RetryPolicy
from gq.supervisor import Supervisor
from gq.transport import Worker

log = logging.getLogger("gq.dispatcher")

FEED_POLL = 0.25      # seconds between looks at the broker when it has nothing due
PARK_LONGEST = 5.0    # seconds a job may wait parked for its host; longer waits go back to the broker
RECHECK = 1.0         # seconds a job handed back for a host at its cap waits before another look
DRAIN_MARGIN = 0.5    # seconds kept between a drain's last attempt's timeout and its deadline
DIED = ("died: gq stopped during attempt {} (a crash, a kill or a freeze); "
        "whether it reached the target is not known")


def _host(entry: Entry) -> str:
    """The destination's key: an address in its one canonical spelling ("127.2" is
    127.0.0.2), else the name as the transport reads it (lower case, no trailing dot)."""
    try:
        host = hosts.url_host(entry.job.url)
    except ValueError:  # a job accepted before intake read URLs this way: keyed by its text
        host = entry.job.url
    addr = hosts.address(host)
    entry.host = str(addr) if addr is not None else host
    return entry.host


class Draining(GqError):
    """The dispatcher is draining and takes no new jobs."""


class Observer:
    """Told what happens to jobs; an observer's error never reaches the job path."""

    def accepted(self, count: int) -> None:
        """`count` new jobs were accepted."""

    def dequeued(self, waited: float) -> None:
        """A job left the queue for a worker after `waited` seconds."""

    def attempted(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        """An attempt ended; `entry.state` is already its outcome's."""


@dataclass(frozen=True, slots=True)
class DrainReport:
    finished: bool     # True: nothing was left queued or in flight
    queued_left: int
    in_flight_left: int
    seconds: float
    not_started: int   # jobs the drain did not start (their timeout outlasted it, or their host
                       # could not take them): unattempted, they stay with the broker


class Dispatcher:
    def __init__(self, broker: Broker, worker: Worker, *, queue_maxsize: int, pool_size: int,
                 policy: RetryPolicy, default_timeout: float, observers: Iterable[Observer] = (),
                 destinations: Destinations | None = None, supervisor: Supervisor | None = None):
        self.broker = broker
        self.supervisor = supervisor or Supervisor()
        self.destinations = destinations or Destinations(Limits(), [], 0)
        self.worker = worker
        self.queue: Queue = Queue(queue_maxsize)
        self.pool = Pool(pool_size)
        self.policy = policy
        self.default_timeout = default_timeout
        self.observers = list(observers)
        self.draining = False
        self._deadline = float("inf")  # monotonic time a drain ends
        self._not_started = 0          # jobs a drain handed back unattempted
        self.finished = {"succeeded": 0, "dead": 0}   # since start
        self._reserved = 0           # queue slots promised to submits and feeds in progress
        self._tick = Event()         # replaced and set whenever room or idleness may have changed
        self._loops: list[gevent.Greenlet] = []
        self._parked: dict[str, deque[Entry]] = {}   # host → jobs waiting for it, off queue and pool
        self._parked_count = 0
        self._ready: deque[Entry] = deque()          # unparked or fed, queue full: dispatched first
        self._wakers: dict[str, gevent.Greenlet] = {}  # host → the timer that unparks its jobs

    # -- state

    def room(self) -> int:
        """Free queue slots; jobs parked for a busy host keep theirs (they will run here)."""
        return (self.queue.maxsize - self.queue.qsize() - self._reserved - self._parked_count
                - len(self._ready))

    def busy(self) -> int:
        return len(self.pool)

    def _signal(self) -> None:
        tick = self._tick
        if tick.linkcount():
            self._tick = Event()
            tick.set()

    def wait_until(self, condition: Callable[[], bool], timeout: float | None,
                   interrupt: Event | None = None) -> bool:
        """Block until `condition()` holds (rechecked on every queue or pool change);
        False when `timeout` seconds pass or `interrupt` is set first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not condition():
            if interrupt is not None and interrupt.is_set():
                return False
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            # A bounded wait also notices changes nobody signals (a broker's due retries).
            wait = FEED_POLL if remaining is None else min(remaining, FEED_POLL)
            gevent.wait([self._tick] + ([interrupt] if interrupt else []), timeout=wait, count=1)
        return True

    def resize(self, pool_size: int, queue_maxsize: int) -> None:
        """Change the pool's size and the queue's bound while running (a reload).

        gevent's Pool has no resize: its semaphore's counter is moved by the
        difference (below zero while shrinking under load: finishing jobs
        bring it back), and the worker's connection pool follows.
        """
        grow = pool_size - self.pool.size
        if grow:
            self.pool.size = pool_size
            if grow > 0:
                for _ in range(grow):
                    self.pool._semaphore.release()
            else:
                self.pool._semaphore.counter += grow
            self.worker.resize(pool_size)
        self.queue.maxsize = queue_maxsize
        self._signal()

    # -- intake

    def submit(self, jobs: list[Job], timeout: float | None) -> Added:
        """Accept `jobs` all or none: hand them to the broker (durable once it returns) and
        queue the new ones it gives back to run here, as many as the queue has room for.
        A broker without a backlog of its own (memory only) needs room for all of them:
        this waits up to `timeout` seconds (None: forever) for it.

        Raises QueueFull when the room does not come in time, Draining once draining,
        and what the broker raises (BacklogFull, StorageUnavailable, BrokerUnavailable).
        """
        count = len(jobs)
        if self.draining:
            raise Draining("draining: not accepting jobs")
        if not self.broker.backlog:
            if count > self.queue.maxsize:
                raise QueueFull(f"{count} jobs in one request exceed queue.maxsize ({self.queue.maxsize})")
            if not self.wait_until(lambda: self.room() >= count or self.draining, timeout):
                raise QueueFull(f"queue full: no room for {count} job(s) within {timeout:g}s")
            if self.draining:
                raise Draining("draining: not accepting jobs")
        hold = max(0, min(count, self.room()))
        self._reserved += hold
        try:
            added = self.broker.add(jobs, hold)
        finally:
            self._reserved -= hold
        for entry in added.entries:
            entry.queued_at = time.monotonic()
            self.queue.put_nowait(entry)  # room was reserved: never blocks
        self._signal()
        self._notify("accepted", len(added.entries) + added.stored)
        return added

    # -- running

    def start(self) -> None:
        self._loops = [self.supervisor.spawn("dispatch loop", self._dispatch_loop),
                       self.supervisor.spawn("feed loop", self._feed_loop)]

    def _dispatch_loop(self) -> None:
        while True:
            self.pool.wait_available()
            # Jobs that found the queue full come first. A fed one may wait here while the
            # queue is empty (its room was promised to an intake): get() looks up again soon.
            if self._ready:
                entry = self._ready.popleft()
            else:
                try:
                    entry = self.queue.get(timeout=FEED_POLL)
                except Empty:
                    continue
            self._signal()
            self._notify("dequeued", time.monotonic() - entry.queued_at)
            host = entry.host or _host(entry)
            if entry.interrupted:  # gq died during its last attempt: that one is settled first
                self.pool.spawn(self._run, entry, host, DIED.format(entry.attempts))
                continue
            if self.draining and not self._may_start(entry):
                self.broker.defer(entry, time.time())  # not started: it waits in the broker
                self._not_started += 1
                continue
            admission = self.destinations.admit(host, entry.job.timeout or self.default_timeout)
            if isinstance(admission, str):  # the host's circuit is open: fails without a request
                self.pool.spawn(self._run, entry, host, admission)
            elif admission:
                self._park(entry, host, admission)
            else:
                self.pool.spawn(self._run, entry, host)

    def _may_start(self, entry: Entry) -> bool:
        """Draining: an attempt starts only if its timeout ends before the drain's deadline,
        so that the drain never cuts off what it started itself (that would run it twice)."""
        timeout = entry.job.timeout or self.default_timeout
        return time.monotonic() + timeout + DRAIN_MARGIN <= self._deadline

    # -- jobs waiting for their host

    def _park(self, entry: Entry, host: str, wait: float) -> None:
        """Hold `entry` until `host` may take it. Parked jobs keep their queue slots, so
        they may fill a quarter of the queue per host and half in all; past that, or for
        a long wait (a long pause of the host), the job goes back to the broker until then,
        and its slot to other hosts."""
        parked = self._parked.setdefault(host, deque())
        if (len(parked) >= max(1, self.queue.maxsize // 4)
                or self._parked_count >= max(1, self.queue.maxsize // 2)
                or PARK_LONGEST < wait < float("inf")):
            self.broker.defer(entry, time.time() + (wait if wait < float("inf") else RECHECK))
            if not parked:
                del self._parked[host]
            return
        parked.append(entry)
        self._parked_count += 1
        self.destinations.get(host).waiting += 1
        if wait < float("inf") and host not in self._wakers:
            self._wakers[host] = gevent.spawn_later(wait, self._unpark, host, True)

    def _unpark(self, host: str, timer: bool = False) -> None:
        """Back into the queue, as many of `host`'s parked jobs as it may take now."""
        if timer:
            self._wakers.pop(host, None)
        parked = self._parked.get(host)
        if not parked:
            return
        allowed, wait = self.destinations.allowance(host)
        destination = self.destinations.get(host)
        for _ in range(min(allowed, len(parked))):
            entry = parked.popleft()
            self._parked_count -= 1
            destination.waiting -= 1
            if self.queue.qsize() < self.queue.maxsize:
                self.queue.put_nowait(entry)
            else:  # a reload shrank the queue, or the feeder filled it: next in line all the same
                self._ready.append(entry)
        if parked and wait < float("inf") and host not in self._wakers:
            self._wakers[host] = gevent.spawn_later(wait, self._unpark, host, True)
        if not parked:
            del self._parked[host]

    def _feed_loop(self) -> None:
        """Moves jobs the broker holds (due retries, recovered, replayed; a shared broker's
        jobs) into the queue, never more than it has room for."""
        while not self.draining:
            room = self.room()
            if room <= 0:
                self.wait_until(lambda: self.room() > 0 or self.draining, None)
                continue
            for entry in self.broker.take(room, FEED_POLL):
                entry.queued_at = time.monotonic()
                if self.room() > 0 and not self.queue.full():
                    self.queue.put_nowait(entry)
                else:  # the intake took the room while the broker was asked: next in line all the same
                    self._ready.append(entry)

    def _run(self, entry: Entry, host: str, refusal: str | None = None) -> None:
        """One attempt of `entry`, start to outcome. With a `refusal` the attempt fails at
        once with that error, without a request and without a slot of its host's: the host's
        circuit is open, or (the entry `interrupted`) the attempt is the one gq died during,
        already counted, whose end is recorded now."""
        job = entry.job
        result = retry_after = None
        try:
            if entry.interrupted:
                entry.interrupted = False
                log.warning("job %s: gq stopped during its attempt %d, which counts as failed",
                            job.id, entry.attempts)
            else:
                self.broker.started(entry)
            max_attempts = job.max_attempts or self.policy.max_attempts
            try:
                result = (AttemptResult(time.time(), 0.0, error=refusal) if refusal
                          else self.worker.attempt(job, job.timeout or self.default_timeout))
                outcome = decide(result, entry.attempts, max_attempts, self.policy)
            except Exception as e:  # a bug must not lose the job: it is retried
                log.exception("internal error on job %s", job.id)
                result = AttemptResult(time.time(), 0.0, error=f"internal: {e!r}")
                outcome = decide(result, entry.attempts, max_attempts, self.policy)
            self.broker.settle(entry, result, outcome)
            retry_after = outcome.delay if result.retry_after and outcome.verdict is Verdict.RETRY else None
            self.destinations.count(host, outcome.verdict.value)
            self._notify("attempted", entry, result, outcome)
            if outcome.verdict is Verdict.SUCCESS:
                self.finished["succeeded"] += 1
                log.debug("job %s succeeded: %s after %d attempt(s)", job.id, result.status, entry.attempts)
            elif outcome.verdict is Verdict.FAIL:
                self.finished["dead"] += 1
                log.warning("job %s dead after %d attempt(s): %s (%s); kept as a dead letter",
                            job.id, entry.attempts, outcome.reason, result.error or result.status)
            elif not refusal:  # one line per circuit, not per job behind it
                log.info("job %s attempt %d failed (%s); next attempt in %.1fs",
                         job.id, entry.attempts, result.error or result.status, outcome.delay)
        finally:
            if not refusal:
                self.destinations.release(host, result, retry_after)
            self._unpark(host)
            self._signal()

    def _notify(self, event: str, *args) -> None:
        for observer in self.observers:
            try:
                getattr(observer, event)(*args)
            except Exception:
                log.exception("observer %r failed on %s", observer, event)

    # -- stopping

    def drain(self, timeout: float, hurry: Event | None = None) -> DrainReport:
        """Stop taking jobs; for up to `timeout` seconds (less if `hurry` is set) finish what
        is in flight and start what is queued, if its own timeout ends before the deadline
        (the rest goes back to the broker, unattempted); then cancel what is left in flight:
        the broker keeps it. Ends as soon as nothing it may start is left: jobs parked for
        their host (an open circuit, a rate limit) do not hold it."""
        started = time.monotonic()
        self._deadline = started + timeout
        self.draining = True
        self._signal()
        finished = self.wait_until(self._drained, timeout, hurry)
        report = DrainReport(finished, self.queue.qsize(), self.busy(), time.monotonic() - started,
                             self._not_started + self._parked_count)
        self.stop()
        return report

    def _drained(self) -> bool:
        return self.queue.empty() and not self._ready and self.busy() == 0 and self._reserved == 0

    def stop(self) -> None:
        """Kill the loops and every attempt in flight; owned greenlets all end here."""
        self.draining = True
        gevent.killall(self._loops + list(self._wakers.values()))
        self.pool.kill()
        self._loops, self._wakers = [], {}
