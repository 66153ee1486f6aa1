"""The circuit breaker and the host pause, in process, on a clock the tests move by hand."""

from __future__ import annotations

import dataclasses

import pytest

from gq.core.outcome import AttemptResult, decide
from gq.core.retry import RetryPolicy
from gq.dispatch.destinations import CLOSED, HALF_OPEN, OPEN, PROBES, Destinations, Limits
from support import Clock

HOST = "hooks.example.com"
DOWN = AttemptResult(0.0, 0.1, error="connect: Connection refused")
ERROR_503 = AttemptResult(0.0, 0.1, status=503)
OK = AttemptResult(0.0, 0.1, status=200)
POLICY = RetryPolicy(max_attempts=10, backoff_base=0.1, backoff_max=60.0)



def destinations(clock: Clock, **limits) -> Destinations:
    return Destinations(Limits(**limits), [], max_labels=10, clock=clock)


def end(d: Destinations, result: AttemptResult, retry_after: float | None = None) -> None:
    """An admitted attempt ended with `result` (with a Retry-After of `retry_after` seconds):
    released as the dispatcher does, with what gq.core.outcome decides it means."""
    if retry_after is not None:
        result = dataclasses.replace(result, retry_after=f"{retry_after:g}")
    d.release(HOST, result, decide(result, 1, POLICY.max_attempts, POLICY))


def attempt(d: Destinations, result: AttemptResult, retry_after: float | None = None) -> None:
    """One attempt admitted and ended with `result`."""
    assert d.admit(HOST) == 0.0
    end(d, result, retry_after)


def circuit(d: Destinations) -> str:
    return d.get(HOST).circuit


def test_defaults_have_no_breaker_and_no_pause(clock):
    d = destinations(clock)
    for _ in range(1000):
        attempt(d, DOWN)
        clock.now += 0.1
    attempt(d, ERROR_503, retry_after=30.0)
    assert circuit(d) == CLOSED
    assert d.admit(HOST) == 0.0, "a Retry-After paused the host with pause_on_retry_after off"
    assert d.transitions == {}


def test_a_burst_of_failures_does_not_open_the_circuit_without_time_passing(clock):
    # 50 concurrent first attempts all fail at once: a run of unlucky jobs, not a host down.
    d = destinations(clock, breaker_failures=5, breaker_window=10)
    for _ in range(50):
        assert d.admit(HOST) == 0.0
    for _ in range(50):
        end(d, ERROR_503)
    clock.now += 9.9
    attempt(d, DOWN)
    assert circuit(d) == CLOSED


def test_a_host_answering_now_and_then_never_opens(clock):
    # Two failures of every three for a minute: the host still answers.
    d = destinations(clock, breaker_failures=5, breaker_window=10)
    for i in range(600):
        attempt(d, OK if i % 3 == 2 else ERROR_503)
        clock.now += 0.1
    assert circuit(d) == CLOSED


def test_opens_after_a_window_without_an_answer_with_enough_failures(clock):
    d = destinations(clock, breaker_failures=5, breaker_window=10)
    attempt(d, DOWN)
    clock.now += 10.0
    for _ in range(3):  # silent for the window, but too few failures within it
        attempt(d, DOWN)
    assert circuit(d) == CLOSED
    attempt(d, DOWN)
    assert circuit(d) == CLOSED
    attempt(d, DOWN)  # the fifth failure within the window
    assert circuit(d) == OPEN
    assert d.transitions[HOST] == {OPEN: 1}


def test_old_failures_outside_the_window_do_not_count(clock):
    d = destinations(clock, breaker_failures=3, breaker_window=5)
    attempt(d, DOWN)
    attempt(d, DOWN)
    clock.now += 60.0  # the host was not asked for a minute
    attempt(d, DOWN)
    assert circuit(d) == CLOSED, "two failures a minute old opened the circuit"


def open_circuit(d: Destinations, clock: Clock) -> None:
    attempt(d, DOWN)
    clock.now += d.get(HOST).limits.breaker_window
    for _ in range(d.get(HOST).limits.breaker_failures):
        attempt(d, DOWN)
    assert circuit(d) == OPEN


def test_an_open_circuit_fails_attempts_at_once_and_lets_all_jobs_through_to_do_so(clock):
    d = destinations(clock, breaker_failures=2, breaker_window=1, breaker_cooldown=5)
    open_circuit(d, clock)
    refusal = d.admit(HOST)
    assert isinstance(refusal, str) and refusal.startswith(f"circuit open: {HOST}")
    assert "next probe in 5.0s" in refusal
    assert d.get(HOST).in_flight == 0, "a refused attempt took a slot"
    allowed, _ = d.allowance(HOST)
    assert allowed > 1000  # parked jobs are dispatched, to fail at once, not held


def test_half_open_lets_probes_through_and_the_first_answer_closes(clock):
    d = destinations(clock, breaker_failures=2, breaker_window=1, breaker_cooldown=5)
    open_circuit(d, clock)
    clock.now += 5.0
    for _ in range(PROBES):
        assert d.admit(HOST) == 0.0
    assert circuit(d) == HALF_OPEN
    assert d.admit(HOST) == float("inf"), "more than PROBES attempts at once while half-open"
    end(d, ERROR_503)  # one unlucky probe does not reopen it
    assert circuit(d) == HALF_OPEN
    end(d, OK)
    assert circuit(d) == CLOSED
    end(d, ERROR_503)
    assert circuit(d) == CLOSED
    assert d.transitions[HOST] == {OPEN: 1, HALF_OPEN: 1, CLOSED: 1}


def test_half_open_reopens_after_every_probe_failed_for_one_more_cooldown(clock):
    d = destinations(clock, breaker_failures=2, breaker_window=1, breaker_cooldown=5)
    open_circuit(d, clock)
    for _ in range(3):
        clock.now += 5.0
        for _ in range(PROBES):
            attempt(d, DOWN)
        assert circuit(d) == OPEN
        refusal = d.admit(HOST)
        assert isinstance(refusal, str) and "next probe in 5.0s" in refusal, refusal


def test_a_429_or_a_404_is_an_answer_and_a_refused_connection_is_neither(clock):
    d = destinations(clock, breaker_failures=2, breaker_window=1, breaker_cooldown=5)
    open_circuit(d, clock)
    clock.now += 5.0
    attempt(d, AttemptResult(0.0, 0.1, status=429, retry_after="1"), retry_after=1.0)
    assert circuit(d) == CLOSED
    refused = AttemptResult(0.0, 0.0, error="refused: 127.0.0.1 is not allowed", refused=True)
    attempt(d, DOWN)
    clock.now += 2.0
    for _ in range(5):
        attempt(d, refused)
    assert circuit(d) == CLOSED, "attempts gq refused to send counted against the host"
    attempt(d, AttemptResult(0.0, 0.1, status=404))
    clock.now += 2.0
    attempt(d, DOWN)
    assert circuit(d) == CLOSED, "a 404 did not count as the host answering"


def test_pause_on_retry_after_pauses_the_host_for_the_honoured_delay(clock):
    d = destinations(clock, pause_on_retry_after=True)
    attempt(d, ERROR_503, retry_after=3.0)
    assert d.admit(HOST) == pytest.approx(3.0)
    clock.now += 3.0
    assert d.admit(HOST) == 0.0


def test_turning_the_breaker_off_by_reload_closes_an_open_circuit(clock):
    d = destinations(clock, breaker_failures=2, breaker_window=1, breaker_cooldown=60)
    open_circuit(d, clock)
    d.configure(Limits(), [])
    assert circuit(d) == CLOSED
    assert d.admit(HOST) == 0.0
