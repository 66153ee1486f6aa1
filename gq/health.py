"""Process health an operator of a gevent daemon needs: event-loop lag, memory, descriptors.

Lag is how late a periodic timer fires: the one number that says a blocking
call is starving the hub.
"""

from __future__ import annotations

import gc
import time

import gevent
import psutil
from greenlet import greenlet
from prometheus_client.core import GaugeMetricFamily

LAG_INTERVAL = 0.25  # seconds between lag probes


class LoopMonitor:
    """A greenlet that measures how late the hub runs a timer; `lag` is the latest figure."""

    def __init__(self, observe=None, interval: float = LAG_INTERVAL):
        self.interval = interval
        self.lag = 0.0
        self.observe = observe  # called with each lag measured (a histogram's observe)
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        while True:
            before = time.monotonic()
            gevent.sleep(self.interval)
            self.lag = max(0.0, time.monotonic() - before - self.interval)
            if self.observe is not None:
                self.observe(self.lag)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()


class HealthCollector:
    """psutil figures the default process_* collector lacks, read at scrape time."""

    def __init__(self) -> None:
        self.process = psutil.Process()

    def collect(self):
        fds = GaugeMetricFamily("gq_open_fds", "Open file descriptors")
        fds.add_metric([], self.process.num_fds())
        yield fds
        limit = GaugeMetricFamily("gq_max_fds", "File descriptor limit (soft)")
        limit.add_metric([], self.process.rlimit(psutil.RLIMIT_NOFILE)[0])
        yield limit
        states: dict[str, int] = {}
        for conn in self.process.net_connections(kind="inet"):
            states[conn.status.lower()] = states.get(conn.status.lower(), 0) + 1
        connections = GaugeMetricFamily("gq_connections", "TCP connections by state", labels=["state"])
        for state, count in sorted(states.items()):
            connections.add_metric([state], count)
        yield connections
        greenlets = GaugeMetricFamily("gq_greenlets", "Greenlets alive")
        greenlets.add_metric([], sum(1 for o in gc.get_objects() if isinstance(o, greenlet) and o))
        yield greenlets

    def rss(self) -> int:
        return self.process.memory_info().rss
