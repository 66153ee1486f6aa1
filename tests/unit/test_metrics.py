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


def test_an_attempt_of_unknown_outcome_is_counted_apart_and_by_its_verdict():
    from gq.broker import Entry
    from gq.core.job import Job
    from gq.core.outcome import AttemptResult, Outcome, Verdict, recorded

    metrics = Metrics()
    entry = Entry(Job("j", "POST", "http://x/", {}))
    died = AttemptResult(0.0, 0.0, error="died: gq stopped during attempt 1")
    metrics.attempted(entry, recorded(died, Outcome(Verdict.RETRY), interrupted=True), Outcome(Verdict.RETRY))
    metrics.attempted(entry, recorded(AttemptResult(0.0, 0.1, status=200), Outcome(Verdict.SUCCESS)),
                      Outcome(Verdict.SUCCESS))
    got = registry_samples(metrics.registry)
    assert got[("gq_attempts_unknown_total", ())] == 1
    assert got[("gq_attempts_total", (("result", "retry"),))] == 1
    assert got[("gq_attempts_total", (("result", "success"),))] == 1
