"""Retry timing and the pure classification of an attempt's result."""

from __future__ import annotations

import email.utils
import random

import pytest

from gq.core.outcome import AttemptResult, Verdict, decide, parse_retry_after
from gq.core.retry import RetryPolicy

NOW = 1_700_000_000.0
POLICY = RetryPolicy(max_attempts=5, backoff_base=0.5, backoff_max=60.0)


class TopOfRange(random.Random):
    """Draws the top of every jitter range, and records the ranges asked for."""

    def __init__(self):
        super().__init__(0)
        self.ranges: list[tuple[float, float]] = []

    def uniform(self, a, b):
        self.ranges.append((a, b))
        return b


def result(status=None, retry_after=None, error=None) -> AttemptResult:
    return AttemptResult(started=NOW, duration=0.25, status=status, retry_after=retry_after,
                         error=error if error or status is not None else "connect: refused")


# -- RetryPolicy.delay


def test_delay_ceiling_starts_at_base_doubles_and_is_capped():
    rng = TopOfRange()
    delays = [POLICY.delay(attempt, rng=rng) for attempt in range(1, 11)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert all(low == 0.0 for low, _ in rng.ranges), "full jitter: every range starts at zero"


@pytest.mark.parametrize("attempt", [1, 3, 8])
def test_delay_is_full_jitter_within_zero_and_the_ceiling(attempt):
    ceiling = min(POLICY.backoff_max, POLICY.backoff_base * 2 ** (attempt - 1))
    rng = random.Random(attempt)
    delays = [POLICY.delay(attempt, rng=rng) for _ in range(500)]
    assert all(0.0 <= d <= ceiling for d in delays)
    # Spread over the whole range, not bunched at one end.
    assert min(delays) < 0.1 * ceiling and max(delays) > 0.9 * ceiling


def test_delay_with_the_same_seed_is_the_same():
    assert POLICY.delay(4, rng=random.Random(7)) == POLICY.delay(4, rng=random.Random(7))


@pytest.mark.parametrize("attempt", [64, 1025, 10**6, 10**18])
def test_huge_attempt_numbers_stay_at_the_cap(attempt):
    assert POLICY.delay(attempt, rng=TopOfRange()) == POLICY.backoff_max


@pytest.mark.parametrize("retry_after, expected", [
    (7.0, 7.0),
    (0.0, 0.0),
    (60.0, 60.0),
    (3600.0, 60.0),     # capped at backoff_max
    (-5.0, 0.0),
    (float("inf"), 60.0),
])
def test_retry_after_wins_over_backoff_up_to_the_cap(retry_after, expected):
    rng = TopOfRange()
    assert POLICY.delay(1, retry_after=retry_after, rng=rng) == expected
    assert rng.ranges == [], "no jitter when the target said when"


# -- parse_retry_after


def http_date(when: float) -> str:
    return email.utils.formatdate(when, usegmt=True)


@pytest.mark.parametrize("value, expected", [
    ("120", 120.0),
    (" 5 ", 5.0),
    ("0", 0.0),
    (http_date(NOW + 30), 30.0),
    (http_date(NOW - 30), 0.0),
    (None, None),
    ("", None),
    ("   ", None),
    ("soon", None),
    ("-5", None),
    ("1.5", None),
    ("Wed, 21 Oct 2015 07:28:00", None),   # a date without a zone
    ("\u00b2", None),                      # "²": a digit to str.isdigit, not to float()
    ("\u00b9\u00b3", None),
])
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, NOW) == expected


# -- decide


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_succeeds(status):
    assert decide(result(status), 1, 5, POLICY).verdict is Verdict.SUCCESS


def test_success_on_the_last_attempt_is_still_success():
    assert decide(result(200), 5, 5, POLICY).verdict is Verdict.SUCCESS


RETRIED = [None, 408, 425, 429, 500, 502, 503, 504, 599]


@pytest.mark.parametrize("status", RETRIED)
def test_retried_failures_retry_within_the_backoff(status):
    outcome = decide(result(status), 2, 5, POLICY)
    assert outcome.verdict is Verdict.RETRY
    assert 0.0 <= outcome.delay <= 1.0    # attempt 2: ceiling is base * 2


def test_timeout_is_retried():
    assert decide(result(error="timeout: no answer within 10s"), 1, 5, POLICY).verdict is Verdict.RETRY


@pytest.mark.parametrize("status", [300, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 410, 422])
def test_other_statuses_are_permanent(status):
    outcome = decide(result(status), 1, 5, POLICY)
    assert (outcome.verdict, outcome.reason) == (Verdict.FAIL, f"permanent status {status}")


@pytest.mark.parametrize("status", RETRIED)
def test_last_attempt_turns_a_retryable_failure_into_fail(status):
    outcome = decide(result(status), 5, 5, POLICY)
    assert outcome.verdict is Verdict.FAIL
    assert outcome.reason.startswith("attempts used up")


def test_refused_connection_is_dead_at_once_with_its_reason():
    why = "refused: h resolved to 169.254.169.254, a link-local or metadata address, always refused"
    outcome = decide(AttemptResult(NOW, 0.0, error=why, refused=True), 1, 5, POLICY)
    assert (outcome.verdict, outcome.reason) == (Verdict.FAIL, why)


def test_permanent_status_on_the_last_attempt_says_permanent():
    assert decide(result(404), 1, 1, POLICY).reason == "permanent status 404"


@pytest.mark.parametrize("header, delay", [
    ("7", 7.0),
    ("86400", 60.0),
    (http_date(NOW + 10), 9.75),   # counted from the end of the attempt (started + duration)
    ("garbage", None),
])
def test_retry_after_header_sets_the_delay(header, delay):
    outcome = decide(result(429, retry_after=header), 1, 5, POLICY)
    assert outcome.verdict is Verdict.RETRY
    if delay is None:
        assert 0.0 <= outcome.delay <= POLICY.backoff_base
    else:
        assert outcome.delay == pytest.approx(delay)


def test_an_attempt_is_kept_with_its_outcome_and_read_back_from_five_elements_too():
    from gq.broker import attempt_of, stored
    from gq.core.outcome import Outcome, outcome_of, recorded

    result = AttemptResult(NOW, 0.25, status=503, snippet="busy")
    retried = recorded(result, Outcome(Verdict.RETRY, delay=1.0))
    assert retried.outcome == "retry" and recorded(result, Outcome(Verdict.FAIL), interrupted=True).outcome == "unknown"
    assert stored(retried) == [NOW, 0.25, 503, None, "busy", "retry"]
    assert attempt_of(stored(retried)) == retried
    assert attempt_of([NOW, 0.25, 503, None, "busy"]) == result  # an earlier gq's: no outcome kept
    assert [outcome_of(AttemptResult(NOW, 0.0, status=s, error=e)) for s, e in [
        (204, None), (None, "died: gq stopped during attempt 1"), (503, None), (None, "timeout: 10s")]] == [
        "success", "unknown", None, None]


def test_a_jobs_view_counts_its_attempts_of_unknown_outcome():
    from gq.broker import Entry
    from gq.core.job import Job
    from gq.core.outcome import Outcome, recorded, unknown_attempts

    died = AttemptResult(NOW, 0.0, error="died: gq stopped during attempt 1")
    history = [recorded(died, Outcome(Verdict.RETRY), interrupted=True),
               AttemptResult(NOW, 0.0, error="died: gq stopped during attempt 2"),  # kept by an earlier gq
               recorded(result(503), Outcome(Verdict.RETRY)),
               recorded(result(200), Outcome(Verdict.SUCCESS))]
    assert unknown_attempts(history) == 2 and unknown_attempts(history[2:]) == 0 and unknown_attempts([]) == 0
    entry = Entry(Job("j", "POST", "http://x/", {}), attempts=4, history=history)
    assert entry.status()["unknown_attempts"] == 2 and entry.status(listed=True)["unknown_attempts"] == 2
    assert Entry(Job("k", "POST", "http://x/", {})).status()["unknown_attempts"] == 0
