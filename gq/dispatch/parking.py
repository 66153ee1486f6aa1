"""Jobs held for a host that cannot take them yet (its in-flight cap, its rate, a pause),
off the queue and off the pool, so that jobs for other hosts go on.

A parked job keeps its queue slot: it will run here. So that one host cannot take the
queue, a host's parked jobs fill at most a quarter of it and all hosts' half; past
that, or for a long wait, `park` says no and the job goes back to the broker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator

import gevent
from prometheus_client.core import GaugeMetricFamily

from gq.broker import Entry
from gq.dispatch.destinations import Destinations

LONGEST = 5.0   # seconds a job may wait parked for its host; longer waits go back to the broker


class Parking:
    def __init__(self, destinations: Destinations):
        self._destinations = destinations   # read for the metric's labels only
        self._jobs: dict[str, deque[Entry]] = {}   # host → its parked jobs, in arrival order
        self.count = 0
        self._timers: dict[str, gevent.Greenlet] = {}  # host → the timer that looks at it again

    def waiting(self, host: str) -> int:
        jobs = self._jobs.get(host)
        return len(jobs) if jobs else 0

    def park(self, entry: Entry, host: str, wait: float, queue_maxsize: int) -> bool:
        """Hold `entry` for `host`, for about `wait` seconds (inf: until an attempt ends);
        False when it may not wait here."""
        if (self.waiting(host) >= max(1, queue_maxsize // 4) or self.count >= max(1, queue_maxsize // 2)
                or LONGEST < wait < float("inf")):
            return False
        self._jobs.setdefault(host, deque()).append(entry)
        self.count += 1
        return True

    def take(self, host: str, allowed: int) -> list[Entry]:
        """Up to `allowed` of `host`'s parked jobs, oldest first, no longer parked."""
        jobs = self._jobs.get(host)
        if not jobs:
            return []
        taken = [jobs.popleft() for _ in range(min(allowed, len(jobs)))]
        self.count -= len(taken)
        if not jobs:
            del self._jobs[host]
        return taken

    def wake(self, host: str, after: float, then: Callable[[str], None]) -> None:
        """Call `then(host)` in `after` seconds, unless a call for `host` is already due."""
        if host not in self._timers:
            self._timers[host] = gevent.spawn_later(after, self._woken, host, then)

    def _woken(self, host: str, then: Callable[[str], None]) -> None:
        self._timers.pop(host, None)
        then(host)

    def stop(self) -> None:
        """Kill the timers; the parked jobs stay with their broker."""
        gevent.killall(list(self._timers.values()))
        self._timers = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """gq_destination_waiting, by the destinations' labels."""
        waiting = GaugeMetricFamily("gq_destination_waiting", "Jobs parked until their host may take them",
                                    labels=["host"])
        for label, hosts in sorted(self._destinations.by_label().items()):
            waiting.add_metric([label], sum(self.waiting(host) for host in hosts))
        yield waiting
