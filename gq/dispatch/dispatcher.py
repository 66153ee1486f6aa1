"""The dispatcher: the broker's jobs through a bounded queue to a fixed number of workers.

    intake ─Admission.submit─▶ broker.add ─▶ JobQueue(maxsize) ─▶ Workers(size) ─▶ Attempts.run
                                   │             ▲     │   ▲                           │
                                   └─(backlog)── feed  └─▶ Parking (host busy)         ▼
                                                                     broker.settle ◀─ decide

Two loops: the feeder moves what the broker holds (due retries, recovered and
replayed jobs, a shared broker's jobs) into the queue only as room appears;
the dispatch loop takes a job from the queue only when a worker is free, and
starts it, parks it until its host may take it, or fails it at once (the
host's circuit is open). The drain stops both in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import gevent
from gevent.event import Event

from gq.broker import Broker, Entry, State
from gq.core import hosts
from gq.core.outcome import DIED_PREFIX
from gq.core.retry import RetryPolicy
from gq.core.supervisor import Supervisor
from gq.delivery.transport import Worker
from gq.dispatch.admission import Admission
from gq.dispatch.attempts import Attempts
from gq.dispatch.destinations import Destinations, Limits
from gq.dispatch.job_queue import POLL, JobQueue
from gq.dispatch.observers import Finished, Observer, Observers
from gq.dispatch.parking import Parking
from gq.dispatch.workers import Workers

RECHECK = 1.0         # seconds a job handed back for a host at its cap waits before another look
DRAIN_MARGIN = 0.5    # seconds kept between a drain's last attempt's timeout and its deadline
DIED = (DIED_PREFIX + "gq stopped during attempt {} (a crash, a kill or a freeze); "
        "whether it reached the target is not known")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The dispatcher's state as others read it (the API's status, STATUS=, the metrics)."""

    queue_depth: int
    queue_maxsize: int
    pool_busy: int
    pool_size: int
    parked: int        # jobs held until their host may take them (in queue_depth's room, not in it)
    draining: bool
    succeeded: int     # since start
    dead: int          # since start
    cancelled: int     # since start


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
        self.finished = Finished()     # since start: told first, whatever the others do
        self.observers = Observers([self.finished, *observers])
        self.queue = JobQueue(queue_maxsize)
        self.parking = Parking(self.destinations)
        self.admission = Admission(broker, self.queue, self.parking, self.observers)
        self.workers = Workers(pool_size)
        self.attempts = Attempts(broker, worker, self.destinations, self.observers, policy, default_timeout)
        self._deadline = float("inf")  # monotonic time a drain ends
        self._not_started = 0          # jobs a drain handed back unattempted
        self._loops: list[gevent.Greenlet] = []

    @property
    def draining(self) -> bool:
        return self.admission.closed

    def snapshot(self) -> Snapshot:
        finished = self.finished.counts
        return Snapshot(self.queue.depth(), self.queue.maxsize, self.workers.busy(), self.workers.size,
                        self.parking.count, self.draining, finished["succeeded"], finished["dead"],
                        finished["cancelled"])

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued, scheduled or retrying job (see Operations.cancel). One held here
        (queued, parked) stays where it is, and is passed over when its turn comes."""
        cancelled = self.broker.cancel(job_id)
        if cancelled:
            self.observers.cancelled(job_id)
            self.queue.changed()
        return cancelled

    def wait_until(self, condition: Callable[[], bool], timeout: float | None, interrupt: Event | None = None) -> bool:
        """Block until `condition()` holds, looked at again whenever a job moves (see JobQueue)."""
        return self.queue.wait_until(condition, timeout, interrupt)

    def configure(self, *, pool_size: int, queue_maxsize: int, policy: RetryPolicy, default_timeout: float) -> None:
        """Apply a reload: the pool's size, the queue's bound, the retry policy and timeout."""
        self.workers.resize(pool_size)
        self.queue.resize(queue_maxsize)
        self.attempts.configure(policy, default_timeout)

    # -- running

    def start(self) -> None:
        self._loops = [self.supervisor.spawn("dispatch loop", self._dispatch_loop),
                       self.supervisor.spawn("feed loop", self._feed_loop)]

    def _dispatch_loop(self) -> None:
        while True:
            self.workers.wait_available()
            # A fed job may wait here while the queue is empty (its room was promised to an
            # intake): get() looks up again soon.
            taken = self.queue.get(POLL)
            if taken is None:
                continue
            entry, waited = taken
            self.queue.changed()
            if entry.state is State.CANCELLED:
                continue
            self.observers.dequeued(waited)
            host = hosts.destination(entry.job.url)
            if entry.interrupted:  # gq died during its last attempt: that one is settled first
                self.workers.spawn(self._attempt, entry, host, DIED.format(entry.attempts))
                continue
            if self.draining and not self._may_start(entry):
                self.broker.defer(entry, time.time())  # not started: it waits in the broker
                self._not_started += 1
                continue
            admission = self.destinations.admit(host, self.attempts.timeout(entry.job))
            if isinstance(admission, str):  # the host's circuit is open: fails without a request
                self.workers.spawn(self._attempt, entry, host, admission)
            elif admission:
                self._park(entry, host, admission)
            else:
                self.workers.spawn(self._attempt, entry, host)

    def _may_start(self, entry: Entry) -> bool:
        """Draining: an attempt starts only if its timeout ends before the drain's deadline,
        so that the drain never cuts off what it started itself (that would run it twice)."""
        return time.monotonic() + self.attempts.timeout(entry.job) + DRAIN_MARGIN <= self._deadline

    def _attempt(self, entry: Entry, host: str, refusal: str | None = None) -> None:
        try:
            self.attempts.run(entry, host, refusal)
        finally:
            self._unpark(host)
            self.queue.changed()

    def _park(self, entry: Entry, host: str, wait: float) -> None:
        """Hold `entry` until `host` may take it, or hand it back to the broker until then."""
        if not self.parking.park(entry, host, wait, self.queue.maxsize):
            self.broker.defer(entry, time.time() + (wait if wait < float("inf") else RECHECK))
        elif wait < float("inf"):
            self.parking.wake(host, wait, self._unpark)

    def _unpark(self, host: str) -> None:
        """Back into the queue, as many of `host`'s parked jobs as it may take now."""
        if not self.parking.waiting(host):
            return
        allowed, wait = self.destinations.allowance(host)
        for entry in self.parking.take(host, allowed):
            self.queue.put(entry)
        if self.parking.waiting(host) and wait < float("inf"):
            self.parking.wake(host, wait, self._unpark)

    def _feed_loop(self) -> None:
        while not self.draining:
            room = self.admission.room()
            if room <= 0:
                self.queue.wait_until(lambda: self.admission.room() > 0 or self.draining, None)
                continue
            for entry in self.broker.take(room, POLL):
                self.queue.put(entry)

    # -- stopping

    def drain(self, timeout: float, hurry: Event | None = None) -> DrainReport:
        """Stop taking jobs; for up to `timeout` seconds (less if `hurry` is set) finish what
        is in flight and start what is queued, if its own timeout ends before the deadline
        (the rest goes back to the broker, unattempted); then cancel what is left in flight:
        the broker keeps it. Ends as soon as nothing it may start is left: jobs parked for
        their host (an open circuit, a rate limit) do not hold it."""
        started = time.monotonic()
        self._deadline = started + timeout
        self.admission.close()
        finished = self.queue.wait_until(lambda: self.queue.idle() and not self.workers.busy(), timeout, hurry)
        report = DrainReport(finished, self.queue.depth(), self.workers.busy(), time.monotonic() - started,
                             self._not_started + self.parking.count)
        self.stop()
        return report

    def stop(self) -> None:
        """Kill the loops, the parking's timers and every attempt in flight."""
        self.admission.close()
        gevent.killall(self._loops)
        self.parking.stop()
        self.workers.kill()
        self._loops = []
