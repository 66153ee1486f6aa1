"""Scheduled jobs, cancel and ordering keys on the Redis broker, fleet-wide: real daemons on
one real redis-server, a real target; and listing and replaying jobs through any daemon of
the fleet."""

from __future__ import annotations

import time
from collections import defaultdict

from support import metric, wait_for
from support.fleet import accepted_ids, assert_no_traceback, consumer_of, keys_received, wait_delivered


def test_a_delayed_job_is_scheduled_until_due_then_delivered(fleet, target):
    daemon = fleet.start("one")
    accepted_at = time.time()
    [job_id] = accepted_ids(daemon.post({"url": target.url(), "delay": 2}))
    assert daemon.job(job_id)["state"] == "scheduled"
    wait_delivered(target, {job_id}, 20, "the delayed job")
    [record] = target.received()
    assert record["t"] >= accepted_at + 2
    wait_for(lambda: daemon.job(job_id)["state"] == "succeeded", what="its success recorded")


def test_cancel_on_any_daemon_of_the_fleet(fleet, target):
    one = fleet.start("one", pool={"size": 1})
    [later] = accepted_ids(one.post({"id": "later", "url": target.url(), "delay": 3600}))
    # Its one worker held by a hanging job: the job after it waits in its hands, not started.
    accepted_ids(one.post({"id": "hang", "url": target.url(hang=1), "timeout": 3, "max_attempts": 1}))
    wait_for(lambda: target.count() == 1, what="the worker busy")
    [queued] = accepted_ids(one.post({"id": "queued", "url": target.url()}))
    wait_for(lambda: "queued" in fleet.pending_job_ids(consumer_of(one)), 10, "the queued job held by one")

    other = fleet.start("other")
    answer = other.session.delete(f"{other.api}/v1/jobs/{later}", timeout=10)
    assert (answer.status_code, answer.json()) == (200, {"id": "later", "state": "cancelled"})
    assert other.session.delete(f"{other.api}/v1/jobs/{queued}", timeout=10).status_code == 200
    running = other.session.delete(f"{other.api}/v1/jobs/hang", timeout=10)
    assert (running.status_code, running.json()["state"]) == (409, "running")
    assert other.session.delete(f"{other.api}/v1/jobs/nope", timeout=10).status_code == 404
    assert other.job("later")["state"] == other.job("queued")["state"] == "cancelled"
    assert fleet.redis.zcard(fleet.retry_set) == 0  # the scheduled job left the retry set
    assert metric(other, "gq_jobs_finished_total", outcome="cancelled") == 2

    # The daemon holding the cancelled job drops it when it would start it.
    wait_for(lambda: one.job("hang")["state"] == "dead", 20, "the hanging job timed out")
    [after] = accepted_ids(one.post({"id": "after", "url": target.url()}))
    wait_delivered(target, {after}, 20, "a job submitted after the cancelled one")
    wait_for(lambda: fleet.pending_total() == 0, 10, "nothing held")
    assert {r["key"] for r in target.received()} == {"hang", "after"}
    assert one.job("queued")["state"] == "cancelled"
    assert_no_traceback(one, other)


def test_a_job_nested_as_deep_as_intake_takes_is_delivered_and_looked_up(fleet, target):
    """A job's JSON is read again wherever it is looked up or run, a level deeper (the stream
    entry holds it): intake takes only what those readings can nest. A job nested 948 deep was
    accepted, then its look-up answered 500 (RecursionError)."""
    daemon = fleet.start("one")
    accepted = set()
    for depth in (500, *range(900, 1000, 4)):
        job_id = f"deep-{depth}"
        text = f'{{"id": "{job_id}", "url": "{target.url()}", "json": {"[" * depth + "]" * depth}}}'
        answer = daemon.post(text)
        if answer.status_code == 400:
            assert answer.json()["field"] == "body", answer.text
            continue
        accepted |= set(accepted_ids(answer))
    assert "deep-500" in accepted
    wait_delivered(target, accepted, 20, "the nested jobs")
    for job_id in sorted(accepted):
        found = daemon.get(f"/v1/jobs/{job_id}")
        assert found.status_code == 200, f"{job_id}: {found.status_code} {found.text[:200]}"
    assert_no_traceback(daemon)


def _listed(daemon, **query) -> tuple[list[str], str | None]:
    answer = daemon.get("/v1/jobs", params=query)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return [j["id"] for j in body["jobs"]], body["next"]


def _replayed(daemon, body: dict) -> dict:
    answer = daemon.session.post(f"{daemon.api}/v1/jobs/replay", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_jobs_listed_and_replayed_through_any_daemon_of_the_fleet(fleet, target):
    """One daemon accepts the jobs; the other lists them (filters, cursor pages) and replays a
    dead one by id, then by filter: the target receives it once more each time."""
    one, other = fleet.start("one"), fleet.start("other")
    local = target.url().replace("127.0.0.1", "localhost")
    accepted = []
    for job in ([{"id": f"l{n}", "url": target.url()} for n in range(5)]
                + [{"id": f"h{n}", "url": local} for n in range(2)]
                + [{"id": "d", "url": target.url(status=404)}]):
        accepted += accepted_ids(one.post(job))  # one by one: each accepted at a time of its own
    wait_delivered(target, set(accepted), 20, "every job")
    for job_id in accepted:
        wait_for(lambda: one.job(job_id)["state"] in ("succeeded", "dead"), 10, f"{job_id} finished")
    newest_first = accepted[::-1]

    assert _listed(other) == (newest_first, None)
    pages, cursor = [], None
    while True:
        ids, cursor = _listed(other, limit=3, **({"cursor": cursor} if cursor else {}))
        pages.append(ids)
        if cursor is None:
            break
    assert pages == [newest_first[0:3], newest_first[3:6], newest_first[6:8]]
    assert _listed(other, state="dead")[0] == ["d"]
    assert _listed(other, state="succeeded", host="localhost")[0] == ["h1", "h0"]
    since, until = other.job("l2")["accepted_at"], other.job("l4")["accepted_at"]
    assert _listed(other, since=since, until=until)[0] == ["l3", "l2"]

    # A dead job cannot be cancelled, as on the journal.
    refused = other.session.delete(f"{other.api}/v1/jobs/d", timeout=10)
    assert (refused.status_code, refused.json()["state"]) == (409, "dead")

    accepted_ids(one.post({"id": "s", "url": target.url(), "delay": 3600}))
    by_id = _replayed(other, {"ids": ["d", "s", "nope"]})
    assert (by_id["replayed"], by_id["ids"]) == (1, ["d"])
    assert by_id["skipped"] == [{"id": "s", "reason": "not finished: scheduled"},
                                {"id": "nope", "reason": "no such job"}]
    wait_for(lambda: keys_received(target)["d"] == 2, 20, "the replayed job received again")
    wait_for(lambda: other.job("d")["state"] == "dead", 10, "the replayed job dead again")
    assert fleet.redis.xlen(fleet.dead) == 1  # its first dead letter left with the replay

    by_filter = _replayed(other, {"state": "dead"})
    assert (by_filter["replayed"], by_filter["ids"]) == (1, ["d"])
    wait_for(lambda: keys_received(target)["d"] == 3, 20, "the job replayed by filter received again")
    wait_for(lambda: one.job("d")["state"] == "dead", 10, "dead again")
    time.sleep(1)
    assert keys_received(target)["d"] == 3  # once each time
    assert sum(keys_received(target).values()) == len(accepted) + 2
    assert _listed(one) == (["s", *newest_first], None)  # a replay keeps a job's place
    assert_no_traceback(one, other)


def _by_key(records: list[dict], key_of: dict[str, str]) -> dict[str, list[dict]]:
    per_key: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        if record["key"] in key_of:
            per_key[key_of[record["key"]]].append(record)
    return per_key


def test_ordering_keys_hold_across_two_daemons_one_killed(fleet, target):
    """300 jobs on 10 keys (every 7th fails its first attempt) and 100 jobs without a key,
    over two daemons; one is killed with -9 midway. Per key the target sees the jobs in the
    order accepted and never two at once; the jobs without a key are not held up."""
    broker = {"heartbeat": 0.3}
    daemons = [fleet.start(name, broker=broker, pool={"size": 8}) for name in ("a", "b")]
    key_of: dict[str, str] = {}
    order: dict[str, list[str]] = defaultdict(list)
    free: list[str] = []
    for batch in range(10):  # accepted in this order: batches in turn, to both daemons
        jobs = []
        for n in range(batch * 30, batch * 30 + 30):
            key = f"key{n % 10}"
            query = {"delay": 0.01, **({"fail": 1} if n % 7 == 0 else {})}
            jobs.append({"id": f"k{n}", "url": target.url(**query), "ordering_key": key})
            key_of[f"k{n}"] = key
            order[key].append(f"k{n}")
        jobs += [{"id": f"f{batch}-{m}", "url": target.url(delay=0.01)} for m in range(10)]
        free += [f"f{batch}-{m}" for m in range(10)]
        accepted_ids(daemons[batch % 2].post(jobs))

    wait_for(lambda: sum(1 for r in target.received() if r["key"] in key_of) >= 100, 60,
             "a third of the keyed jobs delivered")
    victim = daemons[1]
    victim.proc.kill()
    victim.proc.wait()

    wait_delivered(target, set(key_of) | set(free), 90, "every job, the victim's included")
    for job_id in key_of:
        wait_for(lambda: daemons[0].job(job_id)["state"] == "succeeded", 30, f"{job_id} succeeded")
    records = target.received()
    for key, served in _by_key(records, key_of).items():
        firsts = list(dict.fromkeys(r["key"] for r in served))  # each job at its first arrival
        assert firsts == order[key], key
        spans = sorted((r["t"], r["end"]) for r in served)
        overlaps = [(a, b) for a, b in zip(spans, spans[1:]) if b[0] < a[1]]
        assert not overlaps, (key, overlaps)
    # Not held up: every job without a key arrived before the keys' last jobs did.
    last_free = max(r["t"] for r in records if r["key"] in set(free))
    last_keyed = max(r["t"] for r in records if r["key"] in key_of)
    assert last_free < last_keyed
    wait_for(lambda: not fleet.redis.keys(f"{fleet.prefix}:head:*") + fleet.redis.keys(f"{fleet.prefix}:behind:*"),
             10, "every key let go")
    assert_no_traceback(daemons[0])


def test_a_dead_head_lets_its_key_go_and_a_replayed_one_runs_after(fleet, target):
    daemon = fleet.start("one")
    first = {"id": "first", "url": target.url(status=404), "ordering_key": "k"}
    rest = [{"id": f"next{n}", "url": target.url(), "ordering_key": "k"} for n in range(3)]
    accepted_ids(daemon.post([first, *rest]))
    wait_delivered(target, {"first", "next0", "next1", "next2"}, 20, "the key's jobs past its dead head")
    assert [r["key"] for r in target.received()] == ["first", "next0", "next1", "next2"]
    assert daemon.job("first")["state"] == "dead"
