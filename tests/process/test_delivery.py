"""Delivery rules a user can predict, against a real daemon and a real target.

With the defaults, a job's retries follow [retry] alone, job by job: no circuit
breaker, and a Retry-After delays its own job only. A drain starts no attempt that
its timeout could carry past the deadline, so a restart runs nothing twice. Time
the process did not run (SIGSTOP) is not charged to the target.
"""

from __future__ import annotations

import signal
import time
from collections import Counter

import requests

from support import Daemon, assert_clean_log, closed_port, wait_for

JOURNAL = {"path": "data/journal.sqlite3"}


def finished(daemon: Daemon) -> int:
    done = daemon.status()["finished"]
    return done["succeeded"] + done["dead"]


# -- with only [retry] configured

def test_flaky_jobs_are_each_delivered_after_exactly_their_own_retries(start_daemon, target):
    # Each job's first two attempts get 503, its third 200. No job's failures may hold back
    # another: 50 jobs, 150 attempts, done in about a second at this backoff.
    daemon = start_daemon(pool={"size": 20}, retry={"max_attempts": 5})
    started = time.monotonic()
    ids = daemon.post([{"url": target.url(fail=2)} for _ in range(50)]).json()["ids"]
    wait_for(lambda: finished(daemon) == 50, timeout=15, what="50 flaky jobs to finish")
    print(f"\n50 flaky jobs (503, 503, 200) delivered in {time.monotonic() - started:.2f}s")
    jobs = [daemon.job(i) for i in ids]
    assert [j["state"] for j in jobs] == ["succeeded"] * 50
    assert [j["attempts"] for j in jobs] == [3] * 50
    assert [[a["status"] for a in j["history"]] for j in jobs] == [[503, 503, 200]] * 50
    assert Counter(r["key"] for r in target.received()) == dict.fromkeys(ids, 3)
    assert "circuit" not in daemon.log()
    assert_clean_log(daemon)


def test_jobs_to_a_host_that_is_down_die_after_max_attempts(start_daemon):
    daemon = start_daemon(retry={"max_attempts": 3})
    url = f"http://127.0.0.1:{closed_port()}/hook"
    ids = daemon.post([{"url": url} for _ in range(5)]).json()["ids"]
    wait_for(lambda: daemon.status()["finished"]["dead"] == 5, timeout=15, what="5 dead letters")
    jobs = [daemon.job(i) for i in ids]
    assert all(j["state"] == "dead" and j["attempts"] == 3 for j in jobs), jobs
    assert all(j["dead_reason"] == "attempts used up (3)" for j in jobs)
    assert all(j["last_error"].startswith("connect: ") for j in jobs), [j["last_error"] for j in jobs]
    assert_clean_log(daemon)


def test_a_retry_after_delays_its_own_job_only(start_daemon, target):
    # A: 429 with Retry-After 30, honoured up to backoff_max = 3. B, on the same host: 503
    # twice, no Retry-After: its retries run at its own backoff while A still waits.
    daemon = start_daemon(retry={"max_attempts": 5, "backoff_max": 3})
    a = daemon.post({"id": "a", "url": target.url("/a", fail=1, fail_status=429, retry_after=30)}).json()["id"]
    wait_for(lambda: target.count() == 1, what="A's first attempt")
    b = daemon.post({"id": "b", "url": target.url("/b", fail=2)}).json()["id"]
    job_b = wait_for(lambda: (j := daemon.job(b))["state"] == "succeeded" and j, timeout=10, what="B to succeed")
    job_a = daemon.job(a)
    assert job_b["attempts"] == 3
    assert job_a["state"] == "retrying" and job_a["attempts"] == 1, job_a
    wait_for(lambda: daemon.job(a)["state"] == "succeeded", timeout=15, what="A to succeed")
    times = {path: [r["t"] for r in target.received() if r["path"] == path] for path in ("/a", "/b")}
    print(f"\nA waited {times['/a'][1] - times['/a'][0]:.2f}s (Retry-After 30, backoff_max 3); "
          f"B's three attempts took {times['/b'][2] - times['/b'][0]:.2f}s")
    assert max(times["/b"]) < times["/a"][1], "B waited for A's Retry-After"
    assert times["/a"][1] - times["/a"][0] >= 2.5, "A's Retry-After (capped at 3 s) was not honoured"
    assert_clean_log(daemon)


# -- stopping: a drain duplicates nothing it can avoid

def test_a_drain_shorter_than_a_job_timeout_starts_nothing_and_duplicates_nothing(start_daemon, target):
    # 50 in flight on a 500 ms target and 500 queued; a job may take 10 s, the drain 3 s: no
    # queued job can be sure to finish, so none is started; the 50 finish; a restart runs the
    # 500, each once.
    sections = {"journal": JOURNAL, "pool": {"size": 50}, "target": {"timeout": 10},
                "shutdown": {"drain_timeout": 3}}
    daemon = start_daemon(**sections)
    ids = daemon.post([{"url": target.url(delay=0.5)} for _ in range(550)]).json()["ids"]
    wait_for(lambda: target.count() >= 50, what="50 jobs in flight")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    log = daemon.log()
    assert "nothing left in flight; 500 queued left in the journal for the next start" in log, log[-2000:]
    assert target.count() == 50

    again = start_daemon(**sections)
    wait_for(lambda: again.status()["finished"]["succeeded"] == 500, timeout=60, what="the 500 after the restart")
    stats = target.stats()
    print(f"\ndrain 3 s, job timeout 10 s: {stats['count']} requests for {stats['keys']} jobs, "
          f"{stats['duplicates']} delivered twice")
    assert {r["key"] for r in target.received()} == set(ids)
    assert stats["duplicates"] == 0
    assert_clean_log(daemon)


def test_a_drain_longer_than_a_job_timeout_empties_the_queue_before_exit(start_daemon, target):
    daemon = start_daemon(journal=JOURNAL, pool={"size": 50}, target={"timeout": 2},
                          shutdown={"drain_timeout": 30})
    ids = daemon.post([{"url": target.url(delay=0.2)} for _ in range(300)]).json()["ids"]
    wait_for(lambda: target.count() >= 50, what="50 jobs in flight")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert {r["key"] for r in target.received()} == set(ids)
    assert target.stats()["duplicates"] == 0
    log = daemon.log()
    assert "nothing left in flight" in log and "not started" not in log, log[-2000:]


def test_jobs_parked_behind_a_rate_limit_do_not_hold_the_drain(start_daemon, target):
    sections = {"journal": JOURNAL, "destinations": {"rate": 2, "burst": 1}, "shutdown": {"drain_timeout": 60}}
    daemon = start_daemon(**sections)
    ids = daemon.post([{"url": target.url()} for _ in range(40)]).json()["ids"]
    wait_for(lambda: target.count() >= 2, what="the first rate-limited deliveries")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(timeout=20) == 0, "the drain waited for jobs parked behind the rate limit"
    delivered = target.count()
    assert delivered < 40

    again = start_daemon(journal=JOURNAL)
    wait_for(lambda: {r["key"] for r in target.received()} == set(ids), what="every job after the restart")
    wait_for(lambda: again.status()["jobs"]["queued"] == 0, what="the restart to settle")
    print(f"\nrate 2/s: {delivered} delivered before the drain ended, the rest after the restart")
    assert target.stats()["duplicates"] == 0


def test_jobs_behind_an_open_circuit_do_not_hold_the_drain(start_daemon, target):
    daemon = start_daemon(destinations={"breaker_failures": 2, "breaker_window": 0.3, "breaker_cooldown": 60},
                          retry={"max_attempts": 1000}, shutdown={"drain_timeout": 60})
    requests.post(f"{target.base}/_down", timeout=10).raise_for_status()
    daemon.post([{"url": target.url()} for _ in range(20)])
    wait_for(lambda: "circuit open" in daemon.log(), what="the circuit to open")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(timeout=20) == 0, "the drain waited for jobs behind an open circuit"
    assert "drained in" in daemon.log()


# -- time gq did not run is not the target's

def test_attempts_in_flight_while_gq_is_stopped_are_not_timeouts(start_daemon, target):
    # The target answers in 0.3 s; gq is stopped for 3 s, past the 2 s timeout. On waking
    # the answers are in the sockets: each attempt succeeds, none is charged a timeout.
    daemon = start_daemon(pool={"size": 20}, target={"timeout": 2})
    ids = daemon.post([{"url": target.url(delay=0.3)} for _ in range(20)]).json()["ids"]
    wait_for(lambda: target.count() == 20, what="20 attempts in flight")
    daemon.signal(signal.SIGSTOP)
    try:
        time.sleep(3)  # the scenario: a process stopped for longer than its attempts' timeout
    finally:
        daemon.signal(signal.SIGCONT)
    wait_for(lambda: daemon.status()["finished"]["succeeded"] == 20, what="20 jobs to succeed")
    jobs = [daemon.job(i) for i in ids]
    assert [j["attempts"] for j in jobs] == [1] * 20, [j["history"] for j in jobs if j["attempts"] != 1][:1]
    assert target.count() == 20
    assert_clean_log(daemon)
