"""Prometheus metrics: declared here against one registry, fed as a dispatcher observer,
reading the dispatcher's snapshot and the collectors registered with them.

Gauges of state (queue depth, busy workers) are read at scrape time, so the
job path only ever increments counters and observes histograms. Those are
plain numbers here, exported by a collector at scrape time: gq's greenlets
all run on one thread, so the lock prometheus_client takes on every update
buys nothing and costs a few microseconds per job.
"""

from __future__ import annotations

import platform
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Protocol

import gevent
from prometheus_client import (
    CollectorRegistry,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gq import __version__
from gq.broker import Entry, Gauges, SharedGauges
from gq.core.audit import ACTIONS as OPERATOR_ACTIONS
from gq.core.lifecycle import LEDGER
from gq.core.outcome import UNKNOWN, AttemptResult, Outcome, Verdict
from gq.dispatch.dispatcher import Snapshot
from gq.dispatch.observers import FINISHED, Quiet
from gq.observe.health import HealthCollector, LoopMonitor

CONTENT_TYPE = CONTENT_TYPE_LATEST
disable_created_metrics()  # the *_created series double the exposition and say nothing here
# HTTP attempts take milliseconds to minutes; queue waits the same.
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0, 120.0, 300.0)
# A healthy hub runs a timer within a millisecond; a second late means a blocking call.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REJECT_REASONS = ("invalid", "unauthorized", "too_large", "queue_full", "draining", "backlog_full", "storage")


class CounterFamily:
    """A counter, or one per value of one label (all declared up front, so each starts at 0)."""

    def __init__(self, name: str, doc: str, label: str = "", values: tuple[str, ...] = ("",)):
        self.name, self.doc, self.label = name, doc, label
        self.values = dict.fromkeys(values, 0.0)

    def inc(self, value: str = "", amount: float = 1.0) -> None:
        self.values[value] += amount

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.doc, labels=[self.label] if self.label else None)
        for value, count in self.values.items():
            family.add_metric([value] if self.label else [], count)
        return family


class HistogramFamily:
    def __init__(self, name: str, doc: str, buckets: tuple[float, ...]):
        self.name, self.doc, self.bounds = name, doc, list(buckets)
        self.counts = [0] * (len(buckets) + 1)  # the last: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self) -> HistogramMetricFamily:
        cumulative, buckets = 0, []
        for bound, count in zip(self.bounds + [float("inf")], self.counts):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        return HistogramMetricFamily(self.name, self.doc, buckets=buckets, sum_value=self.sum)


class Figures(Gauges, Protocol):
    """What the metrics read from a broker, at scrape time."""

    def counts(self) -> dict[str, int]: ...

    def health(self) -> str | None: ...

    def shared_gauges(self) -> SharedGauges | None: ...


class Collector(Protocol):
    """Families computed at scrape time (prometheus_client's custom collector)."""

    def collect(self) -> Iterable[Metric]: ...


class Metrics(Quiet):
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = r = registry or CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=r)
        # Versions as labels of a constant 1: `* on (instance) group_left (version)` joins them to any series.
        Gauge("gq_build_info", "gq's version and the Python and gevent it runs on",
              ("version", "python", "gevent"), registry=r).labels(
            __version__, platform.python_version(), gevent.__version__).set(1)
        self.jobs_accepted = CounterFamily("gq_jobs_accepted", "Jobs accepted (202)")
        self.attempts = CounterFamily("gq_attempts", "Attempts by result", "result",
                                      tuple(v.value for v in Verdict))
        self.attempts_unknown = CounterFamily(
            "gq_attempts_unknown", "Attempts this daemon settled as of unknown outcome: under way when gq "
            "died (or, on Redis, when the daemon whose job it took over did); each may have reached its target")
        self.rejected = CounterFamily("gq_intake_rejected", "Intake requests refused", "reason",
                                      REJECT_REASONS)
        self.operator_actions = CounterFamily("gq_operator_actions", "Operator actions this daemon carried out "
                                              "(cancel, replay, purge, reload), as GET /v1/audit lists them",
                                              "action", OPERATOR_ACTIONS)
        self.evicted = CounterFamily("gq_intake_evicted", "Connections closed to make room for new ones: "
                                     "they had waited longest for a request head")
        self.attempt_duration = HistogramFamily("gq_attempt_duration_seconds", "Duration of one attempt",
                                                LATENCY_BUCKETS)
        self.queue_wait = HistogramFamily("gq_queue_wait_seconds", "Time a job waited in the queue",
                                          LATENCY_BUCKETS)
        self.loop_lag = HistogramFamily("gq_event_loop_delay_seconds", "How late event-loop timers fire",
                                        LAG_BUCKETS)
        r.register(self)
        self._gauges = {
            name: Gauge(name, doc, registry=r) for name, doc in (
                ("gq_queue_depth", "Jobs in the queue"),
                ("gq_queue_maxsize", "queue.maxsize"),
                ("gq_pool_busy", "Workers running a job"),
                ("gq_pool_size", "pool.size"),
                ("gq_retry_scheduled", "Jobs waiting for their next attempt"),
                ("gq_journal_pending", "Accepted jobs not yet finished"),
                ("gq_dead_letters", "Dead letters kept"),
                ("gq_draining", "1 while draining"),
                ("gq_oldest_job_age_seconds", "Age of the oldest unfinished job (0 when none)"),
                ("gq_journal_bytes", "Size of the journal's files on disk"),
                ("gq_broker_ready", "1 while the broker can take jobs; 0 while intake and /readyz answer 503 "
                                    "for it (Redis unavailable, the journal's disk full or failing)"),
                ("gq_event_loop_lag_seconds", "How late the latest event-loop timer fired"))}
        self.process = HealthCollector()
        r.register(self.process)
        self._snapshot: Callable[[], Snapshot] | None = None
        self._ledger: Callable[[], dict[str, int] | None] | None = None

    def read(self, snapshot: Callable[[], Snapshot], broker: Figures) -> None:
        """Read the dispatcher's snapshot and the broker's figures at scrape time."""
        g = self._gauges
        self._snapshot = snapshot
        self._ledger = broker.ledger
        g["gq_queue_depth"].set_function(lambda: snapshot().queue_depth)
        g["gq_queue_maxsize"].set_function(lambda: snapshot().queue_maxsize)
        g["gq_pool_busy"].set_function(lambda: snapshot().pool_busy)
        g["gq_pool_size"].set_function(lambda: snapshot().pool_size)
        g["gq_retry_scheduled"].set_function(lambda: broker.counts()["retrying"])
        g["gq_journal_pending"].set_function(
            lambda: sum(n for s, n in broker.counts().items() if s != "dead"))
        g["gq_dead_letters"].set_function(lambda: broker.counts()["dead"])
        g["gq_draining"].set_function(lambda: int(snapshot().draining))
        g["gq_oldest_job_age_seconds"].set_function(lambda: _age(broker.oldest_accepted()))
        g["gq_journal_bytes"].set_function(broker.stored_bytes)
        g["gq_broker_ready"].set_function(lambda: int(broker.health() is None))
        self.count_greenlets("worker", lambda: snapshot().pool_busy)
        self._read_shared(broker)

    def register(self, collector: Collector) -> None:
        """Export what `collector` yields at scrape time (the destinations', the parking's)."""
        self.registry.register(collector)

    def count_greenlets(self, role: str, count: Callable[[], int]) -> None:
        """gq_greenlets{role=`role`} is `count()` at scrape time."""
        self.process.greenlets[role] = count

    def _read_shared(self, broker: Figures) -> None:
        """A shared broker's fleet-wide figures: one Prometheus query can sum the daemons."""
        shared = broker.shared_gauges()
        if shared is None:
            return
        for key, doc in (("stream_length", "Jobs in the shared stream (waiting or being run)"),
                         ("pending", "Jobs of the shared stream held by some daemon")):
            Gauge(f"gq_broker_{key}", doc, registry=self.registry).set_function(partial(_shared, shared, key))

    def bind_health(self, monitor: LoopMonitor) -> None:
        """Event-loop lag from a LoopMonitor; psutil figures at scrape time."""
        self._gauges["gq_event_loop_lag_seconds"].set_function(lambda: monitor.lag)

    def collect(self) -> Iterator[Metric]:
        """The job path's counters and histograms, as they stand; the finished jobs, as the
        dispatcher's snapshot counts them (0 until `read`)."""
        yield self.jobs_accepted.family()
        yield self._finished()
        yield from self._jobs()
        for metric in (self.attempts, self.attempts_unknown, self.rejected, self.operator_actions, self.evicted,
                       self.attempt_duration, self.queue_wait, self.loop_lag):
            yield metric.family()

    def _finished(self) -> CounterMetricFamily:
        now = self._snapshot() if self._snapshot is not None else None
        family = CounterMetricFamily("gq_jobs_finished", "Jobs finished", labels=["outcome"])
        for outcome in FINISHED:
            family.add_metric([outcome], getattr(now, outcome) if now is not None else 0)
        return family

    def _jobs(self) -> Iterator[GaugeMetricFamily]:
        """gq_jobs{state}: the broker's ledger (none while it cannot be read: Redis down)."""
        ledger = self._ledger() if self._ledger is not None else None
        if ledger is None:
            return
        family = GaugeMetricFamily("gq_jobs", "Jobs ever accepted (state=\"accepted\"), and where each is now: "
                                   "by state, or forgotten; accepted is the sum of the others", labels=["state"])
        for state in LEDGER:
            family.add_metric([state], ledger.get(state, 0))
        yield family

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def accepted(self, count: int) -> None:
        self.jobs_accepted.inc(amount=count)

    def dequeued(self, waited: float) -> None:
        self.queue_wait.observe(waited)

    def attempted(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        self.attempts.inc(outcome.verdict.value)
        if result.outcome == UNKNOWN:
            self.attempts_unknown.inc()
        self.attempt_duration.observe(result.duration)


def _shared(gauges: SharedGauges, key: str) -> float:
    """One of a shared broker's fleet-wide figures, as last read."""
    return gauges.shared[key]


def _age(accepted: float | None) -> float:
    return max(0.0, time.time() - accepted) if accepted is not None else 0.0
