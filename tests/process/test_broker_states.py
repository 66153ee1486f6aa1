"""Random sequences of operations against each broker, beside a small model of the contract
(Hypothesis's RuleBasedStateMachine): add (new ids, known ids, scheduled, ordering keys,
jobs handed back at once), take, start, settle (success, dead, retry now or much later),
defer (now or much later), cancel (any id, in any state), replay dead jobs, and a drain that
takes everything due. After every step:

- no cancelled job is attempted after its cancel was answered;
- never two jobs of one ordering key in flight, and a key's jobs start in the key's order
  (the order accepted, a replayed job's too: behind the key's head, before those accepted after it);
- nothing accepted disappears: every job is found by get(), in a state the model allows,
  and every job due is delivered by a drain; nothing is delivered twice or early;
- the counts per state match the model.

A failing sequence is shrunk to a few steps. CI runs a bounded number of examples
(GQ_STATEFUL_EXAMPLES overrides each broker's, GQ_STATEFUL_STEPS the steps of each);
bench/stateful.sh runs it for an hour. GQ_STATEFUL_WITHOUT=counts,replay,... leaves
checks or operations out, to look past a known failure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from gq.broker import Conflict, Entry, Filter, State
from gq.core.lifecycle import unbalanced
from support.broker_harness import DEADLINE, KINDS, SUCCESS, Harness, dead, job, retry, storage

EXAMPLES = {"memory": 80, "journal": 30, "redis": 25}   # each broker's examples in CI (some 5 s each)
STEPS = int(os.environ.get("GQ_STATEFUL_STEPS") or 30)
ALL_BUGS = os.environ.get("GQ_STATEFUL_ALL_BUGS") == "1"   # look on for other failures after the first
WITHOUT = frozenset(filter(None, os.environ.get("GQ_STATEFUL_WITHOUT", "").split(",")))
FAR = 3600.0
DRAIN_DEADLINE = 2.5 * DEADLINE   # seconds a drain waits for what is due (a busy disk may stall Redis's AOF)
KEYS = (None, "a", "a", "b")
UNCOUNTED = ("succeeded", "cancelled")


def examples(kind: str) -> int:
    return int(os.environ.get("GQ_STATEFUL_EXAMPLES") or EXAMPLES[kind])


@dataclass
class Model:
    """One job as the contract sees it.

    state: waiting (due now), scheduled (its run_at far ahead), later (a retry or a
    deferral far ahead), held (taken by the dispatcher), running, succeeded, dead, cancelled.
    how: what made it wait: new, retry, deferred, replayed."""

    id: str
    key: str | None
    seq: int
    state: str
    how: str = "new"
    attempts: int = 0


@dataclass
class Stats:
    examples: int = 0
    steps: int = 0
    longest: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def line(self, kind: str) -> str:
        skipped = "".join(f", {n} {what} skipped" for what, n in sorted(self.skipped.items()))
        return (f"stateful [{kind}]: {self.examples} examples, {self.steps} steps, "
                f"longest {self.longest} steps{skipped}")


class BrokerMachine(RuleBasedStateMachine):
    """Subclassed per broker by the test (make, stats)."""

    stats: Stats

    def make(self) -> Harness:
        raise NotImplementedError

    def __init__(self):
        super().__init__()
        self.h = self.make()
        self.jobs: dict[str, Model] = {}
        self.lines: dict[str, list[str]] = {}   # ordering key → its unfinished jobs, in the key's order
        self.seq = 0
        self.steps = 0
        self.stats.examples += 1

    def teardown(self):
        self.stats.steps += self.steps
        self.stats.longest = max(self.stats.longest, self.steps)
        self.h.close()

    def step(self, what: str) -> None:
        self.steps += 1
        note(f"step {self.steps}: {what}")

    # -- the model

    def head(self, j: Model) -> bool:
        return j.key is None or self.lines[j.key][0] == j.id

    def eligible(self, j: Model) -> bool:
        return j.state == "waiting" and self.head(j)

    def finish(self, j: Model, state: str) -> None:
        j.state = state
        if j.key is not None and j.id in self.lines[j.key]:
            self.lines[j.key].remove(j.id)

    def allowed(self, j: Model) -> tuple[str, ...]:
        """The states get() may show the job in; the first is the one Counts counts it in,
        when it has only one."""
        if j.state in ("waiting", "scheduled") and not self.head(j):
            return ("queued",)          # behind an earlier job of its key
        if j.state == "scheduled":
            return ("scheduled",)
        if j.state == "waiting":
            # A retry due now may already be read ahead (the journal), or moved back to the
            # stream (Redis): queued there.
            return ("retrying", "queued") if j.how == "retry" else ("queued",)
        if j.state == "later":
            return ("retrying",) if j.how == "retry" else ("queued",)
        if j.state == "held":
            return ("queued", "retrying") if j.how == "retry" else ("queued",)
        return (j.state,)

    def checked_take(self, entry: Entry) -> None:
        """A take (or an add) handed `entry` to the dispatcher: was that allowed?"""
        j = self.jobs.get(entry.job.id)
        assert j is not None, f"took {entry.job.id!r}, never accepted"
        if j.state == "cancelled":
            return  # allowed; it must be dropped at its start
        assert j.state not in ("held", "running"), f"{j.id} taken twice (it is {j.state})"
        assert j.state not in ("succeeded", "dead"), f"{j.id} delivered again, {j.state}"
        assert j.state not in ("scheduled", "later"), f"{j.id} taken before it was due ({j.state}, {j.how})"
        assert self.head(j), f"{j.id} taken before {self.lines[j.key][0]}, earlier in key {j.key}"
        assert entry.attempts == j.attempts, f"{j.id} taken with {entry.attempts} attempts, made {j.attempts}"
        j.state = "held"

    def pick(self, states: tuple[str, ...], index: int) -> Model | None:
        found = [j for j in self.jobs.values() if j.state in states]
        return found[index % len(found)] if found else None

    def held(self, index: int) -> Entry | None:
        entries = list(self.h.held.values())
        return entries[index % len(entries)] if entries else None

    # -- rules

    @initialize()
    def begin(self):
        note(f"broker: {self.h.kind}")

    @rule(specs=st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(["now", "now", "far", "past"])),
                         min_size=1, max_size=3),
          known=st.none() | st.integers(0, 100), hold=st.integers(0, 2))
    def add(self, specs, known, hold):
        new = []
        for key, when in specs:
            self.seq += 1
            fields = {"delay": FAR} if when == "far" else {"run_at": 1} if when == "past" else {}
            new.append(job(f"j{self.seq}", **({"ordering_key": key} if key else {}), **fields))
        again = sorted(self.jobs)[known % len(self.jobs)] if known is not None and self.jobs else None
        jobs = new + ([job(again)] if again else [])
        self.step(f"add {[j.id for j in new]} known={again} hold={hold}")
        added = self.h.add(*jobs, hold=hold)
        assert added.duplicates == ([again] if again else []), f"duplicates {added.duplicates}, known {again}"
        assert len(added.entries) + added.stored == len(new)
        first = self.seq - len(new) + 1  # each new job's own place in the order accepted
        for seq, spec, (key, when) in zip(range(first, self.seq + 1), new, specs):
            self.jobs[spec.id] = Model(spec.id, key, seq, "scheduled" if when == "far" else "waiting")
            if key is not None:
                self.lines.setdefault(key, []).append(spec.id)
        assert len(added.entries) <= hold, f"{len(added.entries)} handed back, hold {hold}"
        for entry in added.entries:
            self.checked_take(entry)

    @rule(limit=st.integers(1, 4))
    def take(self, limit):
        self.step(f"take {limit}")
        for entry in self.h.take(limit, timeout=0.001):
            self.checked_take(entry)

    @precondition(lambda self: self.h.held)
    @rule(index=st.integers(0, 100))
    def start_one(self, index):
        entry = self.held(index)
        j = self.jobs[entry.job.id]
        self.step(f"start {j.id}")
        was_cancelled = j.state == "cancelled"
        if not self.h.start(entry):
            assert was_cancelled, f"{j.id} dropped as cancelled; never cancelled"
            return
        assert not was_cancelled, f"{j.id} attempted after its cancel was answered"
        others = [o.id for o in self.jobs.values() if o.key == j.key and o.state == "running"] if j.key else []
        assert not others, f"{j.id} started while {others} of key {j.key} in flight"
        assert self.head(j), f"{j.id} started before {self.lines[j.key][0]}, earlier in key {j.key}"
        j.state, j.attempts = "running", j.attempts + 1
        assert entry.attempts == j.attempts, f"{j.id}: attempt {entry.attempts}, the model's {j.attempts}"

    @precondition(lambda self: self.h.running)
    @rule(index=st.integers(0, 100), outcome=st.sampled_from(["success", "dead", "retry now", "retry later"]))
    def settle(self, index, outcome):
        entries = list(self.h.running.values())
        entry = entries[index % len(entries)]
        j = self.jobs[entry.job.id]
        self.step(f"settle {j.id} {outcome}")
        self.h.settle(entry, {"success": SUCCESS, "dead": dead(), "retry now": retry(0),
                              "retry later": retry(FAR)}[outcome])
        if outcome in ("success", "dead"):
            self.finish(j, "succeeded" if outcome == "success" else "dead")
        else:
            j.state, j.how = ("waiting" if outcome == "retry now" else "later"), "retry"

    @precondition(lambda self: self.h.held)
    @rule(index=st.integers(0, 100), outcome=st.sampled_from(["success", "dead", "retry now", "retry later"]))
    def run_one(self, index, outcome):
        """A whole attempt: start, then settle at once."""
        job_id = self.held(index).job.id
        self.start_one(index)
        if job_id in self.h.running:
            self.settle(list(self.h.running).index(job_id), outcome)

    @precondition(lambda self: self.h.held and "defer" not in WITHOUT)
    @rule(index=st.integers(0, 100), later=st.booleans())
    def defer(self, index, later):
        entry = self.held(index)
        j = self.jobs[entry.job.id]
        self.step(f"defer {j.id} {'later' if later else 'now'}")
        was_cancelled = j.state == "cancelled"
        if not self.h.defer(entry, time.time() + (FAR if later else 0)):
            assert was_cancelled, f"{j.id} found cancelled; never cancelled"
            return
        if not was_cancelled:  # a cancelled one must stay so: the takes and starts see to it
            j.state, j.how = ("later" if later else "waiting"), "deferred"

    @precondition(lambda self: self.jobs)
    @rule(index=st.integers(0, 100), unknown=st.booleans())
    def cancel(self, index, unknown):
        job_id = "nope" if unknown else sorted(self.jobs)[index % len(self.jobs)]
        j = self.jobs.get(job_id)
        self.step(f"cancel {job_id} ({j.state if j else 'unknown'})")
        try:
            cancelled = self.h.broker.cancel(job_id)
        except Conflict as e:
            assert j is not None and j.state in ("running", "succeeded", "dead", "cancelled"), (
                f"cancel of {job_id} refused: it is {e.state.value}; the model's {j.state if j else 'unknown'}")
            assert e.state.value == j.state, f"cancel of {job_id}: {e.state.value}, the model's {j.state}"
            return
        if j is None:
            assert cancelled is False, "an unknown id cancelled"
            return
        assert j.state in ("waiting", "scheduled", "later", "held"), f"cancel of {job_id}, {j.state}: {cancelled}"
        assert cancelled is True, f"cancel of {job_id}, {j.state}: False"
        self.finish(j, "cancelled")

    @precondition(lambda self: "replay" not in WITHOUT and any(j.state == "dead" for j in self.jobs.values()))
    @rule(picks=st.lists(st.integers(0, 100), min_size=1, max_size=3), other=st.booleans())
    def replay(self, picks, other):
        dead_ids = sorted((j for j in self.jobs.values() if j.state == "dead"), key=lambda j: j.seq)
        ids = list(dict.fromkeys(dead_ids[p % len(dead_ids)].id for p in picks))
        if other:
            ids = list(dict.fromkeys([*ids, sorted(self.jobs)[picks[0] % len(self.jobs)]]))
        self.step(f"replay {ids}")
        replayed = self.h.broker.replay(ids).ids
        expected = [i for i in ids if self.jobs[i].state == "dead"]
        assert sorted(replayed) == sorted(expected), f"replayed {replayed} of {ids}; dead: {expected}"
        for job_id in sorted(expected, key=lambda i: self.jobs[i].seq):
            j = self.jobs[job_id]
            j.state, j.how, j.attempts = "waiting", "replayed", 0
            if j.key is not None:  # behind its key's head, then in the order accepted (gq/core/lifecycle.py)
                line = self.lines.setdefault(j.key, [])
                line[1:] = sorted([*line[1:], j.id] if line else [], key=lambda i: self.jobs[i].seq)
                if not line:
                    line.append(j.id)

    @rule()
    def drain(self):
        """Take until every job due now has been taken: nothing accepted disappears."""
        self.step("drain")
        deadline = time.monotonic() + DRAIN_DEADLINE
        while True:
            for entry in self.h.take(100, timeout=0.005):
                self.checked_take(entry)
            due = sorted(j.id for j in self.jobs.values() if self.eligible(j))
            if not due:
                return
            assert time.monotonic() < deadline, f"{due} due, never delivered"

    @precondition(lambda self: "find" not in WITHOUT)
    @rule()
    def find(self):
        self.step("find")
        self.h.settled()
        found = list(self.h.broker.find(Filter(), 1000))
        assert sorted(e.job.id for e, _ in found) == sorted(self.jobs), "find lists other jobs than were accepted"
        positions = [at for _, at in found]
        assert positions == sorted(positions, reverse=True), "find: not newest first"
        for entry, _ in found:
            j = self.jobs[entry.job.id]
            assert entry.state.value in self.allowed(j), f"find shows {j.id} {entry.state.value}, not {self.allowed(j)}"

    # -- after every step

    @invariant()
    def every_job_is_where_the_model_says(self):
        self.h.settled()
        for j in self.jobs.values():
            entry = self.h.broker.get(j.id)
            assert entry is not None, f"{j.id} ({j.state}) is unknown to the broker"
            assert entry.state.value in self.allowed(j), f"{j.id} shows {entry.state.value}, not {self.allowed(j)}"

    def bounds(self, counted: Callable[[Model], bool] = lambda j: True) -> tuple[dict[str, int], dict[str, int]]:
        """How many of the `counted` jobs each state holds at least, and at most, as the model
        sees them (a job may show one of several states: `allowed`)."""
        low: dict[str, int] = {}
        high: dict[str, int] = {}
        for j in filter(counted, self.jobs.values()):
            allowed = self.allowed(j)
            for state in allowed:
                high[state] = high.get(state, 0) + 1
            if len(allowed) == 1:
                low[allowed[0]] = low.get(allowed[0], 0) + 1
        return low, high

    @precondition(lambda self: "counts" not in WITHOUT)
    @invariant()
    def counts_match_the_model(self):
        counts = self.h.counts()
        low, high = self.bounds(lambda j: self.allowed(j)[0] not in UNCOUNTED)
        expected = sum(1 for j in self.jobs.values() if self.allowed(j)[0] not in UNCOUNTED)
        shown = {s: counts.get(s, 0) for s in ("queued", "scheduled", "running", "retrying", "dead")}
        assert sum(shown.values()) == expected, f"counts {counts}: {sum(shown.values())} jobs, the model's {expected}"
        for state, n in shown.items():
            assert low.get(state, 0) <= n <= high.get(state, 0), (
                f"counts {counts}: {state} {n}, the model's {low.get(state, 0)} to {high.get(state, 0)}")

    @invariant()
    def the_ledger_adds_up_to_the_models_jobs(self):
        """Every job accepted is counted once, in a state the model allows it (none is
        forgotten here: finished jobs are kept an hour)."""
        ledger = self.h.ledger()
        assert unbalanced(ledger) is None, f"ledger {ledger}: {unbalanced(ledger)}"
        assert (ledger["accepted"], ledger["forgotten"]) == (len(self.jobs), 0), f"ledger {ledger}"
        low, high = self.bounds()
        for state in (s.value for s in State):
            assert low.get(state, 0) <= ledger[state] <= high.get(state, 0), (
                f"ledger {ledger}: {state} {ledger[state]}, the model's {low.get(state, 0)} to {high.get(state, 0)}")


@pytest.mark.parametrize("broker_kind", KINDS)
def test_random_operations_keep_the_contract(broker_kind, request, tmp_path):
    url = request.getfixturevalue("module_redis").url if broker_kind == "redis" else ""
    stats = Stats()

    class Machine(BrokerMachine):
        def make(self) -> Harness:
            return Harness(storage(broker_kind, tmp_path, url))

    Machine.stats = stats
    Machine.__name__ = Machine.__qualname__ = f"BrokerMachine_{broker_kind}"
    try:
        run_state_machine_as_test(Machine, settings=settings(
            max_examples=examples(broker_kind), stateful_step_count=STEPS, deadline=None,
            report_multiple_bugs=ALL_BUGS,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    finally:
        print(stats.line(broker_kind))
