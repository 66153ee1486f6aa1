"""Brokers keep jobs between intake and outcome; the dispatcher cannot tell which one it runs on.

A broker holds every accepted job until its outcome is final. Its users see it
through the part they need: the intake adds jobs and looks them up (`Intake`),
the dispatcher asks for work and reports each attempt's start and outcome
(`Dispatch`), metrics read its gauges (`Gauges`). Every broker keeps retries
waiting on its own schedule, so a job waiting for its next attempt holds
neither a worker nor a queue slot.

The wing holds three brokers: memory.py (with memory_*.py), the SQLite journal
(journal*.py, storage.py) and Redis Streams (redis_*.py, fleet_limits.py, scripts/*.lua);
[broker] and [journal] are declared in sections.py. Owns: the jobs. May import: gq.core
and gq.errors only. Every wing above may import it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from gq.core.audit import AuditLog
from gq.core.job import Job
from gq.core.lifecycle import (  # noqa: F401 - the broker's users read a job's states from here too
    CANCELLABLE,
    LEDGER,
    NO_SUCH_JOB,
    PAYLOAD_NOT_KEPT,
    REPLAYABLE,
    RULES,
    UNFINISHED,
    Event,
    State,
    moved,
    unreplayable,
)
from gq.core.outcome import UNKNOWN, AttemptResult, Outcome, outcome_of, unknown_attempts

# What `"request"` shows in place of the payload of a succeeded job that did not keep it.
PAYLOAD_DROPPED = "not kept"
HISTORY_LIMIT = 20  # attempts kept per job; the first and the latest ones


SHOWN = (State.QUEUED, State.SCHEDULED, State.RUNNING, State.RETRYING, State.DEAD)  # Counts.shown()'s


@dataclass(eq=False, slots=True)
class Entry:
    """A job and where it stands; owned by its broker, read by the dispatcher."""

    job: Job
    state: State = State.QUEUED
    attempts: int = 0
    due: float = 0.0                        # wall-clock time the next attempt may start
    accepted_at: float = 0.0                # wall-clock time of the 202
    history: list[AttemptResult] = field(default_factory=list)
    reason: str = ""                        # why it is dead
    handle: Any = None                      # the broker's own reference (a stream entry's id)
    interrupted: bool = False               # its last attempt began but never ended (gq died)
    trimmed: bool = False                   # succeeded, its payload dropped (journal.keep_succeeded_payload)

    def status(self, hidden: frozenset[str] = frozenset(), listed: bool = False) -> dict[str, Any]:
        """The job as `GET /v1/jobs/{id}` shows it (`listed`: as a page of `GET /v1/jobs`
        does, long headers cut); secret header values redacted (`hidden` names more of them)."""
        last = self.history[-1] if self.history else None
        request = self.job.shown(hidden, listed)
        if self.trimmed:
            request["payload"] = PAYLOAD_DROPPED
        return {
            "id": self.job.id,
            "state": self.state.value,
            "request": request,
            "attempts": self.attempts,
            "unknown_attempts": unknown_attempts(self.history),
            "last_status": last.status if last else None,
            "last_error": last.error if last else None,
            "next_attempt_at": self.due if self.state in (State.RETRYING, State.SCHEDULED) else None,
            "dead_reason": self.reason or None,
            "accepted_at": self.accepted_at or None,
            "run_at": self.job.run_at,
            "ordering_key": self.job.ordering_key,
            "history": [
                {"started": a.started, "duration": round(a.duration, 6), "status": a.status,
                 "error": a.error, "response": a.snippet, "outcome": outcome_of(a)} for a in self.history],
        }


def describe(entry: Entry, hidden: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A dead letter as `gq dlq list --json` shows it, secrets redacted."""
    status = entry.status(hidden)
    return {"id": entry.job.id, "url": status["request"]["url"], "attempts": entry.attempts,
            "reason": entry.reason, "last_status": status["last_status"],
            "last_error": status["last_error"], "request": status["request"],
            "history": status["history"]}


def stored(attempt: AttemptResult) -> list[Any]:
    """An attempt as the journal and Redis keep it: [started, duration, status, error,
    snippet, outcome] (an earlier gq kept the first five only)."""
    return [attempt.started, round(attempt.duration, 6), attempt.status, attempt.error, attempt.snippet,
            attempt.outcome]


def attempt_of(kept: list[Any]) -> AttemptResult:
    """The attempt `stored()` kept, or an earlier gq's five elements (outcome None); by name:
    AttemptResult has fields between error and snippet."""
    started, duration, status, error, snippet = kept[:5]
    outcome = kept[5] if len(kept) > 5 and isinstance(kept[5], str) else None
    return AttemptResult(started, duration, status, error, snippet=snippet, outcome=outcome)


def record(entry: Entry, result: AttemptResult) -> None:
    """Add an attempt to `entry`'s history, which keeps the first and the latest ones."""
    entry.history.append(result)
    entry.history = cut_history(entry.history, HISTORY_LIMIT)


def cut_history(history: list[AttemptResult], most: int) -> list[AttemptResult]:
    """`history` cut to `most` attempts: the first (it often says the most) and the latest;
    but an attempt of unknown outcome (gq died during it: the target may have received it)
    stays all the same, so that the job still shows it may have been delivered twice."""
    if len(history) <= most:
        return history
    older, latest = history[1:-(most - 1)], history[-(most - 1):]
    return history[:1] + [a for a in older if outcome_of(a) == UNKNOWN] + latest


def drop_payload(entry: Entry, keep_payload: bool) -> None:
    """`entry` succeeds: its payload dropped unless `keep_payload` (journal.keep_succeeded_payload),
    as gq/core/lifecycle.py says (a job that had one is then `trimmed`: it cannot be replayed)."""
    if RULES[Event.SUCCEEDED].drops_payload and not keep_payload and entry.job.data is not None:
        entry.job, entry.trimmed = dataclasses.replace(entry.job, data=None, is_json=False), True


class Counts:
    """The broker's ledger, kept in this process as its entries move (gq/core/lifecycle.py:
    every job accepted is in one state, or forgotten); `start`: as the broker's storage
    last had it."""

    def __init__(self, start: dict[str, int] | None = None):
        self.ledger = dict.fromkeys(LEDGER, 0)
        self.ledger.update(start or {})

    def arrived(self, state: State, n: int = 1) -> None:
        """`n` new jobs, accepted into `state`."""
        moved(self.ledger, None, state, n)

    def shift(self, was: State, now: State | None, n: int = 1) -> None:
        """`n` jobs that are not entries here moved (None: forgotten)."""
        moved(self.ledger, was, now, n)

    def move(self, entry: Entry, state: State) -> None:
        moved(self.ledger, entry.state, state)
        entry.state = state

    def unfinished(self) -> int:
        return sum(self.ledger[s.value] for s in UNFINISHED)

    def shown(self) -> dict[str, int]:
        """Jobs by state as the status and the metrics show them: unfinished, and dead."""
        return {s.value: self.ledger[s.value] for s in SHOWN}


class Conflict(Exception):
    """The job is not in a state the operation takes; `state` is the one it is in."""

    def __init__(self, job_id: str, state: State):
        super().__init__(f"job {job_id!r} is {state.value}")
        self.job_id, self.state = job_id, state


@dataclass(frozen=True, slots=True)
class Filter:
    """Which jobs `find` returns: by state (None: any), host (a destination, as
    gq.core.hosts.destination spells it), accepted in [since, until), ordering key (exact), id
    prefix; `after` a page's position (accepted_at, a number the broker keeps): only older ones."""

    state: State | None = None
    host: str | None = None
    since: float | None = None
    until: float | None = None
    after: tuple[float, int] | None = None
    key: str | None = None
    prefix: str | None = None

    def matches(self, job: Job) -> bool:
        """Whether `job` has the key and id prefix asked for (the other conditions are the
        broker's to check, on what it keeps of the job)."""
        return ((self.key is None or job.ordering_key == self.key)
                and (self.prefix is None or job.id.startswith(self.prefix)))

    def fields(self) -> dict[str, Any]:
        """The filter as the API's query parameters and replay fields name it, those given
        only (no position: the API's cursors are its own)."""
        named = {"state": self.state.value if self.state else None, "host": self.host,
                 "since": self.since, "until": self.until, "ordering_key": self.key, "id_prefix": self.prefix}
        return {name: value for name, value in named.items() if value is not None}


Found = tuple[Entry, tuple[float, int]]  # a job `find` found, and its position (for Filter.after)


@dataclass(frozen=True, slots=True)
class Replayed:
    """What a replay did: the ids run again, in the order they were accepted; and the ids
    named (or found) that were not, each once with why (`unreplayable`), in the order given."""

    ids: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Added:
    """What `Intake.add` did: the new entries to run here at once, the ids already known,
    and how many new jobs the broker keeps until the dispatcher takes them."""

    entries: list[Entry]
    duplicates: list[str]
    stored: int = 0


class Intake(Protocol):
    # True: the broker keeps jobs the queue has no room for (on disk, in Redis): intake is
    # bounded by the broker's backlog. False (memory only): intake waits for queue room.
    backlog: bool

    def add(self, jobs: Iterable[Job], hold: int = 0) -> Added:
        """Accept jobs; once this returns they survive a crash (a durable broker). Known ids
        are duplicates. Up to `hold` new entries may be returned to run here at once (the
        queue has room for them); the others wait in the broker for `take`."""

    def get(self, job_id: str) -> Entry | None: ...

    def counts(self) -> dict[str, int]:
        """Jobs by state: queued, running, retrying, dead (finished jobs are not counted)."""

    def health(self) -> str | None:
        """Why the broker cannot take jobs now (storage, Redis), or None: /readyz says it."""


class Dispatch(Protocol):
    def take(self, limit: int, timeout: float) -> list[Entry]:
        """Up to `limit` entries due to run that are not in the dispatcher's hands, waiting up
        to `timeout` seconds for some when none is due."""

    def started(self, entry: Entry) -> None:
        """An attempt of `entry` is starting: once this returns it is on record (a durable
        broker has written it), so a crash during the attempt still counts it."""

    def settle(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        """Record an attempt and its outcome: done, dead, or due again after `outcome.delay`."""

    def defer(self, entry: Entry, due: float) -> None:
        """Hold `entry`, not attempted, until `due` (wall clock): its host cannot take it now."""



class Gauges(Protocol):
    def oldest_accepted(self) -> float | None:
        """Wall-clock time the oldest unfinished job was accepted; None when there is none."""

    def stored_bytes(self) -> int:
        """Bytes of the broker's files on disk (0 for none)."""

    def ledger(self) -> dict[str, int] | None:
        """Every job accepted, and where each is now (gq/core/lifecycle.py LEDGER), as one
        consistent reading: of this process's jobs, of the journal's life, of the fleet's
        Redis; None when it cannot be read now (Redis unavailable)."""


class DeadLetters(Protocol):
    """Dead letters, administered in the process that runs them (`gq dlq` reaches a
    running daemon's journal through the file, see journal.JournalAdmin)."""

    def dead_letters(self) -> list[Entry]: ...

    def replay(self, ids: Iterable[str] | None) -> Replayed:
        """Dead letters back to the queue (None = all)."""

    def purge(self, ids: Iterable[str] | None) -> list[str]:
        """Dead letters deleted (None = all); returns the ids purged."""


class DeadLetterAdmin(Protocol):
    """What `gq dlq` does, whether or not a daemon runs: on a journal file
    (journal.JournalAdmin) or in Redis (redis_streams.DeadLetters)."""

    def dead_letters(self) -> Iterable[Entry]:
        """Every dead letter, oldest first, read as they are used."""

    def run(self, op: str, ids: list[str] | None) -> list[str]:
        """`op` ("replay" or "purge") on the dead letters `ids` (None: all); the ids done."""

    def close(self) -> None: ...


class Operations(Protocol):
    """What an operator does with jobs; every broker does all of it, the Redis broker for
    the whole fleet."""

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued, scheduled or retrying job: never attempted again. False for an
        unknown id; raises Conflict when it runs or is final."""

    def find(self, where: Filter, limit: int) -> Iterator[Found]:
        """Up to `limit` matching jobs, newest first, each with its position (for `after`),
        read as they are asked for: a job may be as large as api.max_body_bytes, so what a
        page holds is up to its reader (gq.intake.jobs_api stops at a byte budget)."""

    def replay(self, ids: Iterable[str] | None, states: Iterable[State] = (State.DEAD,)) -> Replayed:
        """Finished jobs in `states` back to the queue, attempts reset (ids None: all of
        them); the others of `ids` are skipped, as `unreplayable` says."""

    def count(self, where: Filter, most: int) -> int:
        """How many jobs match `where` (its position ignored), counted up to `most`: what a
        bulk action would touch, without reading the jobs where the broker can help it."""


@dataclass(frozen=True, slots=True)
class FleetLink:
    """What a broker shared by a fleet lends the fleet-wide destination limits
    (gq/broker/fleet_limits.py): its Redis client, its keys' prefix, this daemon's name."""

    client: Any
    prefix: str
    consumer: str


class SharedGauges(Protocol):
    """A shared broker's fleet-wide figures, as last read (gq_broker_stream_length, _pending)."""

    shared: dict[str, Any]


class BatchLedger(Protocol):
    def batch_done(self, ids: Iterable[str], forget_others: bool = False) -> set[str]:
        """Those of a batch's `ids` that succeeded before (see JournalFile.batch_done)."""


class Capabilities(Protocol):
    """What only some brokers offer: each method returns the part that offers it, or None."""

    def fleet(self) -> FleetLink | None: ...

    def shared_gauges(self) -> SharedGauges | None: ...

    def batch_ledger(self) -> BatchLedger | None: ...


class InProcess:
    """The capabilities a broker of one process lacks: a subclass offers those it has."""

    def fleet(self) -> FleetLink | None:
        return None

    def shared_gauges(self) -> SharedGauges | None:
        return None

    def batch_ledger(self) -> BatchLedger | None:
        return None


class Broker(Intake, Dispatch, Gauges, Operations, AuditLog, Capabilities, Protocol):
    def close(self) -> None: ...


class JobsAdmin(Protocol):
    """What `gq jobs` does, wherever the jobs are: on a journal file (journal.JournalAdmin)
    or through a daemon's API (gq.client.Client). Jobs come as `GET /v1/jobs/{id}` shows
    them (Entry.status), secret headers redacted; `jobs` as a page of `GET /v1/jobs` does,
    long headers cut."""

    def job(self, job_id: str) -> dict[str, Any] | None:
        """The job, or None for an unknown id."""

    def jobs(self, where: Filter, limit: int | None) -> Iterator[dict[str, Any]]:
        """The matching jobs, newest first, at most `limit` (None: all), read a page at a time."""

    def cancel(self, job_id: str) -> bool:
        """As Operations.cancel: False for an unknown id; raises Conflict when the job runs
        or is final."""

    def replay(self, ids: list[str]) -> Replayed:
        """Those of `ids` whose jobs are dead or succeeded (with their payload), run again,
        attempts reset; the others skipped."""

    def replay_matching(self, where: Filter) -> Iterator[Replayed]:
        """Every job that matches (`where.state`: dead or succeeded) run again, a page at a
        time; yields what each page did (a job found that cannot be replayed is skipped)."""

    def close(self) -> None: ...
