"""What an attempt's result means: for its job (succeeded, retry later, or dead) and for
its host (it answered, it failed, or it was never asked), in one rule: `decide`."""

from __future__ import annotations

import email.utils
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum

from gq.core.retry import RetryPolicy

RETRIED_STATUSES = frozenset((408, 425, 429))


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one attempt did: a status, or an error when no response came."""

    started: float                  # wall-clock seconds since the epoch
    duration: float                 # seconds
    status: int | None = None
    error: str | None = None        # e.g. "timeout: ...", "connect: ..."
    retry_after: str | None = None  # the response's Retry-After header, as sent
    snippet: str = ""               # the start of the response body
    refused: bool = False           # gq would not connect (a forbidden address): never retried
    outcome: str | None = None      # what came of it, as a job's history shows it (`recorded`)


class Verdict(str, Enum):
    """An attempt's result, as the `result` label of gq_attempts_total."""

    SUCCESS = "success"
    RETRY = "retry"
    FAIL = "fail"


UNKNOWN = "unknown"   # the outcome of an attempt gq died during: the target may have received it
DIED_PREFIX = "died: "  # how the error of such an attempt begins (gq.dispatch.dispatcher.DIED)


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    delay: float = 0.0   # seconds before the next attempt, for RETRY
    reason: str = ""     # why a job is dead: "permanent status 404", "attempts used up"
    answered: bool | None = None  # of the host: True it answers, False it failed, None not asked
    retry_after: float | None = None  # for RETRY: the delay honoured from the target's Retry-After


def retryable(result: AttemptResult) -> bool:
    if result.status is None:
        return not result.refused  # connection errors and timeouts are retried
    return result.status in RETRIED_STATUSES or 500 <= result.status <= 599


def host_answered(result: AttemptResult) -> bool | None:
    """What an attempt says of its host, for a circuit breaker: True it answers (any status
    below 500: a 404 or a 429 comes from a live host), False it failed (a connection error,
    a timeout, a 5xx), None nothing (gq refused to connect: the host was never asked)."""
    if result.refused:
        return None
    return result.status is not None and result.status < 500


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from `now`: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def decide(result: AttemptResult, attempt: int, max_attempts: int, policy: RetryPolicy) -> Outcome:
    """Classify attempt number `attempt` (1-based) of a job allowed `max_attempts`."""
    answered = host_answered(result)
    if result.status is not None and 200 <= result.status <= 299:
        return Outcome(Verdict.SUCCESS, answered=answered)
    if not retryable(result):
        reason = (result.error or "") if result.refused else f"permanent status {result.status}"
        return Outcome(Verdict.FAIL, reason=reason, answered=answered)
    if attempt >= max_attempts:
        return Outcome(Verdict.FAIL, reason=f"attempts used up ({attempt})", answered=answered)
    wait = parse_retry_after(result.retry_after, result.started + result.duration)
    delay = policy.delay(attempt, wait)
    return Outcome(Verdict.RETRY, delay=delay, answered=answered,
                   retry_after=delay if result.retry_after else None)


def recorded(result: AttemptResult, outcome: Outcome, interrupted: bool = False) -> AttemptResult:
    """`result` as a job's history keeps it: with its outcome, the verdict's name ("success",
    "retry", "fail"), or "unknown" for the attempt gq died during (`interrupted`), which
    may have reached the target whatever was decided of the job since."""
    return replace(result, outcome=UNKNOWN if interrupted else outcome.verdict.value)


def outcome_of(result: AttemptResult) -> str | None:
    """The outcome a job's history shows of `result`: the one recorded, or for an attempt
    kept by an earlier gq (without one) what its result alone says: "success" for a 2xx,
    "unknown" for an attempt gq died during; None when it cannot be told (retried or not
    depended on the attempts left)."""
    if result.outcome is not None:
        return result.outcome
    if result.status is not None and 200 <= result.status <= 299:
        return Verdict.SUCCESS.value
    if result.error is not None and result.error.startswith(DIED_PREFIX):
        return UNKNOWN
    return None


def unknown_attempts(history: Iterable[AttemptResult]) -> int:
    """How many attempts of a job's `history` are of unknown outcome (`outcome_of`): gq
    died during each, so the target may have received it, and the job may have been
    delivered more than once. What a job's view shows as `unknown_attempts`."""
    return sum(outcome_of(attempt) == UNKNOWN for attempt in history)
