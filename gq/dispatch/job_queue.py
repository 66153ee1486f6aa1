"""The bounded queue of jobs to run here, between the broker and the workers.

gevent's Queue(maxsize), and beside it what sharing its slots needs:
reservations (room promised to a submit while the broker stores its jobs),
a short line of jobs that already hold a slot but found the queue full (a
job unparked after a reload shrank the queue, one fed while an intake took
the room): they run first and are never dropped. `changed()` is called
whenever room or idleness may have changed; `wait_until` looks again then.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import gevent
from gevent.event import Event
from gevent.queue import Empty, Queue

from gq.broker import Entry

POLL = 0.25   # seconds between looks when nothing signals a change (a broker's due retries)


class JobQueue:
    def __init__(self, maxsize: int):
        self._queue: Queue = Queue(maxsize)   # (entry, monotonic time it was put)
        self._next: deque[tuple[Entry, float]] = deque()
        self.reserved = 0
        self._tick = Event()  # replaced and set at each change

    @property
    def maxsize(self) -> int:
        return self._queue.maxsize

    def resize(self, maxsize: int) -> None:
        self._queue.maxsize = maxsize
        self.changed()

    def depth(self) -> int:
        return self._queue.qsize()

    def room(self) -> int:
        """Free slots: neither queued, next in line nor reserved."""
        return self._queue.maxsize - self._queue.qsize() - self.reserved - len(self._next)

    def idle(self) -> bool:
        """Nothing queued, next in line or about to be."""
        return self._queue.empty() and not self._next and not self.reserved

    @contextmanager
    def reserve(self, slots: int) -> Iterator[None]:
        """Keep `slots` for the caller while it is inside (the broker is being asked)."""
        self.reserved += slots
        try:
            yield
        finally:
            self.reserved -= slots

    def put(self, entry: Entry) -> None:
        """Queue a job that has a slot: never blocks, never refuses."""
        item = (entry, time.monotonic())
        if self._queue.qsize() + self.reserved < self._queue.maxsize:
            self._queue.put_nowait(item)
        else:
            self._next.append(item)

    def get(self, timeout: float) -> tuple[Entry, float] | None:
        """The next job and the seconds it waited; None after `timeout` seconds without one."""
        if self._next:
            entry, put_at = self._next.popleft()
        else:
            try:
                entry, put_at = self._queue.get(timeout=timeout)
            except Empty:
                return None
        return entry, time.monotonic() - put_at

    def changed(self) -> None:
        tick = self._tick
        if tick.linkcount():
            self._tick = Event()
            tick.set()

    def wait_until(self, condition: Callable[[], bool], timeout: float | None,
                   interrupt: Event | None = None) -> bool:
        """Block until `condition()` holds (looked at again on every change); False when
        `timeout` seconds pass or `interrupt` is set first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not condition():
            if interrupt is not None and interrupt.is_set():
                return False
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            wait = POLL if remaining is None else min(remaining, POLL)
            gevent.wait([self._tick] + ([interrupt] if interrupt else []), timeout=wait, count=1)
        return True
