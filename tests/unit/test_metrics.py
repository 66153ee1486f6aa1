"""gq's lock-free counters and histograms export what Prometheus' own would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from gq.observe.metrics import LATENCY_BUCKETS, HistogramFamily, Metrics
from support import exposition_samples


def registry_samples(registry: CollectorRegistry) -> dict:
    return exposition_samples(generate_latest(registry).decode())


def test_histogram_matches_prometheus_clients():
    values = [0.0, 0.001, 0.0011, 0.5, 2.5, 7.0, 299.0, 300.0, 301.0, 1e9]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    mine = HistogramFamily("h_seconds", "doc", LATENCY_BUCKETS)
    ours.register(type("C", (), {"collect": lambda self: [mine.family()]})())
    reference = Histogram("h_seconds", "doc", buckets=LATENCY_BUCKETS, registry=theirs)
    for v in values:
        mine.observe(v)
        reference.observe(v)
    assert registry_samples(ours) == {k: v for k, v in registry_samples(theirs).items()
                                      if not k[0].endswith("_created")}


def test_counters_start_at_zero_and_count():
    metrics = Metrics()
    metrics.accepted(3)
    metrics.rejected.inc("queue_full")
    got = registry_samples(metrics.registry)
    assert got[("gq_jobs_accepted_total", ())] == 3
    assert got[("gq_intake_rejected_total", (("reason", "queue_full"),))] == 1
    assert got[("gq_intake_rejected_total", (("reason", "draining"),))] == 0
    assert got[("gq_jobs_finished_total", (("outcome", "dead"),))] == 0
