"""A job's life, written once (gq/core/lifecycle.py): the table every broker persists."""

from __future__ import annotations

import pytest

from gq.core.lifecycle import (
    CANCELLABLE,
    FINISHED,
    REPLAYABLE,
    RULES,
    UNFINISHED,
    Event,
    Key,
    State,
    allows,
    sources,
    unreplayable,
    why_not,
)


@pytest.mark.parametrize("state", [State.CANCELLED, State.SUCCEEDED, State.DEAD, State.RUNNING])
def test_a_job_that_is_cancelled_finished_or_running_is_never_deferred_taken_or_started(state):
    for event in (Event.DEFERRED, Event.TAKEN, Event.STARTED, Event.CANCELLED):
        assert not allows(event, state)
        assert state.value in why_not(event, state) or "running" in why_not(event, state)


def test_only_a_running_job_has_an_outcome_and_only_a_finished_one_is_replayed_or_forgotten():
    for event in (Event.SUCCEEDED, Event.RETRIED, Event.FAILED, Event.TAKEN_OVER):
        assert RULES[event].sources == (State.RUNNING,)
    assert REPLAYABLE == (State.DEAD, State.SUCCEEDED)
    assert set(RULES[Event.EXPIRED].sources) == set(FINISHED)
    assert CANCELLABLE == (State.QUEUED, State.SCHEDULED, State.RETRYING)
    assert sources(Event.CANCELLED) == ("queued", "scheduled", "retrying")


def test_every_way_out_of_a_job_releases_its_key_and_every_wait_keeps_it():
    for event, r in RULES.items():
        leaves = r.target in FINISHED
        assert (r.key is Key.RELEASE) == leaves, event
    assert RULES[Event.REPLAYED].key is Key.JOIN and RULES[Event.ACCEPTED].key is Key.JOIN


def test_every_state_is_reached_and_left():
    reached = {r.target for r in RULES.values()}
    left = {s for r in RULES.values() for s in r.sources}
    assert set(State) <= reached | {State.SCHEDULED}  # scheduled: the arrival of a job not due
    assert set(State) <= left


@pytest.mark.parametrize(("state", "states", "kept", "reason"), [
    (None, REPLAYABLE, True, "no such job"),
    (State.RUNNING, REPLAYABLE, True, "not finished: running"),
    (State.SCHEDULED, REPLAYABLE, True, "not finished: scheduled"),
    (State.CANCELLED, REPLAYABLE, True, "cancelled (only a dead or succeeded job can be replayed)"),
    (State.SUCCEEDED, (State.DEAD,), True, "succeeded (only a dead job can be replayed)"),
    (State.SUCCEEDED, REPLAYABLE, False, "payload not kept: journal.keep_succeeded_payload was false when it "
                                         "succeeded"),
    (State.DEAD, REPLAYABLE, True, None),
])
def test_why_a_job_cannot_be_replayed(state, states, kept, reason):
    assert unreplayable(state, states, kept) == reason
    if state in UNFINISHED:
        assert not allows(Event.REPLAYED, state)
