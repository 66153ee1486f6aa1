"""The dispatcher on the MemoryBroker, with a scripted in-process worker.

No monkey-patching is needed: the worker does no I/O, and everything waits on
gevent primitives. Conditions are awaited with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import gevent
import pytest
from gevent.event import Event

from gq.broker import State
from gq.broker.memory import MemoryBroker
from gq.core.job import Job
from gq.core.outcome import AttemptResult, Outcome, Verdict
from gq.core.retry import RetryPolicy
from gq.dispatch.dispatcher import Dispatcher
from gq.errors import Draining, QueueFull
from gq.observe.metrics import Metrics
from support import exposition_samples

DEADLINE = 5.0  # seconds any condition may take before the test fails


class ScriptedWorker:
    """Answers attempts from a per-job script: a status, None (no response) or an
    exception to raise; the last step repeats. Jobs without a script get 200.

    While `hold` is not set, every attempt waits on it: jobs stay in flight.
    """

    def __init__(self, scripts: dict[str, list[Any]] | None = None, hold: Event | None = None):
        self.scripts = {job_id: list(steps) for job_id, steps in (scripts or {}).items()}
        self.hold = hold
        self.calls: list[str] = []
        self.timeouts: list[float] = []
        self.running = 0
        self.max_running = 0

    def attempt(self, job: Job, timeout: float) -> AttemptResult:
        self.calls.append(job.id)
        self.timeouts.append(timeout)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.hold is not None:
                self.hold.wait()
            else:
                gevent.sleep(0)  # let other attempts start, as real I/O would
            steps = self.scripts.get(job.id, [200])
            step = steps.pop(0) if len(steps) > 1 else steps[0]
        finally:
            self.running -= 1
        if isinstance(step, Exception):
            raise step
        return AttemptResult(time.time(), 0.001, status=step,
                             error=None if step is not None else "connect: refused")


class FakeClock:
    """The broker's wall clock, moved by hand: retries wait until the test says."""

    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def jobs(*ids: str, **fields: Any) -> list[Job]:
    return [Job(job_id, "POST", "http://example.com/hook", {}, **fields) for job_id in ids]


@pytest.fixture
def make():
    """make(worker, **options) → a started Dispatcher on a fresh MemoryBroker."""
    started: list[Dispatcher] = []

    def make(worker: ScriptedWorker | None = None, *, queue_maxsize: int = 10, pool_size: int = 2,
             max_attempts: int = 3, backoff: float = 0.001, clock=time.time,
             keep_finished: int = 1000, observers: Iterable[Any] = ()) -> Dispatcher:
        broker = MemoryBroker(clock=clock, keep_finished=keep_finished)
        dispatcher = Dispatcher(
            broker, worker or ScriptedWorker(), queue_maxsize=queue_maxsize, pool_size=pool_size,
            policy=RetryPolicy(max_attempts, backoff, backoff), default_timeout=7.0,
            observers=observers)
        dispatcher.start()
        started.append(dispatcher)
        return dispatcher

    yield make
    for dispatcher in started:
        dispatcher.stop()


def poll(condition, timeout: float) -> bool:
    """True as soon as `condition()` holds; False once `timeout` seconds pass without it."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        gevent.sleep(0.002)
    return True


def wait_for(condition, what: str, timeout: float = DEADLINE) -> None:
    if not poll(condition, timeout):
        pytest.fail(f"timed out after {timeout:g}s waiting for {what}")


def states(d: Dispatcher, *ids: str) -> list[State | None]:
    return [e.state if (e := d.broker.get(i)) else None for i in ids]


def wait_settled(d: Dispatcher, *ids: str, state: State = State.SUCCEEDED) -> None:
    wait_for(lambda: states(d, *ids) == [state] * len(ids), f"{ids} to be {state.value}")


def counts(**nonzero: int) -> dict[str, int]:
    return {"queued": 0, "scheduled": 0, "running": 0, "retrying": 0, "dead": 0, **nonzero}


def never(condition, within: float = 0.1) -> bool:
    """True when `condition` stays false for `within` seconds (a bounded negative check)."""
    return not poll(condition, within)


def resize(d: Dispatcher, pool_size: int, queue_maxsize: int) -> None:
    """A reload of pool.size and queue.maxsize, the rest as `make` set it."""
    d.configure(pool_size=pool_size, queue_maxsize=queue_maxsize, policy=d.attempts.policy,
                default_timeout=7.0)


def fill(make, *, queue_maxsize: int, running: int = 1, queued: int = 0):
    """A dispatcher (pool of `running`) with `running` jobs held in flight and `queued` waiting."""
    hold = Event()
    worker = ScriptedWorker(hold=hold)
    d = make(worker, pool_size=running, queue_maxsize=queue_maxsize)
    d.admission.submit(jobs(*(f"run{n}" for n in range(running))), timeout=0)
    wait_for(lambda: worker.running == running, "the pool to fill")
    d.admission.submit(jobs(*(f"q{n}" for n in range(queued))), timeout=0)
    return d, hold, worker


# -- running


def test_jobs_run_once_and_succeed(make):
    worker = ScriptedWorker()
    d = make(worker)
    ids = [f"j{n}" for n in range(6)]
    added = d.admission.submit(jobs(*ids), timeout=0)
    assert [e.job.id for e in added.entries] == ids and added.duplicates == []
    wait_settled(d, *ids)
    assert sorted(worker.calls) == ids
    assert (d.snapshot().succeeded, d.snapshot().dead) == (6, 0)
    assert d.broker.counts() == counts()
    assert d.broker.get("j0").attempts == 1


def test_default_timeout_unless_the_job_sets_one(make):
    worker = ScriptedWorker()
    d = make(worker, pool_size=1)
    d.admission.submit(jobs("a") + jobs("b", timeout=1.5), timeout=0)
    wait_settled(d, "a", "b")
    assert worker.timeouts == [7.0, 1.5]


def held_jobs(make, pool_size: int) -> tuple[Dispatcher, Event, ScriptedWorker, list[str]]:
    """8 jobs submitted to a queue of 10, their attempts held until the Event is set."""
    hold = Event()
    worker = ScriptedWorker(hold=hold)
    d = make(worker, pool_size=pool_size, queue_maxsize=10)
    ids = [f"j{n}" for n in range(8)]
    d.admission.submit(jobs(*ids), timeout=0)
    return d, hold, worker, ids


def test_at_most_pool_size_jobs_in_flight(make):
    d, hold, worker, ids = held_jobs(make, pool_size=3)
    wait_for(lambda: worker.running == 3 and d.snapshot().queue_depth == 5, "3 running, 5 queued")
    assert never(lambda: worker.running > 3)
    assert d.snapshot().pool_busy == 3
    assert d.broker.counts() == counts(running=3, queued=5)
    hold.set()
    wait_settled(d, *ids)
    assert worker.max_running == 3
    assert d.broker.counts() == counts()


def test_resize_grows_and_shrinks_the_pool_while_running(make):
    d, first, worker, ids = held_jobs(make, pool_size=2)
    wait_for(lambda: worker.running == 2, "2 running")
    resize(d, 4, 10)
    wait_for(lambda: worker.running == 4, "4 running after growing")
    resize(d, 1, 10)
    worker.hold = then = Event()   # attempts from now on wait on this one
    first.set()
    wait_for(lambda: worker.running == 1 and d.snapshot().queue_depth == 3, "the 4 to end and 1 to start")
    assert never(lambda: worker.running > 1)
    then.set()
    wait_settled(d, *ids)


def test_busy_counts_every_job_in_flight_after_a_shrink(make):
    d, _, worker = fill(make, queue_maxsize=5, running=4)
    resize(d, 1, 5)
    assert worker.running == 4
    assert d.snapshot().pool_busy == 4


# -- intake backpressure


def test_submit_waits_for_room_and_gets_it(make):
    d, hold, _ = fill(make, queue_maxsize=2, queued=2)
    waiter = gevent.spawn(d.admission.submit, jobs("late"), DEADLINE)
    assert never(waiter.ready), "submit must wait while the queue is full"
    assert d.broker.get("late") is None
    hold.set()
    waiter.join(DEADLINE)
    assert [e.job.id for e in waiter.get(block=False).entries] == ["late"]
    wait_settled(d, "run0", "q0", "q1", "late")


def test_submit_raises_queue_full_after_the_timeout(make):
    d, _, _ = fill(make, queue_maxsize=2, queued=2)
    started = time.monotonic()
    with pytest.raises(QueueFull):
        d.admission.submit(jobs("late"), timeout=0.1)
    assert time.monotonic() - started >= 0.1
    assert d.broker.get("late") is None
    assert d.snapshot().queue_depth == 2 and d.broker.counts() == counts(running=1, queued=2)


def test_batch_larger_than_the_queue_is_refused_at_once(make):
    d = make(queue_maxsize=3)
    started = time.monotonic()
    with pytest.raises(QueueFull):
        d.admission.submit(jobs("a", "b", "c", "d"), timeout=DEADLINE)
    assert time.monotonic() - started < 1.0
    assert states(d, "a", "b", "c", "d") == [None] * 4


def test_batch_is_all_or_nothing(make):
    d, _, _ = fill(make, queue_maxsize=3, queued=1)
    assert d.admission.room() == 2
    with pytest.raises(QueueFull):
        d.admission.submit(jobs("a", "b", "c"), timeout=0.05)
    assert states(d, "a", "b", "c") == [None] * 3
    assert d.snapshot().queue_depth == 1 and d.broker.counts() == counts(running=1, queued=1)
    d.admission.submit(jobs("a", "b"), timeout=0)
    assert d.snapshot().queue_depth == 3


# -- duplicates


def test_known_ids_are_duplicates_and_run_once(make):
    worker = ScriptedWorker()
    d = make(worker)
    d.admission.submit(jobs("a", "b"), timeout=0)
    wait_settled(d, "a", "b")
    added = d.admission.submit(jobs("a", "c", "c"), timeout=0)
    assert [e.job.id for e in added.entries] == ["c"]
    assert added.duplicates == ["a", "c"]
    wait_settled(d, "c")
    assert sorted(worker.calls) == ["a", "b", "c"]


def test_duplicate_of_a_job_in_flight_is_not_queued(make):
    d, hold, worker = fill(make, queue_maxsize=2)
    added = d.admission.submit(jobs("run0"), timeout=0)
    assert (added.entries, added.duplicates) == ([], ["run0"])
    assert d.snapshot().queue_depth == 0
    hold.set()
    wait_settled(d, "run0")
    assert worker.calls == ["run0"]


# -- retries and dead letters


def test_retry_waits_outside_the_pool_and_the_queue(make):
    clock = FakeClock()
    worker = ScriptedWorker({"flaky": [503, 503, 200]})
    d = make(worker, pool_size=1, queue_maxsize=1, backoff=1.0, clock=clock)
    d.admission.submit(jobs("flaky"), timeout=0)
    for attempt in (1, 2):
        entry = d.broker.get("flaky")
        wait_for(lambda: entry.attempts == attempt and entry.state is State.RETRYING
                 and d.snapshot().pool_busy == 0, f"flaky to wait for attempt {attempt + 1}")
        assert clock.now < entry.due <= clock.now + 1.0
        assert (d.snapshot().pool_busy, d.snapshot().queue_depth, d.admission.room()) == (0, 0, 1)
        assert d.broker.counts() == counts(retrying=1)
        # The only pool slot and queue slot serve another job meanwhile.
        other = f"other{attempt}"
        d.admission.submit(jobs(other), timeout=0)
        wait_settled(d, other)
        assert states(d, "flaky") == [State.RETRYING]
        clock.advance(1.0)
    wait_settled(d, "flaky")
    assert d.broker.get("flaky").attempts == 3
    assert [a.status for a in d.broker.get("flaky").history] == [503, 503, 200]
    assert worker.calls.count("flaky") == 3
    assert d.broker.counts() == counts()


def test_permanent_status_is_dead_at_once(make):
    worker = ScriptedWorker({"gone": [404, 200]})
    d = make(worker)
    d.admission.submit(jobs("gone"), timeout=0)
    wait_settled(d, "gone", state=State.DEAD)
    entry = d.broker.get("gone")
    assert (entry.attempts, entry.reason) == (1, "permanent status 404")
    assert [e.job.id for e in d.broker.dead_letters()] == ["gone"]
    assert d.broker.counts() == counts(dead=1)
    assert (d.snapshot().succeeded, d.snapshot().dead) == (0, 1)


def test_replayed_dead_letter_runs_again(make):
    worker = ScriptedWorker({"gone": [404, 200]})
    d = make(worker)
    d.admission.submit(jobs("gone"), timeout=0)
    wait_settled(d, "gone", state=State.DEAD)
    assert d.broker.replay(["gone"]).ids == ["gone"]
    wait_settled(d, "gone")
    assert worker.calls == ["gone", "gone"]
    assert d.broker.get("gone").attempts == 1, "a replay starts a fresh count"
    assert d.broker.dead_letters() == [] and d.broker.counts() == counts()


def test_purge_removes_dead_letters_only(make):
    d = make(ScriptedWorker({"x": [410], "y": [410]}))
    d.admission.submit(jobs("x", "y", "ok"), timeout=0)
    wait_settled(d, "x", "y", state=State.DEAD)
    wait_settled(d, "ok")
    assert d.broker.purge(["x", "ok", "unknown"]) == ["x"]
    assert states(d, "x", "y", "ok") == [None, State.DEAD, State.SUCCEEDED]
    assert d.broker.counts() == counts(dead=1)
    assert d.broker.purge(None) == ["y"]
    assert d.broker.dead_letters() == [] and d.broker.counts() == counts()


@pytest.mark.parametrize("job_max, attempts", [(None, 3), (1, 1), (5, 5)])
def test_job_max_attempts_overrides_the_policy(make, job_max, attempts):
    worker = ScriptedWorker({"j": [503]})
    d = make(worker, max_attempts=3)
    d.admission.submit(jobs("j", max_attempts=job_max), timeout=0)
    wait_settled(d, "j", state=State.DEAD)
    entry = d.broker.get("j")
    assert entry.attempts == attempts == len(worker.calls)
    assert entry.reason == f"attempts used up ({attempts})"


def test_worker_exception_does_not_lose_the_job(make):
    worker = ScriptedWorker({"j": [RuntimeError("boom"), 200]})
    d = make(worker)
    d.admission.submit(jobs("j"), timeout=0)
    wait_settled(d, "j")
    history = d.broker.get("j").history
    assert [a.status for a in history] == [None, 200]
    assert "boom" in history[0].error


class Recorder:
    def __init__(self):
        self.events: list[tuple] = []

    def accepted(self, count):
        self.events.append(("accepted", count))

    def dequeued(self, waited):
        self.events.append(("dequeued",))

    def attempted(self, entry, result, outcome):
        self.events.append(("attempted", entry.job.id, outcome.verdict))


class Broken:
    def __getattr__(self, name):
        def fail(*args):
            raise RuntimeError(f"observer bug in {name}")
        return fail


def test_failing_observer_breaks_neither_the_job_nor_other_observers(make):
    recorder = Recorder()
    d = make(observers=[Broken(), recorder])
    d.admission.submit(jobs("a", "b"), timeout=0)
    wait_settled(d, "a", "b")
    assert d.broker.counts() == counts()
    assert recorder.events.count(("accepted", 2)) == 1
    assert recorder.events.count(("dequeued",)) == 2
    assert {e for e in recorder.events if e[0] == "attempted"} == {
        ("attempted", "a", Verdict.SUCCESS), ("attempted", "b", Verdict.SUCCESS)}


def test_finished_jobs_are_counted_once_for_the_status_and_the_metrics(make):
    metrics = Metrics()
    d = make(ScriptedWorker({"gone": [404]}), observers=[Broken(), metrics])
    metrics.read(d.snapshot, d.broker)
    d.admission.submit(jobs("a", "b", "gone") + jobs("later", run_at=time.time() + 3600), timeout=0)
    wait_settled(d, "a", "b")
    wait_settled(d, "gone", state=State.DEAD)
    assert d.cancel("later")
    now = d.snapshot()
    assert (now.succeeded, now.dead, now.cancelled) == (2, 1, 1)
    exported = exposition_samples(metrics.exposition().decode())
    assert {outcome: exported[("gq_jobs_finished_total", (("outcome", outcome),))]
            for outcome in ("succeeded", "dead", "cancelled")} == {"succeeded": 2, "dead": 1, "cancelled": 1}


# -- draining


def test_drain_finishes_queued_and_in_flight_jobs(make):
    d, hold, _ = fill(make, queue_maxsize=5, queued=3)
    gevent.spawn(hold.set)  # runs once drain() waits
    report = d.drain(DEADLINE * 2)  # longer than a job's timeout (7 s): queued jobs may start
    assert (report.finished, report.queued_left, report.in_flight_left) == (True, 0, 0)
    assert states(d, "run0", "q0", "q1", "q2") == [State.SUCCEEDED] * 4
    assert d.snapshot().succeeded == 4 and d.broker.counts() == counts()


def test_drain_starts_no_job_whose_timeout_outlasts_it(make):
    # Timeouts 7 s (the default) and 1 s, a drain of 3 s: only the 1 s job can end in time.
    d, hold, worker = fill(make, queue_maxsize=5, queued=2)
    d.admission.submit(jobs("short", timeout=1.0), timeout=0)
    gevent.spawn(hold.set)
    report = d.drain(3.0)
    assert (report.finished, report.queued_left, report.in_flight_left) == (True, 0, 0)
    assert report.seconds < 3.0, "the drain waited for jobs it would not start"
    assert worker.calls == ["run0", "short"]
    assert states(d, "run0", "q0", "q1", "short") == [State.SUCCEEDED, State.QUEUED, State.QUEUED,
                                                      State.SUCCEEDED]
    assert d.broker.counts() == counts(queued=2)  # unattempted, kept for the next start
    assert [e.attempts for e in map(d.broker.get, ("q0", "q1"))] == [0, 0]


def test_drain_gives_up_after_the_timeout(make):
    d, _, _ = fill(make, queue_maxsize=5, running=2, queued=1)
    report = d.drain(0.1)
    assert (report.finished, report.queued_left, report.in_flight_left) == (False, 1, 2)
    assert 0.1 <= report.seconds < DEADLINE
    # Nothing is settled: the broker still holds all three for the next start.
    assert all(state not in (State.SUCCEEDED, State.DEAD)
               for state in states(d, "run0", "run1", "q0"))


def test_hurry_cuts_the_drain_short(make):
    d, _, _ = fill(make, queue_maxsize=5, queued=1)
    hurry = Event()
    gevent.spawn(hurry.set)
    report = d.drain(DEADLINE * 2, hurry=hurry)
    assert report.finished is False and report.in_flight_left == 1
    assert report.seconds < DEADLINE


def test_submit_after_drain_raises_draining(make):
    d = make()
    d.drain(DEADLINE)
    with pytest.raises(Draining):
        d.admission.submit(jobs("late"), timeout=0)
    assert d.broker.get("late") is None


def test_submit_waiting_for_room_raises_draining_when_the_drain_starts(make):
    d, _, _ = fill(make, queue_maxsize=1, queued=1)
    waiter = gevent.spawn(d.admission.submit, jobs("late"), DEADLINE)
    assert never(waiter.ready)
    d.drain(0.05)
    waiter.join(DEADLINE)
    assert isinstance(waiter.exception, Draining)
    assert d.broker.get("late") is None


# -- the MemoryBroker on its own


def settle(broker: MemoryBroker, entry, verdict: Verdict, delay: float = 0.0, status: int = 503):
    broker.settle(entry, AttemptResult(broker.clock(), 0.0, status=status),
                  Outcome(verdict, delay=delay, reason="test"))


def test_broker_counts_follow_every_transition():
    clock = FakeClock()
    broker = MemoryBroker(clock=clock)
    (entry,) = broker.add(jobs("a"), hold=1).entries
    assert broker.counts() == counts(queued=1)
    broker.started(entry)
    assert broker.counts() == counts(running=1)
    settle(broker, entry, Verdict.RETRY, delay=5.0)
    assert broker.counts() == counts(retrying=1)
    assert broker.take(10, 0) == []          # not due yet
    clock.advance(5.0)
    assert broker.take(10, 0) == [entry]
    assert broker.counts() == counts(queued=1)
    broker.started(entry)
    settle(broker, entry, Verdict.FAIL)
    assert broker.counts() == counts(dead=1)
    assert broker.replay(None).ids == ["a"]
    assert broker.counts() == counts(queued=1)
    assert broker.take(10, 0) == [entry]
    broker.started(entry)
    settle(broker, entry, Verdict.SUCCESS, status=200)
    assert broker.counts() == counts()
    assert entry.state is State.SUCCEEDED and entry.attempts == 1, "a replay starts a fresh count"


def test_broker_take_respects_its_limit():
    broker = MemoryBroker(clock=FakeClock())
    entries = broker.add(jobs("a", "b", "c"), hold=3).entries
    for entry in entries:
        broker.started(entry)
        settle(broker, entry, Verdict.FAIL)
    broker.replay(None)
    assert len(broker.take(2, 0)) == 2 and len(broker.take(2, 0)) == 1
    assert broker.counts() == counts(queued=3)


@pytest.mark.parametrize("operation", ["replay", "purge"])
def test_broker_dead_letter_ids_named_twice_count_once(operation):
    broker = MemoryBroker(clock=FakeClock())
    (entry,) = broker.add(jobs("a"), hold=1).entries
    broker.started(entry)
    settle(broker, entry, Verdict.FAIL)
    done = getattr(broker, operation)(["a", "a"])
    if operation == "replay":
        assert broker.counts() == counts(queued=1)
        assert broker.take(10, 0) == [entry], "handed out once, so run once"
        assert (done.ids, done.skipped) == (["a"], [])
    else:
        assert broker.counts() == counts() and broker.get("a") is None
        assert done == ["a"]


def test_succeeded_jobs_beyond_keep_finished_are_forgotten(make):
    d = make(ScriptedWorker({"dead": [404]}), pool_size=1, keep_finished=2)
    ids = ["dead", "s1", "s2", "s3", "s4"]
    for job_id in ids:  # one at a time: a known order of success
        d.admission.submit(jobs(job_id), timeout=0)
        wait_for(lambda: d.broker.get(job_id) is None
                 or d.broker.get(job_id).state in (State.SUCCEEDED, State.DEAD), f"{job_id} to finish")
    assert states(d, *ids) == [State.DEAD, None, None, State.SUCCEEDED, State.SUCCEEDED]
    # A forgotten id is new again; a remembered one is still a duplicate.
    added = d.admission.submit(jobs("s1", "s4"), timeout=0)
    assert ([e.job.id for e in added.entries], added.duplicates) == (["s1"], ["s4"])
