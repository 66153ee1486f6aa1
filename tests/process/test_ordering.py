"""Ordering keys against a real daemon, a real target and a real journal: the jobs of one key
reach the target one at a time, in the order accepted, through retries, dead jobs and
restarts; jobs of other keys, and jobs without one, go on meanwhile.

The target records when each request arrived and when its answer went out: a request of a
key that arrived before the previous one's answer went out overlapped it. Whether jobs
without a key were held up is read from the order of events at the target, not from how
long anything took.
"""

from __future__ import annotations

import signal
from collections import defaultdict

import pytest

from support import Daemon, Target, wait_for, wait_state

JOURNAL = {"path": "data/journal.sqlite3"}
BROKERS = [pytest.param(JOURNAL, id="journal"), pytest.param({"path": ""}, id="memory")]
DELAY = 0.03   # seconds the target takes per request


def keyed_jobs(target: Target, prefix: str, keys: int, per_key: int, delay: float = DELAY,
               dead: dict[str, int] | None = None) -> list[dict]:
    """`per_key` jobs on each of `keys` ordering keys, interleaved, in the order to post them.
    Every 7th job's first attempt gets a 503; the `dead` ones (key → its n-th job) have one
    attempt, which gets a 503."""
    jobs = []
    for n in range(keys * per_key):
        key, index = f"k{n % keys}", n // keys
        job = {"id": f"{prefix}-{key}-{index}", "url": target.url(f"/o/{key}", delay=delay, fail=int(n % 7 == 0)),
               "ordering_key": key}
        if dead and dead.get(key) == index:
            job["url"] = target.url(f"/o/{key}", delay=delay, fail=1)
            job["max_attempts"] = 1
        jobs.append(job)
    return jobs


def free_jobs(target: Target, prefix: str, count: int, delay: float = DELAY) -> list[dict]:
    return [{"id": f"{prefix}-free-{n}", "url": target.url("/free", delay=delay)} for n in range(count)]


def post(daemon: Daemon, jobs: list[dict]) -> None:
    response = daemon.post(jobs)
    assert response.status_code == 202, response.text


def check_keys(received: list[dict], jobs: list[dict], dead: set[str] = frozenset()) -> dict[str, list[dict]]:
    """Per key, its requests by arrival: each job's only after the jobs accepted before it,
    none before the previous answer went out, and each job that is not `dead` answered
    2xx, in the order accepted. Returns them."""
    order: dict[str, list[str]] = defaultdict(list)
    place: dict[str, tuple[str, int]] = {}
    for job in jobs:
        key = job.get("ordering_key")
        if key is not None:
            place[job["id"]] = (key, len(order[key]))
            order[key].append(job["id"])
    by_key: dict[str, list[dict]] = defaultdict(list)
    for r in received:
        if r["key"] in place:
            by_key[place[r["key"]][0]].append(r)
    assert set(by_key) == set(order)
    for key, got in by_key.items():
        got.sort(key=lambda r: r["t"])
        sequence = [place[r["key"]][1] for r in got]
        assert sequence == sorted(sequence), f"{key}: sent out of the order accepted: {sequence}"
        for before, after in zip(got, got[1:]):
            assert before["end"] is not None and before["end"] <= after["t"], \
                f"{key}: {after['key']} was sent before the answer to {before['key']} went out"
        succeeded = list(dict.fromkeys(r["key"] for r in got if r["status"] == 200))
        assert succeeded == [i for i in order[key] if i not in dead], key
    return by_key


def keys_at_once(by_key: dict[str, list[dict]]) -> int:
    """The most keys that had a request at the target at one moment."""
    events = sorted((t, step) for got in by_key.values() for r in got for t, step in ((r["t"], 1), (r["end"], -1)))
    most = now = 0
    for _, step in events:  # at equal times an answer (-1) sorts first: a handover is no overlap
        now += step
        most = max(most, now)
    return most


@pytest.mark.parametrize("journal", BROKERS)
def test_each_key_runs_one_at_a_time_in_order_and_jobs_without_one_are_not_held_up(
        start_daemon, target, journal):
    daemon = start_daemon(journal=journal, pool={"size": 20})
    dead_at = {"k3": 5, "k9": 0}   # k9's head job goes dead: the rest of k9 must still go
    keyed = keyed_jobs(target, "o", keys=10, per_key=30, dead=dead_at)
    free = free_jobs(target, "o", 100)
    post(daemon, keyed)
    post(daemon, free)   # after all the keyed ones: a queue in the order accepted would hold them up
    wait_for(lambda: sum(daemon.status()["finished"].values()) == 400, 60, "all 400 jobs to finish", every=0.1)

    dead = {f"o-{key}-{index}" for key, index in dead_at.items()}
    for job_id in dead:
        job = daemon.job(job_id)
        assert job["state"] == "dead" and job["attempts"] == 1, job
    received = target.received()
    by_key = check_keys(received, keyed, dead)
    assert {daemon.job(f"o-k9-{n}")["state"] for n in range(1, 30)} == {"succeeded"}
    retried = [r for r in received if r["status"] == 503]
    assert len(retried) >= 40, "the test meant every 7th job to fail once"

    free_ids = {job["id"] for job in free}
    free_done = [r for r in received if r["key"] in free_ids and r["status"] == 200]
    assert len({r["key"] for r in free_done}) == 100
    slowest_last = max(got[-1]["t"] for got in by_key.values())
    assert max(r["end"] for r in free_done) < slowest_last, \
        "jobs without a key finished after the slowest key's last job began: they waited behind the keys"
    assert keys_at_once(by_key) >= 5, "keys ran one after another, not side by side"


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_ordering_holds_across_a_restart_in_the_middle(start_daemon, target, stop):
    # drain_timeout below the jobs' timeout: a drain lets what is in flight finish and starts nothing.
    sections = {"journal": JOURNAL, "pool": {"size": 20}, "target": {"timeout": 5}, "shutdown": {"drain_timeout": 2}}
    daemon = start_daemon(**sections)
    keyed = keyed_jobs(target, "r", keys=6, per_key=20, delay=0.05)
    free = free_jobs(target, "r", 30, delay=0.05)
    post(daemon, keyed)
    post(daemon, free)
    keyed_ids = {job["id"] for job in keyed}

    def keyed_done() -> int:
        return len({r["key"] for r in target.received() if r["key"] in keyed_ids and r["status"] == 200})
    wait_for(lambda: keyed_done() >= 40, what="a third of the keyed jobs delivered")
    daemon.signal(stop)
    code = daemon.wait()
    assert code == (0 if stop == signal.SIGTERM else -signal.SIGKILL)
    before = len(target.received())
    assert keyed_done() < len(keyed), "the restart came too late to test anything"

    # The restart takes far longer than the target's 0.05 s: what was in flight at a kill -9
    # has been answered before the new daemon sends anything.
    again = start_daemon(**sections)
    every = keyed_ids | {job["id"] for job in free}
    wait_for(lambda: {r["key"] for r in target.received() if r["status"] == 200} >= every, 60,
             "every job delivered after the restart", every=0.1)
    wait_for(lambda: not any(again.status()["jobs"][s] for s in ("queued", "running", "retrying")),
             what="the restarted daemon to settle")
    received = target.received()
    assert len(received) > before
    check_keys(received, keyed)
    if stop == signal.SIGTERM:  # a drain cuts nothing off: nothing is sent twice after success
        succeeded = [r["key"] for r in received if r["status"] == 200]
        assert len(succeeded) == len(set(succeeded)), "a job delivered twice across a drain"


@pytest.mark.parametrize("journal", BROKERS)
def test_a_cancelled_job_of_a_key_lets_the_next_one_go(start_daemon, target, journal):
    # Heads that would hold their key for an hour: scheduled (H), retrying (R); and a job
    # waiting in the middle of a key (C, behind A, which the target holds until the end).
    daemon = start_daemon(journal=journal, retry={"backoff_max": 3600})
    post(daemon, [{"id": "H", "url": target.url("/h"), "delay": 3600, "ordering_key": "h"},
                  {"id": "H2", "url": target.url("/h"), "ordering_key": "h"},
                  {"id": "R", "url": target.url("/r", fail=100, retry_after=3600), "ordering_key": "r"},
                  {"id": "R2", "url": target.url("/r"), "ordering_key": "r"},
                  {"id": "A", "url": target.url("/m", gate="a"), "ordering_key": "m", "timeout": 60},
                  *({"id": i, "url": target.url("/m"), "ordering_key": "m"} for i in ("B", "C", "D"))])
    wait_state(daemon, "R", "retrying")
    wait_for(lambda: len(target.received()) == 2, what="R's attempt and A's at the target")
    assert [daemon.job(i)["state"] for i in ("H", "H2", "R2", "B", "C", "D")] == \
        ["scheduled", "queued", "queued", "queued", "queued", "queued"]

    for job_id in ("H", "R", "C"):
        assert daemon.delete(f"/v1/jobs/{job_id}").status_code == 200, job_id
    wait_state(daemon, "H2", "succeeded")
    wait_state(daemon, "R2", "succeeded")
    target.control("/_open?gate=a")
    wait_state(daemon, "D", "succeeded")
    assert [r["key"] for r in target.received() if r["path"] == "/m"] == ["A", "B", "D"]
    others = [r["key"] for r in target.received() if r["path"] != "/m"]
    assert others[0] == "R" and sorted(others[1:]) == ["H2", "R2"], others
    wait_for(lambda: not any(daemon.status()["jobs"][s] for s in ("queued", "scheduled", "running", "retrying")),
             what="nothing left waiting")


@pytest.mark.parametrize("journal", BROKERS)
def test_a_replayed_job_keeps_its_place_in_its_keys_order(start_daemon, target, journal):
    # A dies, B runs (the target holds it), C waits. A replayed now was accepted before C:
    # it runs before C, after B.
    daemon = start_daemon(journal=journal)
    post(daemon, [{"id": "A", "url": target.url("/k", fail=1, fail_status=404), "ordering_key": "k"},
                  {"id": "B", "url": target.url("/k", gate="b"), "ordering_key": "k", "timeout": 60},
                  {"id": "C", "url": target.url("/k"), "ordering_key": "k"}])
    wait_state(daemon, "A", "dead")
    wait_for(lambda: len(target.received()) == 2, what="B at the target")
    response = daemon.session.post(f"{daemon.api}/v1/jobs/replay", json={"ids": ["A"]}, timeout=30)
    assert response.json()["ids"] == ["A"], response.text
    target.control("/_open?gate=b")
    wait_state(daemon, "C", "succeeded")
    assert wait_state(daemon, "A", "succeeded")["attempts"] == 1
    assert [r["key"] for r in target.received()] == ["A", "B", "A", "C"]
