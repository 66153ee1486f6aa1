"""A job's life, written once.

A job's states, and for each thing that can happen to it (an Event) the states it may
happen in, the state it leads to, and what becomes of the job's ordering key, of its
attempts and of its payload. Brokers persist what this table says and keep no rule of
their own: the memory broker moves its entries by it; the journal's SQL and Redis's Lua
guard each write with `sources(event)`, so that a move the table refuses (a deferral of a
cancelled job, a start of a finished one) is refused there too, in the same transaction
or script.

    accepted    → queued, or scheduled (run_at ahead); joins its key (behind its head)
    taken       queued/scheduled/retrying, due → queued, in a dispatcher's hands
    started     queued/scheduled/retrying → running, one attempt more
    succeeded   running → succeeded; releases its key; payload dropped unless kept
    retried     running → retrying; keeps its key
    failed      running → dead; releases its key
    deferred    queued/scheduled/retrying (taken, not started) → queued, due later; keeps its key
    cancelled   queued/scheduled/retrying → cancelled; releases its key; payload dropped
    replayed    dead, or succeeded with its payload → queued, attempts reset; joins its key
                again in its place: the key's jobs run in the order accepted, replayed or not
    taken over  running on a daemon that died → retrying: that attempt's outcome is unknown
    expired     succeeded or cancelled past keep_succeeded, dead purged → forgotten
    unreadable  any unfinished → dead, with why; releases its key

The ledger follows from the table: a job accepted is counted once in `accepted` and, from
then on, in exactly one of the states or in `forgotten` (an event whose target is None), so
`accepted` is always the sum of the rest, whatever happens to the jobs. Every broker keeps
its ledger by `moved(was, now)` alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class State(str, Enum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"   # not due yet: its run_at is ahead
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"


UNFINISHED = (State.QUEUED, State.SCHEDULED, State.RUNNING, State.RETRYING)
WAITING = (State.QUEUED, State.SCHEDULED, State.RETRYING)  # unfinished, no attempt under way
FINISHED = (State.SUCCEEDED, State.DEAD, State.CANCELLED)


class Event(str, Enum):
    ACCEPTED = "accepted"
    TAKEN = "taken"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    RETRIED = "retried"
    FAILED = "failed"
    DEFERRED = "deferred"
    CANCELLED = "cancelled"
    REPLAYED = "replayed"
    TAKEN_OVER = "taken over"
    EXPIRED = "expired"
    UNREADABLE = "unreadable"


class Key(str, Enum):
    """What an event does to the job's ordering key (nothing, for a job without one)."""

    JOIN = "join"        # the job takes its place in the key: its head if it has none, else behind
    HOLD = "hold"        # the job stays the key's head: the key's later jobs keep waiting
    RELEASE = "release"  # the key's next job (in the order accepted) is let go


class Attempts(str, Enum):
    KEEP = "keep"
    ADD = "add"      # one attempt more: it is under way
    RESET = "reset"  # a replay starts over


@dataclass(frozen=True, slots=True)
class Rule:
    sources: tuple[State, ...]    # the states the event may happen in
    target: State | None          # the state it leads to; None: the job is forgotten
    key: Key
    attempts: Attempts = Attempts.KEEP
    drops_payload: bool = False   # the body goes (a succeeded job's: unless the config keeps it)


RULES: dict[Event, Rule] = {
    Event.ACCEPTED: Rule((), State.QUEUED, Key.JOIN),
    Event.TAKEN: Rule(WAITING, State.QUEUED, Key.HOLD),
    Event.STARTED: Rule(WAITING, State.RUNNING, Key.HOLD, Attempts.ADD),
    Event.SUCCEEDED: Rule((State.RUNNING,), State.SUCCEEDED, Key.RELEASE, drops_payload=True),
    Event.RETRIED: Rule((State.RUNNING,), State.RETRYING, Key.HOLD),
    Event.FAILED: Rule((State.RUNNING,), State.DEAD, Key.RELEASE),
    Event.DEFERRED: Rule(WAITING, State.QUEUED, Key.HOLD),
    Event.CANCELLED: Rule(WAITING, State.CANCELLED, Key.RELEASE, drops_payload=True),
    Event.REPLAYED: Rule((State.DEAD, State.SUCCEEDED), State.QUEUED, Key.JOIN, Attempts.RESET),
    Event.TAKEN_OVER: Rule((State.RUNNING,), State.RETRYING, Key.HOLD),
    Event.EXPIRED: Rule(FINISHED, None, Key.HOLD),
    Event.UNREADABLE: Rule(UNFINISHED, State.DEAD, Key.RELEASE),
}

# GET /v1/status's "ledger" and gq_jobs{state}, in this order: every job ever accepted, and
# where each is now (FORGOTTEN: finished and gone, after keep_succeeded, status_ttl or a purge).
ACCEPTED, FORGOTTEN = "accepted", "forgotten"
LEDGER = (ACCEPTED, *(s.value for s in State), FORGOTTEN)


def moved(ledger: dict[str, int], was: State | str | None, now: State | str | None, n: int = 1) -> None:
    """What `n` jobs moving from `was` to `now` do to `ledger`: None for `was`, they are new
    (accepted); None for `now`, they are forgotten (an event with no target state)."""
    source = ACCEPTED if was is None else was.value if isinstance(was, State) else was
    target = FORGOTTEN if now is None else now.value if isinstance(now, State) else now
    if source == ACCEPTED:
        ledger[ACCEPTED] = ledger.get(ACCEPTED, 0) + n
    else:
        ledger[source] = ledger.get(source, 0) - n
    ledger[target] = ledger.get(target, 0) + n


def unbalanced(ledger: dict[str, int]) -> str | None:
    """Why `ledger` does not add up (accepted is not the sum of the others, or a count is
    below zero), or None when it does."""
    counts = {name: int(ledger.get(name, 0)) for name in LEDGER}
    below = [name for name, n in counts.items() if n < 0]
    if below:
        return f"below zero: {', '.join(f'{name} {counts[name]}' for name in below)}"
    rest = sum(n for name, n in counts.items() if name != ACCEPTED)
    if counts[ACCEPTED] != rest:
        terms = " + ".join(f"{name} {counts[name]}" for name in LEDGER[1:])
        return f"accepted {counts[ACCEPTED]} != {terms} = {rest}"
    return None


def said(ledger: dict[str, int]) -> str:
    """The ledger as one line: `accepted N = queued a + … + forgotten f`."""
    return f"accepted {ledger.get(ACCEPTED, 0)} = " + " + ".join(f"{name} {ledger.get(name, 0)}" for name in LEDGER[1:])


CANCELLABLE = RULES[Event.CANCELLED].sources
REPLAYABLE = RULES[Event.REPLAYED].sources
NO_SUCH_JOB = "no such job"
PAYLOAD_NOT_KEPT = "payload not kept: journal.keep_succeeded_payload was false when it succeeded"


def allows(event: Event, state: State) -> bool:
    return state in RULES[event].sources


def sources(event: Event) -> tuple[str, ...]:
    """The names of the states `event` may happen in: the guard of a broker's write."""
    return tuple(s.value for s in RULES[event].sources)


def why_not(event: Event, state: State) -> str:
    """Why `event` cannot happen to a job in `state`."""
    if state in UNFINISHED and event in (Event.REPLAYED, Event.EXPIRED):
        return f"not finished: {state.value}"
    if state is State.RUNNING:
        return "running: its attempt is under way"
    allowed = " or ".join(s.value for s in RULES[event].sources)
    return f"{state.value} (only a {allowed} job can be {event.value})"


def unreplayable(state: State | None, states: Iterable[State] = REPLAYABLE, payload_kept: bool = True) -> str | None:
    """Why a job in `state` (None: unknown) cannot be replayed from `states` (a replay by
    filter takes the filter's state only); None when it can. Every broker, the API and the
    CLI say what this says."""
    if state is None:
        return NO_SUCH_JOB
    if state in UNFINISHED:
        return why_not(Event.REPLAYED, state)
    states = tuple(states)
    if state not in states:
        return f"{state.value} (only a {' or '.join(s.value for s in states)} job can be replayed)"
    if not payload_kept:  # sending it again would send another request: no body
        return PAYLOAD_NOT_KEPT
    return None
