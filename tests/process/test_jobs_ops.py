"""What an operator does with jobs, against a real daemon, a real target and a real journal:
jobs scheduled ahead (delay, run_at), cancelled, found page by page, and replayed in bulk.

Each test runs on the journal and, where it needs no restart, in memory too. Whether a job
was sent is read from the target's records; "never sent" is shown by a later job that is
sent (due after it, or behind it in the queue), never by waiting a while.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import requests

from support import NOT_KEPT, Daemon, Target, assert_clean_log, fetch, metric, records, wait_for, wait_state
from support.hostile_input import CRAFTED_CURSORS, crafted

JOURNAL = {"path": "data/journal.sqlite3"}
PAGE_BYTES = 2**20   # bytes of a page's answer at most (docs/jobs.md)
FULL = 64 * 1024     # a page is full when the next job would take it past PAGE_BYTES: jobs here are smaller
BROKERS = [pytest.param(JOURNAL, id="journal"), pytest.param({"path": ""}, id="memory")]


def state_of(daemon: Daemon, job_id: str) -> str:
    return daemon.job(job_id)["state"]


def sent(target: Target, job_id: str) -> int:
    return len(records(target, job_id))


def cancel(daemon: Daemon, job_id: str) -> tuple[int, dict]:
    response = daemon.delete(f"/v1/jobs/{job_id}")
    return response.status_code, response.json()


def cancelled_total(daemon: Daemon) -> float | None:
    return metric(daemon, "gq_jobs_finished_total", outcome="cancelled")


# -- scheduled jobs

@pytest.mark.parametrize("journal", BROKERS)
def test_a_delayed_job_is_scheduled_until_due_then_delivered(start_daemon, target, journal):
    daemon = start_daemon(journal=journal)
    before = time.time()
    job_id = daemon.post({"id": "later", "url": target.url("/later"), "delay": 2}).json()["id"]
    after = time.time()
    job = daemon.job(job_id)
    assert job["state"] == "scheduled", job
    assert before + 2 <= job["run_at"] <= after + 2 and job["next_attempt_at"] == job["run_at"], job
    assert daemon.status()["jobs"]["scheduled"] == 1

    looks = 0

    def delivered():
        nonlocal looks
        got = records(target, job_id)  # the target first: a job shown scheduled after it was sent is a bug
        state = state_of(daemon, job_id)
        if state == "scheduled":
            assert not got, f"sent while still scheduled: {got}"
            looks += 1
        return got
    got = wait_for(delivered, 15, "the delayed job to be delivered", every=0.1)
    assert looks > 0
    assert got[0]["t"] >= before + 2, "delivered before its delay was up"
    assert wait_state(daemon, job_id, "succeeded")["attempts"] == 1
    assert sent(target, job_id) == 1


@pytest.mark.parametrize("form", ["rfc3339", "unix"])
def test_a_job_an_hour_ahead_survives_kill_9_and_a_drain_and_can_be_cancelled(start_daemon, target, form):
    when = round(time.time() + 3600, 3)
    run_at = datetime.fromtimestamp(when, UTC).isoformat() if form == "rfc3339" else when
    daemon = start_daemon(journal=JOURNAL)
    job_id = daemon.post({"id": "ahead", "url": target.url("/ahead"), "run_at": run_at}).json()["id"]
    job = daemon.job(job_id)
    assert job["state"] == "scheduled" and job["run_at"] == pytest.approx(when, abs=1e-3), job

    daemon.signal(signal.SIGKILL)
    daemon.wait()
    again = start_daemon(journal=JOURNAL)
    job = again.job(job_id)
    assert job["state"] == "scheduled" and job["next_attempt_at"] == pytest.approx(when, abs=1e-3), job
    assert again.status()["jobs"]["scheduled"] == 1
    # A drain does not wait for it (shutdown.drain_timeout is 30 s): it stays in the journal.
    again.signal(signal.SIGTERM)
    assert again.wait(timeout=10) == 0
    again = start_daemon(journal=JOURNAL)
    assert again.job(job_id)["state"] == "scheduled"

    assert cancel(again, job_id) == (200, {"id": job_id, "state": "cancelled"})
    assert again.job(job_id)["state"] == "cancelled"
    assert cancelled_total(again) == 1
    assert again.status()["jobs"]["scheduled"] == 0 and again.status()["finished"]["cancelled"] == 1

    again.signal(signal.SIGTERM)
    assert again.wait() == 0
    last = start_daemon(journal=JOURNAL)
    assert last.job(job_id)["state"] == "cancelled"
    assert last.status()["jobs"]["scheduled"] == 0
    assert target.count() == 0


# -- cancelling

@pytest.mark.parametrize("journal", BROKERS)
def test_queued_scheduled_and_retrying_jobs_are_cancelled_and_never_sent_again(start_daemon, target, journal):
    # One worker. R's first attempt gets 503 and Retry-After 3: it sits retrying; T, sent
    # after it the same way, is due after it and shows when R would have run again. H holds
    # the worker at the target; Q1-Q3 queue behind it; S and S2 wait 2 s (S2 due later).
    daemon = start_daemon(journal=journal, pool={"size": 1}, retry={"backoff_max": 60})
    failing = {"fail": 100, "retry_after": 3}
    daemon.post({"id": "D", "url": target.url("/d", status=404)})
    wait_state(daemon, "D", "dead")
    daemon.post({"id": "R", "url": target.url("/r", **failing)})
    wait_state(daemon, "R", "retrying")
    assert cancel(daemon, "R") == (200, {"id": "R", "state": "cancelled"})  # at once: R is due 3 s on
    daemon.post({"id": "T", "url": target.url("/t", fail=1, retry_after=3)})
    wait_for(lambda: sent(target, "T") == 1, what="T's first attempt")
    daemon.post({"id": "H", "url": target.url("/h", gate="h")})
    wait_for(lambda: sent(target, "H") == 1, what="H at the target")
    daemon.post([{"id": q, "url": target.url("/q")} for q in ("Q1", "Q2", "Q3")])
    daemon.post([{"id": s, "url": target.url("/s"), "delay": 2} for s in ("S", "S2")])
    assert [state_of(daemon, i) for i in ("S", "H", "Q1")] == ["scheduled", "running", "queued"]

    assert cancel(daemon, "S") == (200, {"id": "S", "state": "cancelled"})
    assert cancel(daemon, "Q1") == (200, {"id": "Q1", "state": "cancelled"})
    status, body = cancel(daemon, "H")
    assert status == 409 and body["state"] == "running" and body["field"] == "id", body
    assert cancel(daemon, "D")[0] == 409 and cancel(daemon, "D")[1]["state"] == "dead"
    assert cancel(daemon, "Q1")[0] == 409 and cancel(daemon, "Q1")[1]["state"] == "cancelled"
    status, body = cancel(daemon, "no-such-job")
    assert status == 404 and body["field"] == "id", body
    assert [state_of(daemon, i) for i in ("R", "Q1", "S")] == ["cancelled"] * 3
    assert cancelled_total(daemon) == 3
    assert daemon.status()["finished"]["cancelled"] == 3

    target.control("/_open?gate=h")
    for job_id in ("H", "Q2", "Q3", "S2", "T"):
        wait_state(daemon, job_id, "succeeded")
    status, body = cancel(daemon, "H")
    assert status == 409 and body["state"] == "succeeded", body
    # Q2 and Q3 came after Q1, S2 was due after S, T's retry after R's: the cancelled ones
    # would have been sent before them.
    assert (sent(target, "Q1"), sent(target, "S"), sent(target, "R"), sent(target, "T")) == (0, 0, 1, 2)
    assert [state_of(daemon, i) for i in ("R", "Q1", "S")] == ["cancelled"] * 3

    if journal is JOURNAL:  # and after a restart, nothing of them runs either
        daemon.signal(signal.SIGKILL)
        daemon.wait()
        daemon = start_daemon(journal=journal, pool={"size": 1})
        daemon.post({"id": "after", "url": target.url("/after")})
        wait_state(daemon, "after", "succeeded")
        assert [state_of(daemon, i) for i in ("R", "Q1", "S")] == ["cancelled"] * 3
        assert (sent(target, "Q1"), sent(target, "S"), sent(target, "R")) == (0, 0, 1)


def test_a_cancel_answered_just_before_kill_9_holds_after_the_restart(start_daemon, target):
    daemon = start_daemon(journal=JOURNAL, pool={"size": 1})
    daemon.post({"id": "H", "url": target.url("/h", gate="h")})
    wait_for(lambda: sent(target, "H") == 1, what="H at the target")
    daemon.post([{"id": i, "url": target.url("/q")} for i in ("Q1", "Q2")])
    assert cancel(daemon, "Q1") == (200, {"id": "Q1", "state": "cancelled"})
    daemon.signal(signal.SIGKILL)  # at once: the 200 has promised Q1 is never sent
    daemon.wait()
    target.control("/_open?gate=h")
    again = start_daemon(journal=JOURNAL, pool={"size": 1})
    wait_state(again, "Q2", "succeeded")
    assert again.job("Q1")["state"] == "cancelled"
    assert sent(target, "Q1") == 0


def test_queued_jobs_are_cancelled_in_memory_and_in_the_file_alike(start_daemon, target):
    # 300 queued behind H: a few in the queue, some read ahead into memory, the rest in the file.
    daemon = start_daemon(journal=JOURNAL, pool={"size": 1}, queue={"maxsize": 4})
    daemon.post({"id": "H", "url": target.url("/h", gate="h")})
    wait_for(lambda: sent(target, "H") == 1, what="H at the target")
    queued = [f"q{n}" for n in range(300)]
    for start in range(0, 300, 100):
        daemon.post([{"id": i, "url": target.url("/q")} for i in queued[start:start + 100]])
    cancelled = queued[::3]
    for job_id in cancelled:
        assert cancel(daemon, job_id) == (200, {"id": job_id, "state": "cancelled"})
    assert daemon.status()["jobs"]["queued"] == 200
    target.control("/_open?gate=h")
    wait_for(lambda: daemon.status()["finished"]["succeeded"] == 201, what="the others delivered")
    assert sorted(r["key"] for r in target.received()) == sorted(["H"] + [i for i in queued if i not in cancelled])
    assert {state_of(daemon, i) for i in cancelled} == {"cancelled"}
    assert cancelled_total(daemon) == 100
    assert daemon.status()["jobs"] == {"queued": 0, "scheduled": 0, "running": 0, "retrying": 0, "dead": 0}


# -- finding

SECRET = "Bearer find-me-not-0451"
KINDS = {"ok": 2000, "ok-local": 500, "dead": 250, "dead-local": 250, "later": 2500, "later-local": 1500,
         "blocked": 2974, "retrying": 20, "running": 5}  # and the head of the blocked ones: 10,000
CANCELLED = 200      # of the `later` jobs


def listing(daemon: Daemon, **params) -> tuple[list[dict], list[str]]:
    """Every job GET /v1/jobs lists with `params`, page after page by `next`, and each
    page's raw text."""
    jobs: list[dict] = []
    texts: list[str] = []
    limit = int(params.get("limit", 100))
    cursor = None
    while True:
        # A space as %20: a '+' in a query stands for itself (gq reads it so)
        response = fetch(daemon, "/v1/jobs?" + urlencode({**params, **({"cursor": cursor} if cursor else {})},
                                                          quote_via=quote))
        assert response.status_code == 200, response.text
        page = response.json()
        jobs += page["jobs"]
        texts.append(response.text)
        cursor = page["next"]
        if cursor is None:
            assert len(page["jobs"]) <= limit
            return jobs, texts
        # A page short of its limit has a next only when its answer is full (PAGE_BYTES).
        assert len(page["jobs"]) == limit or len(response.content) > PAGE_BYTES - FULL, "a short page has a next"


def listed(daemon: Daemon, **params) -> list[str]:
    return [job["id"] for job in listing(daemon, **params)[0]]


def mixed_jobs(target: Target) -> tuple[list[dict], dict[str, str], dict[str, str]]:
    """10,000 jobs in a shuffled order, with the state each will settle in and its host.
    The first is scheduled an hour ahead and holds the ordering key of the `blocked` ones
    (listed as queued)."""
    rng = random.Random(1729)
    kinds = [kind for kind, n in KINDS.items() for _ in range(n)]
    rng.shuffle(kinds)
    local = f"http://localhost:{target.port}"
    jobs = [{"id": "head", "url": target.url("/f"), "delay": 3600, "ordering_key": "held"}]
    states, hosts_ = {"head": "scheduled"}, {"head": "127.0.0.1"}
    for n, kind in enumerate(kinds):
        job_id = f"f{n}-{kind}"
        base = local if kind.endswith("-local") else target.base
        job: dict = {"id": job_id, "url": f"{base}/f"}
        if kind.startswith("ok"):
            states[job_id] = "succeeded"
            if n % 10 == 0:
                job["headers"] = {"Authorization": SECRET}
        elif kind.startswith("dead"):
            job["url"] += "?status=404"
            states[job_id] = "dead"
        elif kind.startswith("later"):
            job["delay"] = 3600
            states[job_id] = "scheduled"
        elif kind == "blocked":
            job["ordering_key"] = "held"
            states[job_id] = "queued"
        elif kind == "retrying":
            job["url"] += "?fail=1000000&retry_after=3600"
            states[job_id] = "retrying"
        else:
            job["url"] += "?gate=never"
            states[job_id] = "running"
        jobs.append(job)
        hosts_[job_id] = "localhost" if kind.endswith("-local") else "127.0.0.1"
    return jobs, states, hosts_


@pytest.mark.parametrize("journal", BROKERS)
def test_ten_thousand_jobs_are_found_by_state_host_and_time_each_once_newest_first(start_daemon, target, journal):
    daemon = start_daemon(journal=journal, pool={"size": 100}, queue={"maxsize": 10_000},
                          retry={"backoff_max": 3600})
    jobs, states, host = mixed_jobs(target)
    for start in range(0, len(jobs), 500):
        response = daemon.post(jobs[start:start + 500])
        assert response.status_code == 202, response.text
    ids = [job["id"] for job in jobs]
    later = [i for i in ids[1:] if states[i] == "scheduled"]
    for job_id in random.Random(5).sample(later, CANCELLED):
        assert cancel(daemon, job_id)[0] == 200
        states[job_id] = "cancelled"
    expected = Counter(states.values())
    wait_for(lambda: daemon.status()["finished"]["succeeded"] == expected["succeeded"]
             and daemon.status()["jobs"] == {"queued": expected["queued"], "scheduled": expected["scheduled"],
                                             "running": expected["running"], "retrying": expected["retrying"],
                                             "dead": expected["dead"]}, 60, "the jobs to settle", every=0.2)
    newest_first = ids[::-1]

    # Everything, 137 at a time: each job once, newest first, secrets redacted.
    everything: list[dict] = []
    texts: list[str] = []

    def settled():  # the journal lists jobs as last written: the last outcomes may be on their way
        nonlocal everything, texts
        everything, texts = listing(daemon, limit=137)
        return {j["id"]: j["state"] for j in everything} == states
    wait_for(settled, 20, "the listing to show every job as it settled", every=0.5)
    assert [j["id"] for j in everything] == newest_first
    assert len(texts) == -(-len(ids) // 137)
    assert not any(SECRET in text for text in texts)
    shown = {j["id"]: j["request"]["headers"].get("Authorization") for j in everything}
    assert {shown[j["id"]] for j in jobs if "headers" in j} == {"<redacted>"}

    for state in expected:
        assert listed(daemon, state=state, limit=1000) == [i for i in newest_first if states[i] == state], state
    assert listed(daemon, state="scheduled", limit=137) == [i for i in newest_first if states[i] == "scheduled"]
    for name in ("127.0.0.1", "localhost"):
        assert listed(daemon, host=name, limit=1000) == [i for i in newest_first if host[i] == name], name
    assert listed(daemon, host="LocalHost.", limit=1000) == listed(daemon, host="localhost", limit=1000)
    assert listed(daemon, host="localhost", state="dead", limit=137) == [
        i for i in newest_first if host[i] == "localhost" and states[i] == "dead"]

    at = {j["id"]: j["accepted_at"] for j in everything}
    since, until = at[ids[2500]], at[ids[7500]]
    assert listed(daemon, since=repr(since), until=repr(until), limit=1000) == [
        i for i in newest_first if since <= at[i] < until]
    assert listed(daemon, since=repr(since), state="succeeded", host="127.0.0.1", limit=137) == [
        i for i in newest_first if since <= at[i] and states[i] == "succeeded" and host[i] == "127.0.0.1"]
    # An RFC 3339 bound, between two requests' jobs.
    gap = next(n for n in range(5000, len(ids)) if at[ids[n]] < at[ids[n + 1]])
    moment = (at[ids[gap]] + at[ids[gap + 1]]) / 2
    assert listed(daemon, until=datetime.fromtimestamp(moment, UTC).isoformat(), limit=1000) == newest_first[-gap - 1:]
    assert listed(daemon, since=repr(moment), until=repr(moment)) == []

    # A '+' in a query stands for itself: an RFC 3339 offset, not a space.
    assert listed(daemon, until="2030-01-01T00:00:00+00:00", since="2000-01-01T01:00:00+01:00",
                  limit=1000) == newest_first
    assert fetch(daemon, "/v1/jobs?since=2100-01-01T00:00:00+00:00").json() == {"jobs": [], "next": None}

    for query, field in [("state=bogus", "state"), ("limit=0", "limit"), ("limit=1001", "limit"),
                         ("limit=ten", "limit"), ("since=yesterday", "since"),
                         ("until=2030-01-01T00:00:00", "until"), ("cursor=not-a-cursor", "cursor"),
                         ("host=", "host"), ("colour=red", "colour"), ("state=dead&state=queued", "state")]:
        response = fetch(daemon, f"/v1/jobs?{query}")
        assert response.status_code == 400 and response.json()["field"] == field, (query, response.text)
        assert response.json()["error"].startswith(f"{field}: "), response.text


@pytest.mark.parametrize("journal", BROKERS)
def test_jobs_are_listed_and_replayed_by_ordering_key_and_id_prefix(start_daemon, target, journal):
    daemon = start_daemon(journal=journal, retry={"max_attempts": 1})
    jobs = [{"id": f"inv+{n}", "url": target.url("/i", status=404), "ordering_key": "tenant é"} for n in range(5)]
    jobs += [{"id": f"invoice-{n}", "url": target.url("/o"), "json": {"n": n}} for n in range(3)]
    for job in jobs:  # one request each: each its own moment
        daemon.post(job)
    for job in jobs:
        wait_state(daemon, job["id"], "dead" if job["id"].startswith("inv+") else "succeeded")
    keyed = [f"inv+{n}" for n in range(4, -1, -1)]
    assert listed(daemon, ordering_key="tenant é", limit=2) == keyed
    assert listed(daemon, id_prefix="inv", limit=3) == [f"invoice-{n}" for n in (2, 1, 0)] + keyed
    assert listed(daemon, id_prefix="inv+", ordering_key="tenant é", state="dead", limit=4) == keyed
    assert listed(daemon, id_prefix="invoice-1") == ["invoice-1"]
    assert listed(daemon, ordering_key="tenant") == listed(daemon, id_prefix="x") == []
    [shown] = fetch(daemon, "/v1/jobs?id_prefix=invoice-2").json()["jobs"]
    assert shown["request"]["payload"] == "not kept" and shown["history"][0]["outcome"] == "success"
    assert fetch(daemon, "/v1/jobs/inv%2B0").json()["history"][0]["outcome"] == "fail"

    body = replay(daemon, {"state": "dead", "ordering_key": "tenant é", "id_prefix": "inv+3"}).json()
    assert body["ids"] == ["inv+3"]
    wait_state(daemon, "inv+3", "dead")
    assert sent(target, "inv+3") == 2 and sent(target, "inv+2") == 1

    for query, field in [("ordering_key=", "ordering_key"), ("id_prefix=", "id_prefix"),
                         (f"ordering_key={'k' * 257}", "ordering_key"), (f"id_prefix={'i' * 257}", "id_prefix"),
                         ("id_prefix=a&id_prefix=b", "id_prefix")]:
        response = fetch(daemon, f"/v1/jobs?{query}")
        assert response.status_code == 400 and response.json()["field"] == field, (query, response.text)
        assert response.json()["error"].startswith(f"{field}: "), response.text
    for request, field in [({"state": "dead", "ordering_key": 5}, "ordering_key"),
                           ({"state": "dead", "id_prefix": ""}, "id_prefix"),
                           ({"state": "dead", "id_prefix": "\ud800"}, "id_prefix")]:
        response = replay(daemon, request)
        assert response.status_code == 400 and response.json()["field"] == field, (request, response.text)


# -- what a client crafts

@pytest.mark.parametrize("journal", BROKERS)
def test_crafted_cursors_and_values_are_refused_with_400_naming_them(start_daemon, target, journal):
    """Cursors are gq's to write: any other, in a query or a replay, is a 400 naming `cursor`
    (huge integers and deep nesting answered 500: OverflowError, RecursionError). So are
    texts that are not Unicode in a replay (a lone surrogate: 500 on the journal)."""
    daemon = start_daemon(journal=journal)
    daemon.post([{"id": f"crafted-{n}", "url": target.url("/crafted", status=404)} for n in range(3)])
    for n in range(3):
        wait_state(daemon, f"crafted-{n}", "dead")
    refusals = [(fetch(daemon, "/v1/jobs?" + urlencode({"cursor": crafted(text)})), "cursor", name)
                for name, text in CRAFTED_CURSORS.items()]
    bodies = [({"state": "dead", "cursor": crafted(text)}, "cursor") for text in CRAFTED_CURSORS.values()]
    bodies += [({"state": "dead", "cursor": crafted("[" * 100_000 + "]" * 100_000)}, "cursor"),
               ({"state": "dead", "cursor": 5}, "cursor"), ({"state": "dead", "cursor": [1.0, 1]}, "cursor"),
               ({"ids": ["\ud800"]}, "ids"), ({"state": "dead", "host": "\ud800"}, "host")]
    refusals += [(replay(daemon, body), field, str(body)[:80]) for body, field in bodies]
    for response, field, name in refusals:
        assert response.status_code == 400, f"{name}: {response.status_code} {response.text[:200]}"
        assert response.json()["field"] == field and response.json()["error"].startswith(f"{field}: "), name
    assert [j["id"] for j in fetch(daemon, "/v1/jobs").json()["jobs"]] == [f"crafted-{n}" for n in (2, 1, 0)]
    assert_clean_log(daemon)


# -- replaying

def replay(daemon: Daemon, request: Any) -> requests.Response:
    return daemon.session.post(f"{daemon.api}/v1/jobs/replay", json=request, timeout=30)


def replay_all(daemon: Daemon, request: dict) -> tuple[list[str], int]:
    """Replay by filter, following `next` to the end: the ids replayed, and in how many pages."""
    ids: list[str] = []
    pages = 0
    while True:
        response = replay(daemon, request)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["replayed"] == len(body["ids"]) and body["skipped"] == [], body
        ids += body["ids"]
        pages += 1
        if body["next"] is None:
            return ids, pages
        request = {**request, "cursor": body["next"]}


def runs_again(daemon: Daemon, target: Target, job_id: str, requests_: int) -> dict:
    """The job once the target has had `requests_` of it and its last one has succeeded."""
    wait_for(lambda: sent(target, job_id) >= requests_, what=f"{job_id} to be sent again")
    job = wait_state(daemon, job_id, "succeeded")
    assert sent(target, job_id) == requests_
    return job


@pytest.mark.parametrize("journal", BROKERS)
def test_dead_and_succeeded_jobs_are_replayed_by_filter_page_by_page_with_attempts_reset(
        start_daemon, target, journal):
    daemon = start_daemon(journal=journal, pool={"size": 20})
    dead = [f"dead-{n}" for n in range(30)]   # 404 the first time, then 200
    daemon.post([{"id": i, "url": target.url("/dead", fail=1, fail_status=404)} for i in dead])
    local = [f"local-{n}" for n in range(5)]  # the same, on another host
    daemon.post([{"id": i, "url": f"http://localhost:{target.port}/dead?fail=1&fail_status=404"} for i in local])
    old = [f"old-{n}" for n in range(10)]
    daemon.post([{"id": i, "url": target.url("/old")} for i in old])
    for job_id in old:
        wait_state(daemon, job_id, "succeeded")
    since = time.time()  # after the old jobs' acceptance, before the new ones'
    new = [f"new-{n}" for n in range(20)]    # odd ones: a 503 before their first success
    daemon.post([{"id": i, "url": target.url("/new", fail=n % 2)} for n, i in enumerate(new)])
    for n, job_id in enumerate(new):
        assert wait_state(daemon, job_id, "succeeded")["attempts"] == 1 + n % 2
    for job_id in dead + local:
        assert wait_state(daemon, job_id, "dead")["attempts"] == 1
    daemon.post([{"id": "sched", "url": target.url("/s"), "delay": 3600},
                 {"id": "held", "url": target.url("/h", gate="never")},
                 {"id": "called-off", "url": target.url("/c"), "delay": 3600}])
    wait_for(lambda: sent(target, "held") == 1, what="held at the target")
    assert cancel(daemon, "called-off")[0] == 200

    assert sorted(replay_all(daemon, {"state": "dead", "host": "localhost"})[0]) == local
    for job_id in local:
        runs_again(daemon, target, job_id, 2)
    replayed, pages = replay_all(daemon, {"state": "dead", "limit": 7})
    assert sorted(replayed) == sorted(dead) and pages == 5
    for job_id in dead:
        job = runs_again(daemon, target, job_id, 2)
        assert job["attempts"] == 1 and job["dead_reason"] is None, job

    replayed, pages = replay_all(daemon, {"state": "succeeded", "since": since, "limit": 8})
    assert sorted(replayed) == sorted(new) and pages == 3
    for n, job_id in enumerate(new):
        assert runs_again(daemon, target, job_id, 2 + n % 2)["attempts"] == 1
    assert {sent(target, i) for i in old} == {1}

    response = replay(daemon, {"ids": ["old-0", "no-such-job", "sched", "held", "old-0", "called-off"]})
    assert response.status_code == 200
    assert response.json() == {"replayed": 1, "ids": ["old-0"], "next": None, "skipped": [
        {"id": "no-such-job", "reason": "no such job"},
        {"id": "sched", "reason": "not finished: scheduled"},
        {"id": "held", "reason": "not finished: running"},
        {"id": "called-off", "reason": "cancelled (only a dead or succeeded job can be replayed)"}]}
    assert runs_again(daemon, target, "old-0", 2)["attempts"] == 1
    assert (daemon.job("sched")["state"], daemon.job("held")["state"]) == ("scheduled", "running")

    for body, field in [({"state": "queued"}, "state"), ({}, "state"), ({"ids": []}, "ids"),
                        ({"ids": ["old-1"], "state": "dead"}, "ids"), ({"state": "dead", "limit": 0}, "limit"),
                        ({"state": "dead", "cursor": "zz"}, "cursor"), ({"colour": 1}, "colour"),
                        ({"state": "dead", "since": "soon"}, "since")]:
        response = replay(daemon, body)
        assert response.status_code == 400 and response.json()["field"] == field, (body, response.text)
    response = daemon.session.post(f"{daemon.api}/v1/jobs/replay", data="{}", timeout=30,
                                   headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert {sent(target, i) for i in old[1:]} == {1}


@pytest.mark.parametrize("keep", [True, False], ids=["payload-kept", "payload-dropped"])
def test_a_succeeded_job_is_replayed_with_its_body_only_when_its_payload_is_kept(start_daemon, target, keep):
    daemon = start_daemon(journal={**JOURNAL, "keep_succeeded_payload": keep})
    paid = [f"paid-{n}" for n in range(3)]  # a body each; the newest last
    daemon.post([*({"id": i, "url": target.url(), "json": {"order": i}} for i in paid),
                 {"id": "bodiless", "url": target.url(), "method": "GET"}])
    for job_id in (*paid, "bodiless"):
        wait_state(daemon, job_id, "succeeded")

    # By ids: each one not replayed is named once, with why.
    body = replay(daemon, {"ids": ["paid-0", "bodiless", "nope", "paid-0"]}).json()
    if keep:
        assert (body["ids"], body["skipped"]) == (["paid-0", "bodiless"], [{"id": "nope", "reason": "no such job"}])
        for job_id in ("paid-0", "bodiless"):
            runs_again(daemon, target, job_id, 2)
    else:  # its body dropped at success: sending it again would send something else
        assert (body["ids"], body["skipped"]) == (["bodiless"], [{"id": "paid-0", "reason": NOT_KEPT},
                                                                 {"id": "nope", "reason": "no such job"}])
        runs_again(daemon, target, "bodiless", 2)

    # By filter: the jobs it found and passed over are named too, newest first.
    body = replay(daemon, {"state": "succeeded"}).json()
    if keep:
        assert (body["ids"], body["skipped"]) == ([*paid, "bodiless"], [])
        for job_id, times in [("paid-0", 3), ("paid-1", 2), ("paid-2", 2), ("bodiless", 3)]:
            runs_again(daemon, target, job_id, times)
        assert [r["body"] for r in records(target, "paid-0")] == ['{"order":"paid-0"}'] * 3
    else:
        assert (body["ids"], body["skipped"]) == (["bodiless"], [{"id": i, "reason": NOT_KEPT} for i in paid[::-1]])
        runs_again(daemon, target, "bodiless", 3)
        assert [sent(target, i) for i in paid] == [1, 1, 1]
