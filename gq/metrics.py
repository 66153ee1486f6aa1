"""Prometheus metrics: declared here against one registry, fed as a dispatcher observer.

Gauges of state (queue depth, busy workers) are read at scrape time, so the
job path only ever increments counters and observes histograms.
"""

from __future__ import annotations

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, generate_latest,
                               GCCollector, PlatformCollector, ProcessCollector,
                               disable_created_metrics)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gq.broker import Entry
from gq.dispatcher import Observer
from gq.health import HealthCollector
from gq.outcome import AttemptResult, Outcome, Verdict

CONTENT_TYPE = CONTENT_TYPE_LATEST
disable_created_metrics()  # the *_created series double the exposition and say nothing here
# HTTP attempts take milliseconds to minutes; queue waits the same.
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0, 120.0, 300.0)
# A healthy hub runs a timer within a millisecond; a second late means a blocking call.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REJECT_REASONS = ("invalid", "unauthorized", "too_large", "queue_full", "draining")


class Metrics(Observer):
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = r = registry or CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=r)
        self.jobs_accepted = Counter("gq_jobs_accepted", "Jobs accepted (202)", registry=r)
        finished = Counter("gq_jobs_finished", "Jobs finished", ["outcome"], registry=r)
        self.finished = {v: finished.labels(v) for v in ("succeeded", "dead")}
        attempts = Counter("gq_attempts", "Attempts by result", ["result"], registry=r)
        self.attempts = {v: attempts.labels(v.value) for v in Verdict}
        rejected = Counter("gq_intake_rejected", "Intake requests refused", ["reason"], registry=r)
        self.rejected = {v: rejected.labels(v) for v in REJECT_REASONS}
        self.attempt_duration = Histogram("gq_attempt_duration_seconds", "Duration of one attempt",
                                          buckets=LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram("gq_queue_wait_seconds", "Time a job waited in the queue",
                                    buckets=LATENCY_BUCKETS, registry=r)
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
                ("gq_event_loop_lag_seconds", "How late the latest event-loop timer fired"))}
        self.loop_lag = Histogram("gq_event_loop_delay_seconds", "How late event-loop timers fire",
                                  buckets=LAG_BUCKETS, registry=r)
        self.process = HealthCollector()
        r.register(self.process)

    def bind(self, dispatcher) -> None:
        """Read the dispatcher's state at scrape time."""
        g, d = self._gauges, dispatcher
        g["gq_queue_depth"].set_function(d.queue.qsize)
        g["gq_queue_maxsize"].set_function(lambda: d.queue.maxsize)
        g["gq_pool_busy"].set_function(d.busy)
        g["gq_pool_size"].set_function(lambda: d.pool.size)
        g["gq_retry_scheduled"].set_function(lambda: d.broker.counts()["retrying"])
        g["gq_journal_pending"].set_function(
            lambda: sum(n for s, n in d.broker.counts().items() if s != "dead"))
        g["gq_dead_letters"].set_function(lambda: d.broker.counts()["dead"])
        g["gq_draining"].set_function(lambda: int(d.draining))
        self.bind_shared(d.broker)
        self.process.groups["worker"] = d.pool
        self.registry.register(d.destinations)

    def bind_shared(self, broker) -> None:
        """A shared broker's fleet-wide figures: one Prometheus query can sum the daemons."""
        shared = getattr(broker, "shared", None)
        if shared is None:
            return
        for key, doc in (("stream_length", "Jobs in the shared stream (waiting or being run)"),
                         ("pending", "Jobs of the shared stream held by some daemon")):
            Gauge(f"gq_broker_{key}", doc, registry=self.registry).set_function(
                lambda key=key: broker.shared[key])

    def bind_health(self, monitor) -> None:
        """Event-loop lag from a LoopMonitor; psutil figures at scrape time."""
        self._gauges["gq_event_loop_lag_seconds"].set_function(lambda: monitor.lag)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def accepted(self, count: int) -> None:
        self.jobs_accepted.inc(count)

    def dequeued(self, waited: float) -> None:
        self.queue_wait.observe(waited)

    def attempted(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        self.attempts[outcome.verdict].inc()
        self.attempt_duration.observe(result.duration)
        if outcome.verdict is Verdict.SUCCESS:
            self.finished["succeeded"].inc()
        elif outcome.verdict is Verdict.FAIL:
            self.finished["dead"].inc()
