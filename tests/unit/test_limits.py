"""Destinations' in-flight caps, rate limits, overrides and host bookkeeping, in process,
on a clock the tests move by hand."""

from __future__ import annotations

import pytest

from gq.core.hosts import HostPatterns
from gq.core.outcome import AttemptResult, decide
from gq.core.retry import RetryPolicy
from gq.dispatch import destinations as destinations_
from gq.dispatch.destinations import Destinations, Limits

HOST = "hooks.example.com"
OK = AttemptResult(0.0, 0.1, status=200)
POLICY = RetryPolicy(max_attempts=5, backoff_base=0.1, backoff_max=10.0)



def end(d: Destinations, host: str = HOST) -> None:
    d.release(host, OK, decide(OK, 1, POLICY.max_attempts, POLICY))


def test_no_limits_admit_everything_at_once(clock):
    d = Destinations(Limits(), [], max_labels=10, clock=clock)
    assert all(d.admit(HOST) == 0.0 for _ in range(1000))
    assert d.get(HOST).in_flight == 1000


def test_max_in_flight_waits_for_an_attempt_to_end(clock):
    d = Destinations(Limits(max_in_flight=2), [], max_labels=10, clock=clock)
    assert [d.admit(HOST), d.admit(HOST)] == [0.0, 0.0]
    assert d.admit(HOST) == float("inf")
    assert d.allowance(HOST) == (0, float("inf"))
    end(d)
    assert d.allowance(HOST)[0] == 1
    assert d.admit(HOST) == 0.0


def test_rate_spends_the_burst_then_one_token_per_interval(clock):
    d = Destinations(Limits(rate=2.0, burst=3), [], max_labels=10, clock=clock)
    assert [d.admit(HOST) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = d.admit(HOST)
    assert wait == pytest.approx(0.5)
    clock.now += 0.25
    assert d.admit(HOST) == pytest.approx(0.25)
    clock.now += 0.25
    assert d.admit(HOST) == 0.0
    clock.now += 60.0  # a long idle time refills the bucket to the burst, not past it
    assert d.allowance(HOST)[0] == 3


def test_an_override_applies_to_its_hosts_only(clock):
    capped = (HostPatterns.parse(["*.example.com"]), Limits(max_in_flight=1))
    d = Destinations(Limits(), [capped], max_labels=10, clock=clock)
    assert d.admit(HOST) == 0.0
    assert d.admit(HOST) == float("inf")
    assert all(d.admit("other.example.org") == 0.0 for _ in range(5))


def test_a_reload_changes_the_limits_of_hosts_already_known(clock):
    d = Destinations(Limits(max_in_flight=1), [], max_labels=10, clock=clock)
    assert d.admit(HOST) == 0.0
    assert d.admit(HOST) == float("inf")
    d.configure(Limits(max_in_flight=3), [])
    assert [d.admit(HOST), d.admit(HOST)] == [0.0, 0.0]
    assert d.get(HOST).in_flight == 3


def test_hosts_past_max_labels_share_the_label_other(clock):
    d = Destinations(Limits(), [], max_labels=2, clock=clock)
    labels = [d.get(f"h{n}.example.com").label for n in range(4)]
    assert labels == ["h0.example.com", "h1.example.com", "other", "other"]
    assert d.by_label() == {"h0.example.com": ["h0.example.com"], "h1.example.com": ["h1.example.com"],
                            "other": ["h2.example.com", "h3.example.com"]}


def test_idle_hosts_are_forgotten_past_max_hosts_but_busy_ones_are_kept(clock, monkeypatch):
    monkeypatch.setattr(destinations_, "MAX_HOSTS", 3)
    d = Destinations(Limits(rate=1.0, burst=1), [], max_labels=10, clock=clock)
    assert d.admit("busy") == 0.0        # in flight
    d.get("idle")                         # known, nothing going on, bucket full
    assert d.admit("spent") == 0.0
    end(d, "spent")                       # its bucket is empty: a forgotten host would start full
    d.get("new")
    assert set(d.hosts) == {"busy", "spent", "new"}
    assert d.admit("spent") == pytest.approx(1.0), "a host whose bucket was spent started afresh"
