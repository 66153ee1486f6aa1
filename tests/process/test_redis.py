"""The Redis Streams broker end to end: several real gq daemons share one real redis-server.

Each test has a redis-server of its own (tests/support/redis_server.py: own port and directory,
AOF on) and its own key prefix, real `gq run` processes and a real target. What is
checked is what an operator relies on: every accepted job reaches the target (at least
once; twice only for the attempts a dead daemon had in flight), work is shared, a daemon
that dies or drains leaves nothing behind in the group, Redis may restart under load,
idempotency, retries and dead letters are fleet-wide.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from gq.core.lifecycle import LEDGER
from support import Daemon, closed_port, metric, run_gq, to_toml, wait_for
from support.fleet import (
    CLAIM_IDLE,
    Submitter,
    accepted_ids,
    assert_no_traceback,
    consumer_of,
    keys_received,
    wait_delivered,
)
from support.redis_server import RedisServer

# -- looking at daemons and the target

def succeeded(daemon: Daemon) -> int:
    return int(metric(daemon, "gq_jobs_finished_total", outcome="succeeded") or 0)


def ready(daemon: Daemon) -> int:
    return daemon.get("/readyz").status_code


def redis_connections(daemon: Daemon, port: int) -> set[int]:
    """The local ports of the daemon's established connections to the Redis server on `port`."""
    return {c.laddr.port for c in psutil.Process(daemon.proc.pid).net_connections("tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED}


def unread_by_redis(daemon: Daemon, port: int) -> int:
    """The most bytes that one of the daemon's connections to Redis holds unread by Redis
    (Redis's side of each socket, from /proc/net/tcp: its receive queue)."""
    ports = {c.laddr.port for c in psutil.Process(daemon.proc.pid).net_connections("tcp")
             if c.raddr and c.raddr.port == port}
    most = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, rx_queue = fields[1], fields[2], int(fields[4].split(":")[1], 16)
            if int(local.rsplit(":", 1)[1], 16) == port and int(remote.rsplit(":", 1)[1], 16) in ports:
                most = max(most, rx_queue)
    return most


def pause_redis_as_it_blocks(server: RedisServer, consumer: str) -> None:
    """SIGSTOP Redis right after it took in an XREADGROUP of `consumer` (which then waits
    inside Redis for new entries, for most of its BLOCK time)."""
    client = server.client()
    deadline = time.monotonic() + 10
    try:
        with client.monitor() as monitor:
            for event in monitor.listen():
                if event["command"].startswith("XREADGROUP") and f" {consumer} " in event["command"]:
                    server.proc.send_signal(signal.SIGSTOP)
                    return
                if time.monotonic() > deadline:
                    pytest.fail(f"no XREADGROUP from {consumer} within 10s")
    finally:
        client.close()


def job(target, n: int | str = "", **query: Any) -> dict[str, Any]:
    return {"url": target.url("/hook", **query), "json": {"n": n}}


# -- intake

def test_new_jobs_are_answered_202(fleet, target):
    # CONTRACT.md: 202 for accepted jobs; 200 only when every job of the request was a duplicate.
    a, b = (fleet.start(name, pool={"size": 2}) for name in ("a", "b"))
    hook = target.url("/hook")
    one = a.post({"id": "new-one", "url": hook})
    batch = b.post([{"id": "new-two", "url": hook}, {"id": "new-three", "url": hook}])
    mixed = a.post([{"id": "new-one", "url": hook}, {"id": "new-four", "url": hook}])
    known = b.post({"id": "new-two", "url": hook})
    assert [one.json(), batch.json(), mixed.json(), known.json()] == [
        {"id": "new-one"}, {"ids": ["new-two", "new-three"]},
        {"ids": ["new-one", "new-four"], "duplicates": ["new-one"]}, {"id": "new-two", "duplicates": ["new-two"]}]
    wait_delivered(target, {"new-one", "new-two", "new-three", "new-four"}, 20, "every job delivered")
    assert target.stats()["duplicates"] == 0
    statuses = {"new job": one.status_code, "new batch": batch.status_code,
                "batch with one new job": mixed.status_code, "only a duplicate": known.status_code}
    assert statuses == {"new job": 202, "new batch": 202, "batch with one new job": 202, "only a duplicate": 200}


# -- many daemons, one stream

def test_three_daemons_share_5000_jobs(fleet, target):
    daemons = [fleet.start(f"d{i}", pool={"size": 16}, queue={"maxsize": 32}) for i in range(3)]
    ids: list[str] = []
    started = time.monotonic()
    for batch in range(50):   # batches of 100 through each daemon in turn
        daemon = daemons[batch % 3]
        ids += accepted_ids(daemon.post([job(target, batch * 100 + i) for i in range(100)]))
    assert len(set(ids)) == 5000
    keys = wait_delivered(target, set(ids), 120, "5,000 jobs delivered")
    assert set(keys) == set(ids)
    wait_for(lambda: sum(succeeded(d) for d in daemons) >= 5000, 20, "every success counted")
    split = [succeeded(d) for d in daemons]
    stats = target.stats()
    print(f"\n5,000 jobs over 3 daemons in {time.monotonic() - started:.1f}s: "
          f"split {split} ({', '.join(f'{100 * n / 5000:.1f}%' for n in split)}), "
          f"duplicates {stats['duplicates']}")
    assert sum(split) == 5000 + stats["duplicates"]
    assert stats["duplicates"] == 0, "no daemon died, yet some jobs ran twice"
    for daemon, share in zip(daemons, split):
        assert share > 500, f"{daemon.name} did only {share} of 5,000 jobs: {split}"
    # The stream holds only unfinished work: it is empty once all is done, for every daemon's gauges.
    wait_for(lambda: fleet.redis.xlen(fleet.stream) == 0 and fleet.pending_total() == 0, 10, "an empty stream")
    for daemon in daemons:
        wait_for(lambda: metric(daemon, "gq_broker_stream_length") == 0
              and metric(daemon, "gq_broker_pending") == 0, 10, f"{daemon.name}'s broker gauges at 0")
    assert_no_traceback(*daemons)


def test_jobs_of_a_killed_daemon_are_taken_over(fleet, target):
    survivor = fleet.start("survivor", pool={"size": 4}, queue={"maxsize": 6})
    victim = fleet.start("victim", pool={"size": 4}, queue={"maxsize": 6})
    victim_consumer = consumer_of(victim)
    ids = accepted_ids(victim.post([job(target, i, delay=0.3) for i in range(40)]))
    ids += accepted_ids(survivor.post([job(target, i, delay=0.3) for i in range(40, 80)]))

    wait_for(lambda: (s := victim.status())["pool_busy"] == 4 and s["queue_depth"] >= 1, 20,
          "the victim with jobs in flight and jobs queued locally")
    victim.proc.kill()
    victim.proc.wait()
    killed_at = time.monotonic()
    held = fleet.pending_job_ids(victim_consumer)
    print(f"\nkill -9: the victim held {len(held)} job(s) in the group at its death")
    assert len(held) >= 5, held  # 4 in flight, at least 1 queued locally

    keys = wait_delivered(target, set(ids), 40, "every job delivered, the victim's included")
    taken_over = time.monotonic() - killed_at
    stats = target.stats()
    twice = {k: n for k, n in keys.items() if n > 1}
    print(f"kill -9: all 80 jobs delivered {taken_over:.1f}s after the kill; duplicates {stats['duplicates']} "
          f"({sorted(twice)})")
    assert re.search(r"took over \d+ job\(s\) idle", survivor.log()), survivor.log()[-3000:]
    # Only what the victim held can run twice: its attempts in flight, or finished but not yet settled.
    assert set(twice) <= set(held), (twice, held)
    assert stats["duplicates"] <= len(held)
    for job_id in held:
        wait_for(lambda: survivor.job(job_id)["state"] == "succeeded", 10, f"{job_id} succeeded")
    # The attempts the victim had under way are settled by the survivor as of unknown outcome:
    # the jobs show them, the survivor counts them, and only those jobs were delivered twice.
    unknown = {job_id: n for job_id in held if (n := survivor.job(job_id)["unknown_attempts"])}
    assert unknown and set(twice) <= set(unknown), (twice, unknown)
    assert metric(survivor, "gq_attempts_unknown_total") == sum(unknown.values()), unknown
    # Nothing stays pending for the dead consumer, and the fleet forgets it.
    wait_for(lambda: victim_consumer not in fleet.consumers(), 20, "the dead consumer removed from the group")
    wait_for(lambda: fleet.pending_total() == 0 and fleet.redis.xlen(fleet.stream) == 0, 10, "an empty stream")
    # The fleet's ledger: every job accepted once, each succeeded, whatever the kill did.
    assert survivor.status()["ledger"] == {**dict.fromkeys(LEDGER, 0), "accepted": 80, "succeeded": 80}
    assert survivor.proc.poll() is None
    assert_no_traceback(survivor)


def test_redis_restart_under_load_loses_nothing(fleet, redis_server, target):
    daemons = [fleet.start(f"d{i}", pool={"size": 4}, queue={"maxsize": 8}) for i in range(2)]
    submitter = Submitter(daemons, target)
    submitter.start()
    try:
        wait_for(lambda: len(submitter.accepted) >= 100 and target.count() >= 50, 30,
              "jobs accepted and being delivered")
        assert redis_server.stop(signal.SIGTERM) == 0
        down = time.monotonic()
        for daemon in daemons:
            wait_for(lambda: ready(daemon) == 503, 15, f"{daemon.name}'s /readyz 503 while Redis is down")
        wait_for(lambda: sum(submitter.refused.values()) >= 10, 15, "intake refusing while Redis is down")
        restart = time.monotonic()
        redis_server.start()  # same port, same directory: the AOF is loaded again
        for daemon in daemons:
            wait_for(lambda: ready(daemon) == 200, 20, f"{daemon.name}'s /readyz 200 once Redis is back")
        submitter.more(100, 30, "jobs accepted after the restart")
    finally:
        submitter.stop()
    ids = submitter.ids()
    keys = wait_delivered(target, ids, 60, "every accepted job delivered after the restart")
    stats = target.stats()
    while_down = [a for a in submitter.answers if a[0] > down and a[1] < restart]
    print(f"\nRedis restart: {len(submitter.accepted)} jobs accepted, {len(submitter.known)} more known from "
          f"a try whose answer was lost, {len(while_down)} request(s) accepted while Redis was down, "
          f"refusals {dict(submitter.refused)}; duplicates {stats['duplicates']}")
    assert while_down == [], "jobs accepted while Redis was down"
    assert set(keys) == ids, sorted(set(keys) - ids)[:10]
    for daemon in daemons:
        assert daemon.proc.poll() is None, daemon.log()[-3000:]
        log = daemon.log()
        assert "retrying with backoff" in log and "Redis reachable again" in log, log[-3000:]
    wait_for(lambda: fleet.pending_total() == 0 and fleet.redis.xlen(fleet.stream) == 0, 20, "an empty stream")
    assert_no_traceback(*daemons)


def test_sigterm_drains_one_daemon_while_the_others_go_on(fleet, target):
    a, b, c = (fleet.start(name, pool={"size": 3}, queue={"maxsize": 6}) for name in ("a", "b", "c"))
    c_consumer = consumer_of(c)
    ids: list[str] = []
    for n, daemon in enumerate((a, b, c)):
        ids += accepted_ids(daemon.post([job(target, f"{n}-{i}", delay=0.2) for i in range(30)]))
    wait_for(lambda: c.status()["pool_busy"] == 3, 20, "c busy")
    assert fleet.consumers().get(c_consumer, 0) > 0
    c.signal(signal.SIGTERM)
    for n, daemon in enumerate((a, b, a, b)):  # the others go on taking jobs meanwhile
        ids += accepted_ids(daemon.post([job(target, f"more-{n}-{i}", delay=0.2) for i in range(10)]))
    assert c.wait(30) == 0, c.log()[-3000:]
    assert "nothing left in flight" in c.log(), c.log()[-3000:]
    m = re.search(r"drained in [\d.]+s: (\d+) succeeded", c.log())
    assert m and int(m.group(1)) > 0, c.log()[-3000:]
    consumers = fleet.consumers()
    assert c_consumer not in consumers, consumers
    assert fleet.redis.xpending_range(fleet.stream, fleet.group, "-", "+", 100, consumername=c_consumer) == []
    assert fleet.stranded() == []

    keys = wait_delivered(target, set(ids), 40, "every job delivered")
    stats = target.stats()
    print(f"\nSIGTERM: c drained with {m.group(1)} succeeded; a {succeeded(a)}, b {succeeded(b)}; "
          f"duplicates {stats['duplicates']}")
    assert set(keys) == set(ids)
    assert stats["duplicates"] == 0, "a clean drain ran some job twice"
    wait_for(lambda: fleet.pending_total() == 0 and fleet.redis.xlen(fleet.stream) == 0, 10, "an empty stream")
    assert a.proc.poll() is None and b.proc.poll() is None
    assert_no_traceback(a, b, c)


def test_sigterm_past_drain_timeout_gives_jobs_back(fleet, target):
    a, b = (fleet.start(name, pool={"size": 2}, queue={"maxsize": 2}) for name in ("a", "b"))
    c = fleet.start("c", pool={"size": 2}, queue={"maxsize": 2}, shutdown={"drain_timeout": 0.5})
    c_consumer = consumer_of(c)
    ids = accepted_ids(a.post([job(target, i, delay=1.5) for i in range(12)]))
    wait_for(lambda: c.status()["pool_busy"] == 2 and c.status()["queue_depth"] == 2, 20,
          "c holding 4 jobs")
    held = fleet.pending_job_ids(c_consumer)
    assert len(held) == 4, held
    c.signal(signal.SIGTERM)
    assert c.wait(20) == 0, c.log()[-3000:]
    assert "4 unfinished job(s) given back to the stream" in c.log(), c.log()[-3000:]
    assert c_consumer not in fleet.consumers()
    keys = wait_delivered(target, set(ids), 40, "every job delivered, c's given-back ones included")
    stats = target.stats()
    print(f"\nSIGTERM past drain_timeout: c gave back {len(held)}; duplicates {stats['duplicates']}")
    assert set(keys) == set(ids)
    # Only c's two cancelled attempts may have reached the target before it gave them back.
    assert {k for k, n in keys.items() if n > 1} <= set(held) and stats["duplicates"] <= 2
    assert_no_traceback(a, b, c)


def test_sigterm_to_an_idle_daemon_loses_no_job_handed_to_it_as_it_stops(fleet, redis_server, target):
    # An idle daemon drains at once, and stops while its reader waits in XREADGROUP. A job that
    # Redis hands that reader just then must still run somewhere. Redis is paused (SIGSTOP) for
    # a few milliseconds, while the reader waits inside it, to make the order sure: a job is
    # submitted (through a daemon too full to read), the idle daemon gets SIGTERM and closes
    # its reader, then Redis resumes and serves both in the order they came.
    # (Without the pause the same happens by chance: under a steady flow of jobs, about one
    # SIGTERM in five to an idle daemon lost a job in trials.)
    full = fleet.start("full", pool={"size": 1}, queue={"maxsize": 1}, target={"timeout": 60})
    accepted_ids(full.post([job(target, i, delay=30) for i in range(2)]))
    wait_for(lambda: (s := full.status())["pool_busy"] == 1 and s["queue_depth"] == 1, 20,
          "the full daemon holding 2 jobs (its reader waits for room)")
    idle = fleet.start("idle", pool={"size": 2})
    wait_for(lambda: len(redis_connections(idle, redis_server.port)) >= 2, 20, "the idle daemon reading")
    connected = redis_connections(idle, redis_server.port)
    answer: dict[str, requests.Response] = {}
    big = {"id": "at-the-stop", "url": target.url("/hook"), "body": "x" * 4000}
    poster = threading.Thread(target=lambda: answer.update(response=full.post(big)), daemon=True)
    pause_redis_as_it_blocks(redis_server, consumer_of(idle))
    try:
        poster.start()
        wait_for(lambda: unread_by_redis(full, redis_server.port) >= 4000, 5, "the intake's write waiting in Redis",
              every=0.005)
        idle.signal(signal.SIGTERM)
        # The reader is the one to close while Redis is paused (the daemon may open another
        # for its goodbye to the group, which waits in Redis meanwhile).
        wait_for(lambda: connected - redis_connections(idle, redis_server.port), 5,
              "the idle daemon to close its reader", every=0.005)
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    poster.join(30)
    assert accepted_ids(answer["response"]) == ["at-the-stop"]
    assert idle.wait() == 0, idle.log()[-3000:]
    assert "drained in 0.00s" in idle.log()  # it was idle: the scenario happened as meant
    stranded = fleet.stranded()
    spare = fleet.start("spare", pool={"size": 2})  # room to run it
    try:
        wait_delivered(target, {"at-the-stop"}, 2 * CLAIM_IDLE + 5, "the job submitted as the idle daemon stopped")
    finally:
        print(f"\nidle daemon stopped: consumers {fleet.consumers()}, stranded in the stream {stranded}")
    assert stranded == []
    assert_no_traceback(full, idle, spare)


# -- what any daemon sees of any job

def test_idempotency_and_job_state_are_fleet_wide(fleet, target):
    a, b = (fleet.start(name, pool={"size": 2}, queue={"maxsize": 2}) for name in ("a", "b"))
    # Every slot of both daemons busy for a while: the next job waits in the stream.
    blockers = accepted_ids(a.post([job(target, i, delay=1.5) for i in range(10)]))
    wait_for(lambda: a.status()["pool_busy"] == 2 and b.status()["pool_busy"] == 2, 20, "both daemons busy")
    # A job in flight shows as running, its attempt counted, on any daemon.
    running = wait_for(lambda: [s for s in (b.job(i) for i in blockers) if s["state"] == "running"], 5,
                       "jobs shown running")
    assert all(s["attempts"] == 1 and s["history"] == [] for s in running), running

    first = a.post({"id": "fleet-once", "url": target.url("/hook")})
    assert accepted_ids(first) == ["fleet-once"]
    again = b.post({"id": "fleet-once", "url": target.url("/hook")})
    assert again.status_code == 200 and again.json()["duplicates"] == ["fleet-once"], again.text
    mixed = b.post([{"id": "fleet-once", "url": target.url("/hook")}, {"id": "fleet-new", "url": target.url("/hook")}])
    assert mixed.status_code in (200, 202) and mixed.json() == {"ids": ["fleet-once", "fleet-new"],
                                                                "duplicates": ["fleet-once"]}, mixed.text
    for daemon in (a, b):
        state = daemon.job("fleet-once")
        assert state["state"] == "queued" and state["attempts"] == 0 and state["history"] == [], state
    assert accepted_ids(a.post({"id": "fleet-dead", "url": target.url("/hook", status=404)})) == ["fleet-dead"]

    for daemon in (b, a):
        wait_for(lambda: daemon.job("fleet-once")["state"] == "succeeded", 20, f"fleet-once succeeded on {daemon.name}")
        wait_for(lambda: daemon.job("fleet-dead")["state"] == "dead", 20, f"fleet-dead dead on {daemon.name}")
    for daemon in (a, b):
        done, gone = daemon.job("fleet-once"), daemon.job("fleet-dead")
        assert done["attempts"] == 1 and done["last_status"] == 200 and len(done["history"]) == 1, done
        assert gone["attempts"] == 1 and gone["last_status"] == 404, gone
        assert daemon.get("/v1/jobs/no-such-job").status_code == 404
    third = a.post({"id": "fleet-once", "url": target.url("/hook")})  # after it ran: still known
    assert third.status_code == 200 and third.json()["duplicates"] == ["fleet-once"]

    ids = set(blockers) | {"fleet-once", "fleet-new", "fleet-dead"}
    wait_delivered(target, ids, 30, "every job delivered")
    wait_for(lambda: fleet.redis.xlen(fleet.stream) == 0, 10, "an empty stream")
    keys = keys_received(target)
    assert keys["fleet-once"] == 1, keys
    assert target.stats()["duplicates"] == 0
    assert_no_traceback(a, b)


def test_retries_are_shared_and_wait_outside_the_group(fleet, target):
    a, b = (fleet.start(name, pool={"size": 2}, retry={"backoff_max": 10}) for name in ("a", "b"))
    assert accepted_ids(a.post({"id": "flaky", "url": target.url("/hook", fail=2, retry_after=0)})) == ["flaky"]
    for daemon in (b, a):
        wait_for(lambda: daemon.job("flaky")["state"] == "succeeded", 20, f"flaky succeeded on {daemon.name}")
        state = daemon.job("flaky")
        assert state["attempts"] == 3, state
        assert [h["status"] for h in state["history"]] == [503, 503, 200], state
    assert keys_received(target)["flaky"] == 3

    # A job waiting for its next attempt sits in P:retry, held by no daemon.
    assert accepted_ids(b.post({"id": "later", "url": target.url("/hook", fail=1, retry_after=4)})) == ["later"]
    wait_for(lambda: a.job("later")["state"] == "retrying", 20, "later retrying")
    due = fleet.retry_ids()
    assert set(due) == {"later"}, due
    assert 0 < due["later"] - time.time() <= 4.5
    assert fleet.pending_total() == 0 and fleet.consumers() and all(n == 0 for n in fleet.consumers().values())
    assert fleet.redis.xlen(fleet.stream) == 0
    for daemon in (a, b):
        state = daemon.job("later")
        assert state["state"] == "retrying" and state["attempts"] == 1 and state["next_attempt_at"], state
        wait_for(lambda: metric(daemon, "gq_retry_scheduled") == 1, 5, f"gq_retry_scheduled 1 on {daemon.name}")
    wait_for(lambda: b.job("later")["state"] == "succeeded", 20, "later succeeded after its retry")
    assert b.job("later")["attempts"] == 2
    assert fleet.retry_ids() == {}
    assert keys_received(target)["later"] == 2
    assert_no_traceback(a, b)


# -- dead letters

def dlq(config: Path, *args: str) -> list[str]:
    """`gq dlq ARGS -c CONFIG`, which must exit 0; its stdout lines."""
    result = run_gq("dlq", *args, "-c", str(config))
    assert result.returncode == 0, (args, result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout.splitlines()


def listed(config: Path) -> dict[str, list[str]]:
    """`gq dlq list`'s rows (the header left out) by id: ID, ATTEMPTS, LAST, then the reason's words."""
    return {line.split()[0]: line.split() for line in dlq(config, "list")[1:]}


def test_dead_letters_with_daemons_running_and_with_none(fleet, target):
    config = fleet.cli_config()
    a, b = (fleet.start(name, pool={"size": 2}) for name in ("a", "b"))
    for n, daemon in enumerate((a, b, a)):
        accepted_ids(daemon.post({"id": f"gone-{n}", "url": target.url("/hook", status=404)}))
    wait_for(lambda: len(fleet.dead_ids()) == 3, 20, "3 dead letters")

    # With the daemons running.
    letters = listed(config)
    assert set(letters) == {"gone-0", "gone-1", "gone-2"}, letters
    assert all(fields[1] == "1" and fields[2] == "404" for fields in letters.values()), letters
    count = target.count()
    assert dlq(config, "replay", "gone-1") == ["gone-1"]
    wait_for(lambda: target.count() == count + 1, 20, "the replayed job run again")
    wait_for(lambda: sorted(fleet.dead_ids()) == ["gone-0", "gone-1", "gone-2"], 20, "it dead again (404)")
    missing = run_gq("dlq", "replay", "no-such-id", "-c", str(config))
    assert missing.returncode == 1 and "no-such-id: no such dead letter" in missing.stderr, missing.stderr
    assert sorted(dlq(config, "purge", "--all", "--yes")) == ["gone-0", "gone-1", "gone-2"]
    assert listed(config) == {} and fleet.redis.xlen(fleet.dead) == 0
    for daemon in (a, b):
        wait_for(lambda: metric(daemon, "gq_dead_letters") == 0, 5, f"gq_dead_letters 0 on {daemon.name}")
    # The purged letters are forgotten in the fleet's ledger, the same on both daemons.
    assert a.status()["ledger"] == b.status()["ledger"] == {**dict.fromkeys(LEDGER, 0), "accepted": 3,
                                                           "forgotten": 3}

    # With none running.
    for n, daemon in enumerate((a, b)):
        accepted_ids(daemon.post({"id": f"late-{n}", "url": target.url("/hook", status=404)}))
    wait_for(lambda: len(fleet.dead_ids()) == 2, 20, "2 more dead letters")
    for daemon in (a, b):
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    assert fleet.consumers() == {}
    count = target.count()
    assert set(listed(config)) == {"late-0", "late-1"}
    assert dlq(config, "replay", "late-0") == ["late-0"]
    assert set(listed(config)) == {"late-1"}
    assert fleet.redis.xlen(fleet.stream) == 1          # waiting for a daemon
    assert dlq(config, "purge", "--all", "--yes") == ["late-1"]
    assert listed(config) == {} and fleet.redis.xlen(fleet.dead) == 0
    assert target.count() == count
    c = fleet.start("c", pool={"size": 2})  # the replayed job runs at the next start
    wait_for(lambda: target.count() == count + 1, 20, "the replayed job run by the next daemon")
    wait_for(lambda: fleet.dead_ids() == ["late-0"], 20, "late-0 dead again")
    assert set(listed(config)) == {"late-0"}
    assert keys_received(target)["late-0"] == 2
    assert_no_traceback(a, b, c)


# -- backpressure and gauges

def test_intake_answers_429_at_max_backlog(fleet, target):
    a, b = (fleet.start(name, broker={"max_backlog": 20}, pool={"size": 5}, queue={"maxsize": 1})
            for name in ("a", "b"))
    slow = lambda n: [job(target, i, delay=1.5) for i in range(n)]  # noqa: E731
    whole = a.post(slow(21))
    assert whole.status_code == 429 and "max_backlog" in whole.json()["error"], whole.text
    assert fleet.redis.xlen(fleet.stream) == 0          # all or nothing
    ids = accepted_ids(a.post(slow(12))) + accepted_ids(b.post(slow(8)))
    assert fleet.redis.xlen(fleet.stream) == 20
    for daemon in (a, b):
        refused = daemon.post(slow(1))
        assert refused.status_code == 429, refused.text
        assert refused.headers.get("Retry-After") and "max_backlog" in refused.json()["error"]
        assert metric(daemon, "gq_intake_rejected_total", reason="backlog_full") >= 1
    assert fleet.redis.xlen(fleet.stream) == 20

    def accepted_later() -> list[str]:
        r = b.post(slow(1))
        assert r.status_code in (200, 202, 429), r.text
        return [] if r.status_code == 429 else accepted_ids(r)
    ids += wait_for(accepted_later, 20, "room again once jobs finish", every=0.2)
    keys = wait_delivered(target, set(ids), 30, "every accepted job delivered")
    assert set(keys) == set(ids) and target.stats()["duplicates"] == 0
    assert_no_traceback(a, b)


def test_metrics_show_the_shared_stream(fleet, target):
    a, b = (fleet.start(name, pool={"size": 3}, queue={"maxsize": 1}) for name in ("a", "b"))
    for daemon in (a, b):
        text = daemon.get("/metrics").text
        assert "# TYPE gq_broker_stream_length gauge" in text and "# TYPE gq_broker_pending gauge" in text
    ids = accepted_ids(a.post([job(target, i, delay=2.5) for i in range(10)]))
    # Both daemons hold 4 (3 in flight, 1 queued): 8 of the 10 entries pending, on every daemon's gauges.
    for daemon in (a, b):
        wait_for(lambda: metric(daemon, "gq_broker_stream_length") == 10 and metric(daemon, "gq_broker_pending") == 8,
              2, f"{daemon.name}'s gauges: stream 10, pending 8")
    wait_delivered(target, set(ids), 20, "every job delivered")
    for daemon in (a, b):
        wait_for(lambda: metric(daemon, "gq_broker_stream_length") == 0 and metric(daemon, "gq_broker_pending") == 0,
              10, f"{daemon.name}'s gauges back at 0")
    assert_no_traceback(a, b)


# -- no Redis

def test_no_redis_at_start_is_one_error_line_and_exit_1(tmp_path):
    config = tmp_path / "gq.toml"
    config.write_text(to_toml({"api": {"listen": "127.0.0.1:0"}, "journal": {"path": ""},
                               "broker": {"kind": "redis", "url": f"redis://127.0.0.1:{closed_port()}/0"}}))
    for args in (("run",), ("dlq", "list")):
        result = run_gq(*args, "-c", str(config), timeout=60)
        errors = [line for line in result.stderr.splitlines() if line.startswith("gq: ")]
        assert result.returncode == 1, (args, result.returncode, result.stderr)
        assert len(errors) == 1 and "cannot reach Redis" in errors[0], (args, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
