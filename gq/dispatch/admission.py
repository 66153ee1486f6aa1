"""Admission: whether a request's jobs come in, and where they wait.

A broker with a backlog of its own (the journal's file, a Redis stream) takes
them at once, as many queued here as the queue has room for (the rest wait in
the broker, whose own bound pushes back); a broker without one (memory only)
needs queue room for the whole request: `submit` waits for it, then refuses.
"""

from __future__ import annotations

from gq.broker import Added, Intake
from gq.core.job import Job
from gq.dispatch.job_queue import JobQueue
from gq.dispatch.observers import Observers
from gq.dispatch.parking import Parking
from gq.errors import Draining, QueueFull


class Admission:
    def __init__(self, broker: Intake, queue: JobQueue, parking: Parking, observers: Observers):
        self.broker, self.queue, self.parking, self.observers = broker, queue, parking, observers
        self.closed = False   # draining: nothing comes in

    def room(self) -> int:
        """Free queue slots; jobs parked for a busy host keep theirs (they will run here)."""
        return self.queue.room() - self.parking.count

    def wait_for_room(self) -> None:
        """Block until the queue has a free slot."""
        self.queue.wait_until(lambda: self.room() > 0, None)

    def close(self) -> None:
        self.closed = True
        self.queue.changed()

    def submit(self, jobs: list[Job], timeout: float | None) -> Added:
        """Accept `jobs` all or none: hand them to the broker (durable once it returns) and
        queue the new ones it gives back to run here. Without a backlog in the broker this
        waits up to `timeout` seconds (None: forever) for room for all of them.

        Raises QueueFull when the room does not come in time, Draining once closed,
        and what the broker raises (BacklogFull, StorageUnavailable, BrokerUnavailable).
        """
        count = len(jobs)
        if self.closed:
            raise Draining("draining: not accepting jobs")
        if not self.broker.backlog:
            if count > self.queue.maxsize:
                raise QueueFull(f"{count} jobs in one request exceed queue.maxsize ({self.queue.maxsize})")
            if not self.queue.wait_until(lambda: self.room() >= count or self.closed, timeout):
                raise QueueFull(f"queue full: no room for {count} job(s) within {timeout:g}s")
            if self.closed:
                raise Draining("draining: not accepting jobs")
        hold = max(0, min(count, self.room()))
        with self.queue.reserve(hold):
            added = self.broker.add(jobs, hold)
        for entry in added.entries:
            self.queue.put(entry)  # into the room reserved for it
        self.queue.changed()
        self.observers.accepted(len(added.entries) + added.stored)
        return added
