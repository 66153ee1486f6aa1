"""Process health an operator of a gevent daemon needs: event-loop lag, memory, descriptors.

Lag is how late a periodic timer fires: the one number that says a blocking
call is starving the hub.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import gevent
import psutil
from prometheus_client.core import GaugeMetricFamily

from gq.core.supervisor import Supervisor

LAG_INTERVAL = 0.25  # seconds between lag probes


class LoopMonitor:
    """A greenlet that measures how late the hub runs a timer; `lag` is the latest figure."""

    def __init__(self, observe: Callable[[float], None] | None = None, interval: float = LAG_INTERVAL):
        self.interval = interval
        self.lag = 0.0
        self.observe = observe  # called with each lag measured (a histogram's observe)
        self._greenlet: gevent.Greenlet | None = None

    def start(self, supervisor: Supervisor) -> None:
        self._greenlet = supervisor.spawn("event-loop monitor", self._run)

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
    """Figures the default process_* collector lacks (it has fds and their limit), read at
    scrape time: TCP connections by state (psutil), and greenlets by role."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.greenlets: dict[str, Callable[[], int]] = {}  # role → how many greenlets it runs now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        states = self._connections()
        if states is not None:
            connections = GaugeMetricFamily("gq_connections", "TCP connections by state", labels=["state"])
            for state, count in sorted(states.items()):
                connections.add_metric([state], count)
            yield connections
        # Counted by their owners: walking the heap (gc) would stall the hub on every scrape.
        greenlets = GaugeMetricFamily("gq_greenlets", "Greenlets running jobs (worker) and "
                                      "serving intake connections (intake)", labels=["role"])
        for role, counted in sorted(self.greenlets.items()):
            greenlets.add_metric([role], counted())
        yield greenlets

    def _connections(self) -> dict[str, int] | None:
        """TCP connections by state; None under a sandbox that hides /proc/net (systemd's
        ProcSubset=pid): the figure is skipped rather than the scrape failed."""
        states: dict[str, int] = {}
        try:
            for conn in self.process.net_connections(kind="inet"):
                states[conn.status.lower()] = states.get(conn.status.lower(), 0) + 1
        except (OSError, psutil.Error):
            return None
        return states

    def rss(self) -> int:
        return self.process.memory_info().rss
