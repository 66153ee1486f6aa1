"""One contract for every broker: memory only, the embedded journal and Redis Streams,
driven through the same scenarios by tests/support/broker_harness.py, as the dispatcher drives
them. CONTRACT.md ("Every broker, the same rules") and docs/jobs.md ("Operating on jobs")
say what each scenario expects; where the brokers differ today, docs/jobs.md decides.

The tests live here, in no test module of their own: tests/unit/test_broker_contract.py runs
them on the brokers of its own process (memory only, the journal), and
tests/process/test_broker_contract_redis.py on a real redis-server, each taking them in with
contract(); a test that applies to some brokers only says which with @brokers.

A test that needs a broker to do what the interface cannot express yet (a clock of its
own, a size it does not show) says so; those that apply to some brokers only say why.
"""

from __future__ import annotations

import dataclasses
import signal
import time
import tracemalloc
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import pytest

from gq.broker import Conflict, Entry, Filter, State
from gq.core.job import Job
from gq.core.lifecycle import LEDGER
from gq.errors import BacklogFull, QueueFull
from support.broker_harness import (
    DEADLINE,
    DUE_MARGIN,
    KINDS,
    SUCCESS,
    Harness,
    Options,
    dead,
    job,
    pause,
    poll,
    retry,
    storage,
    wait_until,
)

FAR = 3600.0   # seconds: a due time no test waits for
SOON = 0.3     # seconds: a due time a test waits for


def brokers(*kinds: str) -> Callable[[Callable], Callable]:
    """The brokers a test applies to, when not all of KINDS."""
    def mark(test: Callable) -> Callable:
        test.brokers = kinds  # type: ignore[attr-defined]
        return test
    return mark


def _brokers_of(test: Any) -> tuple[str, ...]:
    return getattr(test, "brokers", KINDS)


def contract(*kinds: str) -> dict[str, Any]:
    """What a test module takes in as its own (`globals().update(contract("redis"))`) to run
    the contract on `kinds`: the fixtures, the tests that apply to one of `kinds` at least,
    and a pytest_generate_tests that runs each of them on those of `kinds` it applies to
    (the broker_kind its fixtures read)."""
    def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
        if "broker_kind" not in metafunc.fixturenames:  # it would run in each module that takes it in
            raise pytest.UsageError(f"{metafunc.function.__name__}: a test of the contract runs on a broker "
                                    "(fixture h or make)")
        metafunc.parametrize("broker_kind", [k for k in _brokers_of(metafunc.function) if k in kinds])

    taken = {name: value for name, value in globals().items()
             if not name.startswith(("_", "test_")) and name not in ("contract", "brokers")}
    taken.update((name, value) for name, value in globals().items()
                 if name.startswith("test_") and set(_brokers_of(value)) & set(kinds))
    return {**taken, "pytest_generate_tests": pytest_generate_tests}


@pytest.fixture
def make(broker_kind, request, tmp_path):
    """make(kind=None, **options) → a Harness on a fresh broker (its own file, its own
    Redis key prefix); every one made is closed at the end."""
    made: list[Harness] = []

    def make(kind: str | None = None, **options) -> Harness:
        kind = kind or broker_kind
        url = request.getfixturevalue("module_redis").url if kind == "redis" else ""
        harness = Harness(storage(kind, tmp_path, url, Options(**options)))
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


@pytest.fixture
def h(make) -> Harness:
    return make()


@pytest.fixture
def redis_server_stall(request, monkeypatch):
    """A context in which the tests' redis-server answers nothing (SIGSTOP), for longer than
    a Redis broker made after this fixture waits for an answer or for an attempt's start.
    INTERFACE: those waits are constants of gq's modules (REDIS_TIMEOUT 3 s, START_WAIT 5 s),
    shortened here so that the stall lasts a second instead of six."""
    server = request.getfixturevalue("module_redis")
    import gq.broker.redis_dispatch
    import gq.broker.redis_link
    monkeypatch.setattr(gq.broker.redis_link, "REDIS_TIMEOUT", 0.3, raising=False)
    monkeypatch.setattr(gq.broker.redis_dispatch, "START_WAIT", 1.0, raising=False)

    @contextmanager
    def stall():
        server.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            server.proc.send_signal(signal.SIGCONT)

    return stall


# -- intake and duplicates

def test_an_accepted_job_is_queued_and_shows_what_the_contract_lists(h):
    before = time.time()
    added = h.add(job("a", ordering_key="k", headers={"X-Tenant": "t1"}))
    after = time.time()
    assert (added.entries, added.duplicates, added.stored) == ([], [], 1)
    shown = h.get("a").status()
    assert (shown["id"], shown["state"], shown["attempts"], shown["ordering_key"]) == ("a", "queued", 0, "k")
    assert shown["request"]["headers"] == {"X-Tenant": "t1"}
    assert shown["accepted_at"] is not None and before - 1 <= shown["accepted_at"] <= after + 1, (
        f"accepted_at: {shown['accepted_at']!r}, accepted between {before} and {after}")


def test_a_known_id_is_a_duplicate_whatever_its_state(h):
    h.add(job("ok"), job("lost"), job("gone"), job("wait"))
    taken = h.take_ids(["ok", "lost"])
    h.run(taken["ok"])
    h.run(taken["lost"], dead())
    assert h.broker.cancel("gone") is True
    again = h.add(job("ok"), job("lost"), job("gone"), job("wait"), job("new"), job("new"))
    assert sorted(again.duplicates) == ["gone", "lost", "new", "ok", "wait"]
    assert again.stored + len(again.entries) == 1


# -- the backlog bound

def _refusal_reason(error: Exception) -> str | None:
    """The reason the API gives a refusal of this type (gq/intake/api.py's table)."""
    from gq.intake import api
    return next((reason for kind, (_, reason, _) in api.SUBMIT_REFUSALS.items() if isinstance(error, kind)), None)


def test_the_backlog_bound_refuses_with_backlog_full_and_all_or_nothing(make):
    h = make(max_backlog=10)
    h.add(*(job(f"j{i}") for i in range(8)))
    with pytest.raises((BacklogFull, QueueFull)) as refused:
        h.add(*(job(f"k{i}") for i in range(3)))  # room for 2 only: none is accepted
    assert isinstance(refused.value, BacklogFull), (
        f"refused with {type(refused.value).__name__} (reason {_refusal_reason(refused.value)}), "
        "not BacklogFull (reason backlog_full)")
    assert _refusal_reason(refused.value) == "backlog_full"
    assert [h.get(f"k{i}") for i in range(3)] == [None, None, None]
    h.add(job("k0"), job("k1"))
    h.run(h.take_one("j0"))  # a finished job leaves room
    h.add(job("k2"))


def test_a_cancelled_job_frees_its_place_in_the_backlog(make):
    """Cancelled (waiting, or held and dropped at its start), a job is finished: the backlog
    has room for another at once, not once a daemon has read and dropped it."""
    h = make(max_backlog=3)
    h.add(job("held"), job("other"))
    held = h.take_ids(["held", "other"])["held"]
    assert h.broker.cancel("held") is True
    assert not h.start(held)
    h.add(job("waiting"))
    assert h.broker.cancel("waiting") is True
    h.settled()
    h.add(job("c"), job("d"))  # "other" and these two: 3


@pytest.mark.parametrize("how", ["behind one ordering key", "scheduled"])
def test_the_backlog_bound_counts_every_unfinished_job(make, how):
    h = make(max_backlog=10)
    fields = {"ordering_key": "k"} if how == "behind one ordering key" else {"delay": FAR}
    accepted = []
    with pytest.raises((BacklogFull, QueueFull)):
        for i in range(30):
            h.add(job(f"j{i}", **fields))
            accepted.append(f"j{i}")
    assert len(accepted) == 10, f"{len(accepted)} jobs {how} accepted with max_backlog 10"


# -- take, settle, retry, defer, dead

def test_take_start_and_settle(h):
    for i in range(3):
        h.add(job(f"j{i}"))
        pause(0.002)  # accepted one after the other
    taken = h.take_ids(["j0", "j1", "j2"])
    assert [e.job.id for e in taken.values()] == ["j0", "j1", "j2"]
    assert h.take(timeout=0) == [], "a held job was taken again"
    entry = taken["j0"]
    assert h.start(entry)
    assert entry.attempts == 1
    assert (h.state("j0"), h.get("j0").attempts) == (State.RUNNING, 1)
    h.settle(entry)
    shown = h.get("j0").status()
    assert (shown["state"], shown["attempts"], shown["last_status"]) == ("succeeded", 1, 200)
    assert len(shown["history"]) == 1


def test_a_retry_waits_until_due_and_keeps_its_attempts(h):
    h.add(job("r"))
    entry = h.take_one("r")
    h.start(entry)
    h.settle(entry, retry(SOON))
    shown = h.get("r").status()
    assert (shown["state"], shown["attempts"]) == ("retrying", 1)
    assert shown["next_attempt_at"] == pytest.approx(entry.due, abs=0.01)
    again = h.take_one("r")
    assert time.time() >= entry.due, "taken before its retry was due"
    assert again.attempts == 1
    h.start(again)
    assert (h.state("r"), h.get("r").attempts) == (State.RUNNING, 2)


def test_a_deferred_job_waits_until_due_unattempted(h):
    h.add(job("d"))
    due = time.time() + SOON
    assert h.defer(h.take_one("d"), due)
    assert (h.state("d"), h.get("d").attempts) == (State.QUEUED, 0)
    again = h.take_one("d")
    assert time.time() >= due, "taken before it was due"
    assert again.attempts == 0
    assert h.run(again)


def test_a_dead_job_keeps_its_reason_and_does_not_run_again(h):
    h.add(job("x"))
    h.run(h.take_one("x"), dead("permanent status 404"))
    shown = h.get("x").status()
    assert (shown["state"], shown["attempts"], shown["dead_reason"]) == ("dead", 1, "permanent status 404")
    assert "x" not in h.run_past(time.time())


def test_what_a_settle_or_a_defer_did_is_seen_at_once(h):
    """Once settle() or defer() has returned, look-ups and operations see what it did: a
    GET, DELETE or replay that comes right after is answered from it, not from before."""
    h.add(job("ok"), job("x"), job("r"), job("d"))
    taken = h.take_ids(["ok", "x", "r", "d"])
    h.start(taken["r"])
    h.settle(taken["r"], retry(FAR))
    h.defer(taken["d"], time.time() + FAR)
    h.run(taken["ok"])
    h.run(taken["x"], dead())  # the last: nothing written since
    seen = {i: h.broker.get(i).state.value for i in ("ok", "x", "r", "d")}
    assert seen == {"ok": "succeeded", "x": "dead", "r": "retrying", "d": "queued"}
    assert h.broker.replay(["x"]).ids == ["x"]
    with pytest.raises(Conflict) as refused:
        h.broker.cancel("ok")
    assert refused.value.state is State.SUCCEEDED
    assert h.broker.cancel("r") is True
    assert h.broker.cancel("d") is True
    settled = {i: h.state(i).value for i in ("ok", "x", "r", "d")}
    assert settled == {"ok": "succeeded", "x": "queued", "r": "cancelled", "d": "cancelled"}


# -- cancel

def _in_state(h: Harness, state: str) -> str:
    """A job put in `state` (as a user would see it, or how it waits); returns its id."""
    if state == "queued":
        h.add(job("c"))
    elif state == "scheduled":
        h.add(job("c", delay=FAR))
    elif state == "blocked behind its key":
        h.add(job("head", ordering_key="k"), job("c", ordering_key="k"))
    elif state in ("retrying", "deferred", "held", "running", "succeeded", "dead"):
        h.add(job("c"))
        entry = h.take_one("c")
        if state == "retrying":
            h.start(entry)
            h.settle(entry, retry(SOON))
        elif state == "deferred":
            h.defer(entry, time.time() + SOON)
        elif state == "running":
            h.start(entry)
        elif state in ("succeeded", "dead"):
            h.run(entry, dead() if state == "dead" else SUCCESS)
    elif state == "cancelled":
        h.add(job("c"))
        h.broker.cancel("c")
    return "c"


@pytest.mark.parametrize("state", ["queued", "scheduled", "retrying", "deferred", "blocked behind its key",
                                   "held"])
def test_a_cancelled_job_is_never_attempted(h, state):
    """A queued, scheduled or retrying job (waiting in the broker, deferred for its host,
    behind its key, or held by the dispatcher, parked) is cancelled and never attempted."""
    job_id = _in_state(h, state)
    h.settled()  # written (seen at once, before that: test_what_a_settle_or_a_defer_did_is_seen_at_once)
    assert h.broker.cancel(job_id) is True
    assert h.state(job_id) is State.CANCELLED
    attempted = h.run_past(time.time() + (SOON if state in ("retrying", "deferred") else 0))
    assert job_id not in attempted
    assert h.state(job_id) is State.CANCELLED


@pytest.mark.parametrize("state", ["running", "succeeded", "dead", "cancelled"])
def test_cancel_is_refused_for_a_running_or_final_job(h, state):
    job_id = _in_state(h, state)
    h.settled()
    with pytest.raises(Conflict) as refused:
        h.broker.cancel(job_id)
    assert refused.value.state is State(state)
    assert h.broker.cancel("unknown") is False


def test_a_held_job_cancelled_then_deferred_never_runs(h):
    """Taken by the dispatcher (held, not started) and cancelled; then its host is at a cap
    and the dispatcher hands it back (defer), as the drain also does. It must stay cancelled."""
    h.add(job("c"))
    entry = h.take_one("c")
    assert h.broker.cancel("c") is True
    due = time.time() + 0.1
    h.defer(entry, due)  # the dispatcher does, unless it sees the entry cancelled
    attempted = h.run_past(due)
    assert "c" not in attempted, "a cancelled job ran"
    assert h.state("c") is State.CANCELLED


def test_a_cancelled_held_head_handed_back_does_not_run_beside_the_next_of_its_key(h):
    h.add(job("k1", ordering_key="k"), job("k2", ordering_key="k"))
    k1 = h.take_one("k1")
    assert h.broker.cancel("k1") is True  # the key goes on: k2 may run
    k2 = h.take_one("k2")
    assert h.start(k2)
    due = time.time() + 0.1
    h.defer(k1, due)
    wait_until(due + DUE_MARGIN[h.kind])
    h.add(job("marker"))
    started = []

    def marker_taken() -> bool:
        for entry in h.take():
            if h.start(entry):
                started.append(entry.job.id)
        return "marker" in started

    poll(marker_taken, what="the marker job to start")
    assert "k1" not in started, "k1, cancelled, ran while k2 of its key was in flight"
    h.settle(k2)


@brokers("redis")
def test_a_cancel_answered_before_a_start_redis_cannot_confirm(make, redis_server_stall):
    """A held job is cancelled (answered: it will never be attempted); its start is then
    written to a Redis that does not answer for longer than the start waits. The attempt
    must not go ahead: what the cancel promised holds whatever the start could not learn.
    (Memory and the journal decide a start in the process: no stall can split them.)"""
    h = make()
    h.add(job("c"))
    entry = h.take_one("c")
    assert h.broker.cancel("c") is True
    with redis_server_stall():
        attempted = h.start(entry)
    assert not attempted, "the attempt of a job whose cancel was answered went ahead"


# -- replay

def test_replay_runs_a_dead_job_again_with_its_attempts_reset(h):
    h.add(job("x"), job("q", delay=FAR))
    h.run(h.take_one("x"), dead())
    assert h.state("x") is State.DEAD
    replayed = h.broker.replay(["x", "q", "unknown"])
    assert replayed.ids == ["x"]
    assert replayed.skipped == [("q", "not finished: scheduled"), ("unknown", "no such job")]
    assert (h.state("x"), h.get("x").attempts) == (State.QUEUED, 0)
    again = h.take_one("x")
    assert again.attempts == 0
    assert h.run(again)
    assert h.state("x") is State.SUCCEEDED


def test_a_replayed_job_takes_its_place_in_its_key(h):
    """The contract: a key's jobs run in the order accepted; docs/jobs.md, Order by key: a replayed
    job runs after the one of its key that runs, before those accepted after it."""
    h.add(*(job(f"k{i}", ordering_key="k") for i in (1, 2, 3)))
    h.run(h.take_one("k1"), dead())
    k2 = h.take_one("k2")   # the key's next job is held: k3 waits behind it
    assert h.broker.replay(["k1"]).ids == ["k1"]
    assert _run_in_turn(h, k2, 3) == ["k2", "k1", "k3"]


def _run_in_turn(h: Harness, first: Entry, n: int) -> list[str]:
    """The ids of `n` jobs run one after the other, `first` first, each taken once the one
    before has succeeded."""
    order, entry = [], first
    while True:
        order.append(entry.job.id)
        h.run(entry)
        if len(order) == n:
            return order
        entry = poll(lambda: next(iter(h.take(1)), None), what=f"the job after {order}")


@brokers("redis")
def test_a_dead_letter_replayed_by_gq_dlq_takes_its_place_in_its_key(h):
    """`gq dlq replay` on Redis (DeadLetters) places a job as replay() does."""
    from gq.broker.redis_streams import DeadLetters
    h.add(*(job(f"k{i}", ordering_key="k") for i in (1, 2, 3)))
    h.run(h.take_one("k1"), dead())
    k2 = h.take_one("k2")
    broker: Any = h.broker
    assert DeadLetters(broker.redis, broker.config).run("replay", ["k1"]) == ["k1"]
    assert _run_in_turn(h, k2, 3) == ["k2", "k1", "k3"]


# -- schedules far in the past and the future

@pytest.mark.parametrize("run_at", [1, "1970-01-01T00:00:01Z"])
def test_a_run_at_far_in_the_past_runs_at_once(h, run_at):
    h.add(job("p", run_at=run_at))
    assert h.state("p") is State.QUEUED
    assert h.run(h.take_one("p"))


@pytest.mark.parametrize("run_at", [99_999_999_999, "5000-12-31T23:59:59Z"])
def test_a_run_at_far_in_the_future_is_scheduled_until_then(h, run_at):
    scheduled = job("f", run_at=run_at)
    h.add(scheduled)
    shown = h.get("f").status()
    assert shown["state"] == "scheduled"
    assert shown["next_attempt_at"] == scheduled.run_at
    assert "f" not in h.run_past(time.time())
    assert h.broker.cancel("f") is True


def _from_an_earlier_gq(job_id: str, **fields) -> Job:
    """A job that an earlier gq accepted and this one's intake refuses (its run_at before
    1970): what a journal or a stream may hold from before an upgrade."""
    return dataclasses.replace(job(job_id, **fields), run_at=-1.0)


def test_a_job_read_back_as_unreadable_does_not_stop_the_jobs_beside_it(h):
    """It is a dead letter that says why (memory holds the job itself: it runs), and every
    job beside it runs."""
    h.add(job("g0"), _from_an_earlier_gq("poison"), job("g1"), job("g2"))
    h.take_ids(["g0", "g1", "g2"])
    shown = h.get("poison")
    if "poison" not in h.held:
        assert shown.state is State.DEAD and "unreadable" in shown.reason and shown.attempts == 0


def test_a_job_read_back_as_unreadable_does_not_stop_its_key(h):
    h.add(_from_an_earlier_gq("poison", ordering_key="k"), job("next", ordering_key="k"))
    entry = poll(lambda: next(iter(h.take(1)), None), what="the key's first job, or the next one")
    if entry.job.id == "poison":
        h.run(entry)
    h.take_one("next")


# -- ordering keys

def test_jobs_of_a_key_run_one_at_a_time_in_the_order_accepted(h):
    h.add(*(job(f"k{i}", ordering_key="k") for i in (1, 2, 3, 4)), job("free"))
    h.take_ids(["k1", "free"])
    assert set(h.held) == {"k1", "free"}, "a later job of the key was taken beside its first"
    h.run(h.held["k1"])                        # succeeded: k2 goes
    h.run(h.take_one("k2"), dead())            # dead: k3 goes
    k3 = h.take_one("k3")
    h.start(k3)
    h.settle(k3, retry(SOON))                  # retrying: k4 waits behind it
    again = h.take_one("k3")
    assert time.time() >= k3.due
    assert "k4" not in h.held
    h.run(again)
    h.run(h.take_one("k4"))


def test_a_cancelled_job_of_a_key_is_passed_over(h):
    h.add(*(job(f"k{i}", ordering_key="k") for i in (1, 2, 3, 4)))
    assert h.broker.cancel("k1") is True       # the head, waiting: k2 goes
    assert h.broker.cancel("k3") is True       # blocked behind k2
    h.run(h.take_one("k2"))
    h.take_one("k4")
    assert "k3" not in h.held


def test_a_scheduled_job_of_a_key_holds_back_the_later_ones(h):
    h.add(job("k1", ordering_key="k", delay=FAR), job("k2", ordering_key="k"))
    assert "k2" not in h.run_past(time.time())
    assert h.state("k2") is State.QUEUED
    assert h.broker.cancel("k1") is True
    h.take_one("k2")


# -- take-over

@brokers("journal", "redis")  # memory only: a crash loses every job, by design
def test_a_vanished_brokers_jobs_are_taken_over_with_their_attempts(make):
    first = make(heartbeat=0.2)
    first.add(job("started", ordering_key="k"), job("held"), job("behind", ordering_key="k"))
    taken = first.take_ids(["started", "held"])
    assert first.start(taken["started"])
    first.vanish()
    second = first.successor()
    try:
        back = second.take_ids(["started", "held"])
        assert (back["started"].attempts, back["started"].interrupted) == (1, True)
        assert (back["held"].attempts, back["held"].interrupted) == (0, False)
        assert "behind" not in second.held, "a key's job was taken while its head was not settled"
        second.run(back["started"])
        second.take_one("behind")
    finally:
        second.close()


@brokers("journal", "redis")  # memory only: a crash loses every job, by design
def test_the_attempt_gq_died_during_shows_its_outcome_unknown(make):
    """An attempt in flight when its daemon died may have reached the target: its history says
    "unknown", whatever became of the job, beside the attempts whose verdict is known."""
    first = make(heartbeat=0.2)
    first.add(job("twice"), job("once"))
    taken = first.take_ids(["twice", "once"])
    first.run(taken["once"], retry(0.0))
    first.settled()
    assert first.start(taken["twice"])
    first.vanish()
    second = first.successor()
    try:
        back = second.take_ids(["twice", "once"])
        second.run(back["twice"])
        second.run(back["once"], dead())
        outcomes = {i: [a["outcome"] for a in second.get(i).status()["history"]] for i in ("twice", "once")}
        assert outcomes == {"twice": ["unknown"], "once": ["retry", "fail"]}
        assert second.get("twice").state is State.SUCCEEDED
    finally:
        second.close()


def test_history_shows_each_attempts_outcome(h):
    h.add(job("r", max_attempts=3))
    h.run(h.take_one("r"), retry(0.0))
    h.run(h.take_one("r"), retry(0.0))
    h.run(h.take_one("r"))
    assert [a["outcome"] for a in h.get("r").status()["history"]] == ["retry", "retry", "success"]


# -- the payload a job shows

PAYLOADS = {"j": {"json": {"order": 7, "items": ["a", "b"]}}, "b": {"body": "plain text"}, "none": {}}


@pytest.mark.parametrize("keep", [True, False], ids=["payload-kept", "payload-dropped"])
def test_a_job_shows_its_payload_while_gq_keeps_it(make, keep):
    """Unfinished and dead jobs show their payload, in a look-up and in a list; a succeeded
    one too with journal.keep_succeeded_payload, else "payload": "not kept" (a job that had
    none shows neither)."""
    h = make(keep_payload=keep)
    h.add(*(job(f"{state}-{kind}", **fields) for state in ("queued", "dead", "succeeded")
            for kind, fields in PAYLOADS.items()))
    for kind in PAYLOADS:
        h.run(h.take_one(f"dead-{kind}"), dead())
        h.run(h.take_one(f"succeeded-{kind}"))
    h.settled()
    listed = {e.job.id: e.status(listed=True)["request"] for e, _ in h.broker.find(Filter(), 100)}
    for state in ("queued", "dead", "succeeded"):
        for kind, fields in PAYLOADS.items():
            job_id = f"{state}-{kind}"
            shown = h.get(job_id).status()["request"]
            expected = {"payload": "not kept"} if state == "succeeded" and not keep and fields else fields
            assert {k: shown[k] for k in ("json", "body", "payload") if k in shown} == expected, job_id
            assert {k: listed[job_id][k] for k in ("json", "body", "payload") if k in listed[job_id]} == expected
            assert "truncated" not in listed[job_id]


def test_a_list_cuts_a_long_payload(h):
    h.add(job("long-body", body="x" * 5000), job("long-json", json={"text": "y" * 5000}))
    listed = {e.job.id: e.status(listed=True)["request"] for e, _ in h.broker.find(Filter(), 10)}
    assert listed["long-body"]["body"] == "x" * 1024 + "…" and listed["long-body"]["truncated"] is True
    assert listed["long-json"]["json_text"] == ('{"text":"' + "y" * 5000)[:1024] + "…"
    assert "json" not in listed["long-json"] and listed["long-json"]["truncated"] is True
    assert h.get("long-body").status()["request"]["body"] == "x" * 5000
    assert h.get("long-json").status()["request"]["json"] == {"text": "y" * 5000}


def test_a_payload_shown_keeps_secrets_redacted(h):
    h.add(job("s", url="http://user:pw@example.com/hook", headers={"Authorization": "Bearer t"}, json=[1]))
    shown = h.get("s").status()["request"]
    assert "pw" not in shown["url"] and shown["headers"]["Authorization"] != "Bearer t"
    assert shown["json"] == [1]


# -- expiry

def test_a_finished_job_is_forgotten_after_keep_succeeded(make):
    """journal.keep_succeeded (broker.status_ttl on Redis): a succeeded job stays visible
    and a duplicate that long, then its id is free."""
    h = make(keep_succeeded=1.0, status_ttl=1)
    h.add(job("s"))
    h.run(h.take_one("s"))
    assert h.state("s") is State.SUCCEEDED
    assert h.add(job("s")).duplicates == ["s"]
    poll(lambda: h.get("s") is None, 3.0, "the succeeded job to be forgotten")
    assert h.add(job("s")).duplicates == []


@brokers("memory", "journal")  # Redis: broker.status_ttl is 60 s at least
def test_keep_succeeded_zero_keeps_no_finished_job(make):
    """journal.keep_succeeded = 0 (and a memory broker that keeps no finished job, as a batch
    builds it): succeeded and cancelled jobs are forgotten, their ids free again."""
    h = make(keep_succeeded=0.0, keep_finished=0)
    h.add(job("s"), job("c", delay=FAR))
    h.run(h.take_one("s"))
    assert h.broker.cancel("c") is True
    poll(lambda: h.get("s") is None and h.get("c") is None, DEADLINE, "both finished jobs forgotten "
         f"(succeeded: {h.state('s')}, cancelled: {h.state('c')})")
    assert h.add(job("s"), job("c")).duplicates == []


def test_an_id_is_known_until_its_job_has_run(make, broker_kind):
    """An id stays a duplicate at least until its job is final (on Redis: a status_ttl
    shorter than the job's delay must not forget it first)."""
    h = make(status_ttl=1)
    accepted = time.time()
    h.add(job("later", delay=3))
    if broker_kind == "redis":
        wait_until(accepted + 1.5)
    assert h.state("later") is State.SCHEDULED
    assert h.add(job("later")).duplicates == ["later"]


# -- list, filter and cursors

def _six_jobs_one_dead(h: Harness) -> None:
    """a0…a4 to a.example, then b0 to b.example, accepted in that order; a1 dead, the rest waiting."""
    for i in range(5):
        h.add(_at("a", i))
        pause(0.002)
    h.add(_at("b", 0))
    h.run(h.take_one("a1"), dead())
    h.settled()


def _pages(h: Harness, where: Filter, size: int) -> list[list[str]]:
    """The ids of every page of `where`, `size` a page, each after the last one's position."""
    pages = []
    while True:
        page = list(h.broker.find(where, size))
        pages.append([e.job.id for e, _ in page])
        if len(page) < size:
            return pages
        where = dataclasses.replace(where, after=page[-1][1])


def test_find_lists_newest_first_by_filter_a_page_at_a_time(h):
    _six_jobs_one_dead(h)
    everything = list(h.broker.find(Filter(), 100))
    assert [e.job.id for e, _ in everything] == ["b0", "a4", "a3", "a2", "a1", "a0"]
    assert _pages(h, Filter(), 2) == [["b0", "a4"], ["a3", "a2"], ["a1", "a0"], []]
    assert [e.job.id for e, _ in h.broker.find(Filter(state=State.DEAD), 10)] == ["a1"]
    assert [e.job.id for e, _ in h.broker.find(Filter(host="b.example"), 10)] == ["b0"]
    a2 = h.get("a2").accepted_at
    a4 = h.get("a4").accepted_at
    assert [e.job.id for e, _ in h.broker.find(Filter(since=a2, until=a4), 10)] == ["a3", "a2"]


def test_count_says_how_many_jobs_a_filter_matches_up_to_a_bound(h):
    _six_jobs_one_dead(h)
    position = next(at for e, at in h.broker.find(Filter(), 10) if e.job.id == "a3")
    assert h.broker.count(Filter(), 100) == 6
    assert h.broker.count(Filter(after=position), 100) == 6  # the whole filter, not a page of it
    assert h.broker.count(Filter(), 4) == 4
    assert h.broker.count(Filter(state=State.DEAD), 100) == 1
    assert h.broker.count(Filter(host="b.example"), 100) == 1
    assert h.broker.count(Filter(state=State.SUCCEEDED), 100) == 0


def test_find_filters_by_ordering_key_and_id_prefix_a_page_at_a_time(h):
    for i in range(4):
        h.add(job(f"order-{i}", ordering_key="k1"), job(f"other-{i}", ordering_key="k2"), job(f"ord-{i}"))
        pause(0.002)
    h.add(job("k1-x", ordering_key="k1", url="http://b.example/hook"))
    h.run(h.take_one("order-0"), dead())  # the key's head: the others of k1 wait behind it until then
    h.settled()
    assert _pages(h, Filter(key="k1"), 2) == [["k1-x", "order-3"], ["order-2", "order-1"], ["order-0"]]
    assert _pages(h, Filter(prefix="order-"), 3) == [["order-3", "order-2", "order-1"], ["order-0"]]
    assert _pages(h, Filter(prefix="ord"), 5) == [
        ["ord-3", "order-3", "ord-2", "order-2", "ord-1"], ["order-1", "ord-0", "order-0"]]
    assert _ids(h, Filter(key="k1", state=State.DEAD)) == ["order-0"]
    assert _ids(h, Filter(key="k1", host="b.example")) == ["k1-x"]
    assert _ids(h, Filter(prefix="order-", state=State.QUEUED)) == ["order-3", "order-2", "order-1"]
    assert _ids(h, Filter(prefix="o", key="k2", host="example.com")) == [f"other-{i}" for i in (3, 2, 1, 0)]
    assert _ids(h, Filter(key="none")) == _ids(h, Filter(prefix="zz")) == _ids(h, Filter(prefix="order-0-")) == []
    since = h.get("order-2").accepted_at
    assert _ids(h, Filter(prefix="order", since=since)) == ["order-3", "order-2"]


def _ids(h: Harness, where: Filter) -> list[str]:
    return [e.job.id for e, _ in h.broker.find(where, 100)]


def _at(host: str, i: int) -> Job:
    return Job(f"{host}{i}", "POST", f"http://{host}.example/hook", {})


# -- counts

def test_counts_follow_every_state(h):
    h.add(job("run"), job("held"), job("retry"), job("defer"), job("dead"), job("k1", ordering_key="k"),
          job("k2", ordering_key="k"), job("sched", delay=FAR))
    taken = h.take_ids(["run", "held", "retry", "defer", "dead", "k1"])
    h.start(taken["run"])
    h.start(taken["retry"])
    h.settle(taken["retry"], retry(FAR))
    h.defer(taken["defer"], time.time() + FAR)
    h.run(taken["dead"], dead())
    h.add(job("wait"))
    expected = {"queued": 5, "scheduled": 1, "running": 1, "retrying": 1, "dead": 1}  # queued: held, k1,
    assert h.counts() == expected                                                  # defer, k2, wait
    states = {i: h.state(i).value for i in ("run", "held", "retry", "defer", "dead", "k1", "k2", "sched", "wait")}
    assert states == {"run": "running", "held": "queued", "retry": "retrying", "defer": "queued", "dead": "dead",
                      "k1": "queued", "k2": "queued", "sched": "scheduled", "wait": "queued"}


# -- the ledger (gq/core/lifecycle.py): every job accepted, by state or forgotten

def _ledger(**counts: int) -> dict[str, int]:
    ledger = dict.fromkeys(LEDGER, 0) | counts
    ledger["accepted"] = sum(n for name, n in ledger.items() if name != "accepted")
    return ledger


def test_the_ledger_counts_every_job_accepted_where_it_is_now(h):
    h.add(job("run"), job("held"), job("retry"), job("done"), job("dead"), job("cancel", delay=FAR),
          job("k1", ordering_key="k"), job("k2", ordering_key="k"), job("sched", delay=FAR))
    assert h.add(job("run"), job("done")).duplicates == ["run", "done"]  # a duplicate is not accepted again
    taken = h.take_ids(["run", "held", "retry", "done", "dead", "k1"])
    h.start(taken["run"])
    h.run(taken["retry"], retry(FAR))
    h.run(taken["done"])
    h.run(taken["dead"], dead())
    assert h.broker.cancel("cancel") is True
    assert h.ledger() == _ledger(queued=3, scheduled=1, running=1, retrying=1, succeeded=1, dead=1, cancelled=1)


def test_the_ledger_adds_up_as_jobs_are_replayed_purged_and_forgotten(make):
    h = make(keep_succeeded=1.0, status_ttl=1)
    h.add(job("again"), job("gone"), job("done"), job("k1", ordering_key="k"), job("k2", ordering_key="k"))
    for i in ("again", "gone", "k1"):
        h.run(h.take_one(i), dead())
    h.run(h.take_one("done"))
    assert h.ledger() == _ledger(queued=1, succeeded=1, dead=3)
    assert h.broker.replay(["again", "k1"]).ids == ["again", "k1"]
    assert h.purge("gone") == ["gone"]
    assert h.ledger() == _ledger(queued=3, succeeded=1, forgotten=1)  # k1 runs again before k2
    h.run(h.take_one("again"))
    poll(lambda: h.ledger()["forgotten"] == 3, 4.0, "the succeeded jobs forgotten after keep_succeeded")
    assert h.ledger() == _ledger(queued=2, forgotten=3)
    assert h.add(job("done")).duplicates == []  # forgotten: its id is new, and accepted again
    assert h.ledger() == _ledger(queued=3, forgotten=3)


@brokers("journal", "redis")  # memory only: a crash loses every job, by design
def test_the_ledger_survives_a_crash_and_counts_the_attempt_gq_died_during(make):
    first = make(heartbeat=0.2)
    first.add(job("flying"), job("waiting"), job("done"))
    first.run(first.take_one("done"))
    assert first.start(first.take_one("flying"))
    assert first.ledger() == _ledger(queued=1, running=1, succeeded=1)
    first.vanish()
    second = first.successor()
    try:
        back = second.take_ids(["flying", "waiting"])
        second.run(back["flying"])
        second.run(back["waiting"], dead())
        assert second.ledger() == _ledger(succeeded=2, dead=1)
    finally:
        second.close()


# -- Redis: every operation of the API (no 501)

def test_every_operation_is_supported(h):
    h.add(job("x"))
    h.run(h.take_one("x"), dead())
    assert [e.job.id for e, _ in h.broker.find(Filter(), 10)] == ["x"]
    assert h.broker.replay(["x"]).ids == ["x"]
    assert h.broker.cancel("x") is True


# -- memory only: what it holds follows its bounds

@brokers("memory")
def test_cancelled_scheduled_jobs_leave_the_memory_broker(make):
    """200,000 scheduled jobs submitted and cancelled with max_backlog = 1,000 must not
    leave 200,000 entries in the memory broker's heap while it counts 0 unfinished
    (20,000 here). INTERFACE: the broker shows no size of what it holds: the memory it
    keeps is measured instead."""
    h = make(max_backlog=1000, keep_finished=100)

    def cycle(start: int, n: int) -> None:
        for i in range(start, start + n):
            h.broker.add([Job(f"s{i:06d}", "POST", "http://example.com/hook", {}, run_at=time.time() + FAR)])
            h.broker.cancel(f"s{i:06d}")

    tracemalloc.start()
    try:
        cycle(0, 2000)
        before = tracemalloc.get_traced_memory()[0]
        cycle(2000, 20000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert h.counts()["scheduled"] == 0
    assert grown < 1_000_000, f"the memory broker grew by {grown / 1e6:.1f} MB holding 0 unfinished jobs"


@brokers("memory")
def test_a_page_of_the_memory_brokers_jobs_costs_what_a_page_costs(make):
    """find(limit=10) must not walk and sort every job held: a page of 50,000 jobs costs
    about what a page of 500 does (best of 5 each)."""

    def page_time(n: int) -> float:
        h = make()
        h.broker.add([Job(f"j{i}", "POST", "http://example.com/hook", {}) for i in range(n)])
        h.broker.add([Job(f"d{i}", "POST", "http://dead.example/hook", {}) for i in range(10)])
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            h.broker.find(Filter(), 10)
            h.broker.find(Filter(host="dead.example"), 10)
            best = min(best, time.perf_counter() - started)
        return best

    small, large = page_time(500), page_time(50_000)
    assert large < 5 * small + 0.002, f"a page: {small * 1e3:.2f} ms of 500 jobs, {large * 1e3:.2f} ms of 50,000"


# -- the audit (gq.core.audit.AuditLog): the operator's actions kept beside the jobs

KEEP = 20          # AUDIT_KEEP for these tests
REDIS_SLACK = 100  # entries Redis may keep beyond MAXLEN ~ N: it trims whole nodes (stream-node-max-entries)


@pytest.fixture
def small_audit(monkeypatch):
    import gq.broker.journal_file
    import gq.broker.memory_parts
    import gq.broker.redis_audit
    for module in (gq.broker.memory_parts, gq.broker.journal_file, gq.broker.redis_audit):
        monkeypatch.setattr(module, "AUDIT_KEEP", KEEP)


def test_kept_actions_come_newest_first_a_page_at_a_time(h):
    assert h.broker.actions(10) == []
    for n in range(5):
        h.broker.keep_action({"at": 1000.0 + n, "action": "cancel", "ids": [f"j{n}"], "count": 1,
                              "by": "token", "via": "api"})
    first = h.broker.actions(2)
    assert [row["ids"] for row, _ in first] == [["j4"], ["j3"]]
    rest = h.broker.actions(10, first[-1][1])
    assert [row["ids"] for row, _ in rest] == [["j2"], ["j1"], ["j0"]]
    assert h.broker.actions(10, rest[-1][1]) == []


def test_kept_actions_are_bounded(small_audit, make):
    h = make()
    for n in range(KEEP * 2 + REDIS_SLACK):
        h.broker.keep_action({"at": 1000.0 + n, "action": "replay", "filter": {"state": "dead"}, "count": n,
                              "by": "local", "via": "cli"})
    kept = h.broker.actions(10 * KEEP + REDIS_SLACK * 2)
    newest = KEEP * 2 + REDIS_SLACK - 1
    assert [row["count"] for row, _ in kept] == list(range(newest, newest - len(kept), -1))
    assert KEEP <= len(kept) <= (KEEP if h.kind != "redis" else KEEP + REDIS_SLACK)


@pytest.mark.parametrize("after", [(-5.0, 1), (0.0, 0), (1e300, 2**63 - 1), (1e300, -(2**63)), (5.0, -1)])
def test_a_page_after_any_position_a_cursor_can_hold_is_answered(h, after):
    h.broker.keep_action({"at": 1000.0, "action": "purge", "ids": ["a"], "count": 1, "by": "local", "via": "cli"})
    older = h.broker.actions(5, after)
    assert older == [] or [row["ids"] for row, _ in older] == [["a"]]
