"""A fleet on Redis through bad days: Redis out of memory, made a read-only replica, silent
(DEBUG SLEEP) or killed while jobs flow is an answer (503, not ready), never a hang, a dead
loop or a lost job; a daemon killed has its jobs run elsewhere within
seconds; daemons share the work by their speed. Real redis-server on loopback."""

from __future__ import annotations

import contextlib
import hashlib
import signal
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import quote

import psutil
import pytest
import requests
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError

from gq.broker.redis_link import CONNECTIONS, lua_script, passing
from support import closed_port, run_gq, wait_for
from support.fleet import Fleet, Submitter, assert_no_traceback, consumer_of, keys_received, wait_delivered
from support.redis_server import RedisServer, Sentinel

FAULT = 3.0  # seconds Redis refuses every write


def accepted(response) -> list[str]:
    assert response.status_code == 202, response.text
    return response.json()["ids"]


SLEEP = 5  # seconds of DEBUG SLEEP: longer than a Redis command may take in gq (3 s)


def inject(fault: str, redis_server, fleet) -> Callable[[], None]:
    """Make Redis fail in the way named; returns what ends the fault."""
    r = fleet.redis
    if fault == "oom":  # every write that needs memory is refused
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", "1")
        return lambda: r.config_set("maxmemory", "0")
    if fault == "read-only":  # a failover made it a replica (of a master it cannot reach: data kept)
        r.replicaof("127.0.0.1", closed_port())
        return lambda: r.replicaof("NO", "ONE")
    if fault == "sleep":  # it answers nothing at all for a while
        sleeper = threading.Thread(target=redis_server.client().execute_command, args=("DEBUG", "SLEEP", SLEEP))
        sleeper.start()
        return sleeper.join
    assert fault == "kill"  # kill -9, then started again on its append-only file
    redis_server.kill()
    return redis_server.start


@pytest.mark.parametrize("fault", ["oom", "read-only", "sleep", "kill"])
def test_a_redis_fault_is_answered_503_and_loses_nothing(fault, redis_server, start_daemon, target, tmp_path):
    fleet = Fleet(redis_server, start_daemon, tmp_path, fault)
    daemon = fleet.start("a", pool={"size": 10})
    ids = accepted(daemon.post([{"url": target.url(delay=0.05)} for _ in range(200)]))
    wait_for(lambda: target.count() >= 20, what="jobs flowing")
    end = inject(fault, redis_server, fleet)
    faulted = time.monotonic()
    answers, unready, window = set(), False, SLEEP if fault == "sleep" else FAULT
    try:
        while time.monotonic() < faulted + window:
            unready |= daemon.get("/readyz").status_code == 503
            response = daemon.post({"url": target.url()})
            answers.add(response.status_code)
            if response.status_code == 503:
                assert response.headers.get("Retry-After"), response.headers
            else:  # Redis woke from its sleep while the request waited for it: taken for good
                assert response.status_code == 202, response.text
                ids.append(response.json()["id"])
            time.sleep(0.1)
    finally:
        end()
    assert unready, "/readyz said ready during the fault"
    assert 503 in answers and answers <= ({202, 503} if fault == "sleep" else {503}), answers
    wait_for(lambda: daemon.get("/readyz").status_code == 200, timeout=20, what="/readyz 200 once Redis serves again")
    ids += accepted(daemon.post([{"url": target.url()} for _ in range(20)]))
    wait_for(lambda: {r["key"] for r in target.received()} >= set(ids), timeout=60, what="every accepted job delivered")
    wait_for(lambda: fleet.pending_total() == 0 and fleet.redis.xlen(fleet.stream) == 0
             and fleet.redis.zcard(fleet.retry_set) == 0, timeout=20, what="every delivery acknowledged")
    settled = target.stats()
    time.sleep(3 * 2.0)  # past claim_idle: nothing left to deliver again
    stats = target.stats()
    print(f"\nRedis {fault} for {window:g}s: {stats['keys']} jobs, {stats['duplicates']} delivered twice; "
          f"answers {answers}")
    assert stats["count"] == settled["count"], "jobs delivered again after everything was acknowledged"
    assert stats["duplicates"] <= 10, stats  # at most the jobs in flight at the fault (pool.size)
    log = daemon.log()
    assert "internal error" not in log and "giving up" not in log and "Traceback" not in log, log[-3000:]


def test_which_redis_errors_mean_redis_cannot_serve_now():
    refusals = [OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
               ReadOnlyError("You can't write against a read only replica."),
               ResponseError("MISCONF Errors writing to the AOF file: No space left on device"),
               ResponseError("UNBLOCKED force unblock from blocking operation, instance state changed"),
               ResponseError("NOREPLICAS Not enough good replicas to write.")]
    bugs = [ResponseError("NOGROUP No such key 'gq:jobs' or consumer group"),
            ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
            ResponseError("ERR unknown command")]
    assert [passing(e) for e in refusals] == [True] * len(refusals)
    assert [passing(e) for e in bugs] == [False] * len(bugs)


# -- sharing: bounded prefetch, fast failover

def held(daemon) -> int:
    return daemon.status()["jobs"]["running"]  # taken from the stream, not settled


def test_a_killed_daemons_jobs_run_on_the_other_within_seconds(redis_server, start_daemon, target, tmp_path):
    fleet = Fleet(redis_server, start_daemon, tmp_path, "hb")
    broker = {"claim_idle": 60.0}  # the default: the heartbeat alone must find the dead daemon
    a = fleet.start("a", broker=broker, pool={"size": 10}, queue={"maxsize": 5000})
    b = fleet.start("b", broker=broker, pool={"size": 10}, queue={"maxsize": 5000})
    ids = accepted(a.post([{"url": target.url(delay=0.1)} for _ in range(600)]))
    most = {"a": 0, "b": 0}

    def sample() -> None:
        for name, daemon in (("a", a), ("b", b)):
            if daemon.proc.poll() is None:
                most[name] = max(most[name], held(daemon))

    def b_busy() -> bool:
        sample()
        return b.status()["finished"]["succeeded"] >= 30

    wait_for(b_busy, what="b delivering")
    victim = consumer_of(b)
    b.proc.kill()
    b.proc.wait()
    killed = time.time()
    stranded = set(fleet.pending_job_ids(victim))
    assert stranded, "b held nothing when it died"

    def taken_over() -> bool:
        sample()
        return stranded <= {r["key"] for r in target.received() if r["t"] > killed}

    wait_for(taken_over, timeout=30, what="b's jobs running on a")
    seconds = max(min(r["t"] for r in target.received() if r["key"] == k and r["t"] > killed)
                  for k in stranded) - killed
    wait_for(lambda: {r["key"] for r in target.received()} >= set(ids), timeout=60, what="every job delivered")
    stats = target.stats()
    print(f"\nkill -9 of b holding {len(stranded)} jobs: all running on a {seconds:.1f}s after the kill "
          f"(claim_idle 60); held at most a {most['a']}, b {most['b']} (pool 10 + prefetch 10); "
          f"{stats['duplicates']} delivered twice")
    assert seconds < 10
    assert most["a"] <= 20 and most["b"] <= 20, most
    assert stats["duplicates"] <= len(stranded)
    assert "of a daemon silent for 3 heartbeats" in a.log()


def test_a_paused_daemon_loses_nothing_and_runs_again_only_what_it_held(redis_server, start_daemon, target, tmp_path):
    # b is stopped (SIGSTOP, as a long GC or a frozen VM would) for longer than 3 heartbeats:
    # a takes its jobs over and runs them. b, continued, leaves those with a: only the attempts
    # b had under way when it stopped may have reached the target twice, and each such job's
    # history says so (an attempt of unknown outcome).
    fleet = Fleet(redis_server, start_daemon, tmp_path, "pause")
    broker = {"claim_idle": 60.0}
    a = fleet.start("a", broker=broker, pool={"size": 5})
    b = fleet.start("b", broker=broker, pool={"size": 5})
    ids = accepted(a.post([{"url": target.url(delay=0.2)} for _ in range(300)]))
    wait_for(lambda: b.status()["finished"]["succeeded"] >= 10, what="b delivering")
    victim = consumer_of(b)
    b.proc.send_signal(signal.SIGSTOP)
    paused = set(fleet.pending_job_ids(victim))
    try:
        wait_for(lambda: "of a daemon silent for 3 heartbeats" in a.log(), 15, "a taking over b's jobs")
    finally:
        b.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: {r["key"] for r in target.received()} >= set(ids), timeout=90, what="every job delivered")
    wait_for(lambda: fleet.pending_total() == 0 and fleet.redis.xlen(fleet.stream) == 0, 20, "an empty stream")
    time.sleep(2.0)  # anything b would still send
    stats = target.stats()
    print(f"\nb paused holding {len(paused)} jobs, taken over by a: {stats['keys']} jobs delivered, "
          f"{stats['duplicates']} twice (b had at most its pool of 5 under way)")
    assert stats["keys"] == len(ids)
    assert stats["duplicates"] <= 5, stats
    for key, times in keys_received(target).items():
        if times > 1:
            assert a.job(key)["unknown_attempts"] >= times - 1, a.job(key)
    for daemon in (a, b):
        assert daemon.proc.poll() is None, daemon.log()[-3000:]
    assert_no_traceback(a, b)


def test_a_fast_daemon_delivers_most_jobs_beside_a_slow_one(redis_server, start_daemon, target, tmp_path):
    fleet = Fleet(redis_server, start_daemon, tmp_path, "speed")
    slow = fleet.start("slow", pool={"size": 2})   # holds at most 4
    fast = fleet.start("fast", pool={"size": 20})  # holds at most 40
    ids = accepted(slow.post([{"url": target.url(delay=0.1)} for _ in range(400)]))
    wait_for(lambda: {r["key"] for r in target.received()} >= set(ids), timeout=60, what="every job delivered")
    by_fast, by_slow = fast.status()["finished"]["succeeded"], slow.status()["finished"]["succeeded"]
    print(f"\nslow daemon (pool 2) and fast one (pool 20): fast delivered {by_fast}, slow {by_slow}")
    assert by_fast >= 0.7 * len(ids), (by_fast, by_slow)


# -- Redis Sentinel

SERVICE = "gqm"


def test_the_fleet_follows_a_sentinel_failover_and_loses_nothing(redis_binary, start_daemon, target, tmp_path):
    # A master, a replica and three sentinels; the master is killed with -9 while jobs flow.
    # The daemons, given the sentinels only, follow the new master; every job answered 202
    # reached the replica before its answer (WAIT), so none is lost by the failover.
    master = RedisServer(redis_binary, tmp_path / "master")
    master.start()
    replica = RedisServer(redis_binary, tmp_path / "replica", args=("--replicaof", "127.0.0.1", str(master.port)))
    replica.start()
    sentinels = [Sentinel(redis_binary, tmp_path / f"sentinel{i}", SERVICE, master.port) for i in range(3)]
    try:
        wait_for(lambda: all(s.replicas(SERVICE) == 1 for s in sentinels), 20, "the sentinels to know the replica")
        url = "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in sentinels) + f"/{SERVICE}/0"
        fleet = Fleet(master, start_daemon, tmp_path, "sentinel")
        daemons = [fleet.start(name, broker={"url": url}, pool={"size": 4}) for name in ("a", "b")]
        submitter = Submitter(daemons, target)
        submitter.start()
        try:
            wait_for(lambda: len(submitter.accepted) >= 100 and target.count() >= 50, 30, "jobs flowing")
            master.kill()
            killed = time.monotonic()
            wait_for(lambda: all(s.master_port(SERVICE) == replica.port for s in sentinels), 30,
                     "the sentinels to promote the replica")
            promoted = time.monotonic() - killed
            submitter.more(100, 30, "jobs accepted by the new master")
            followed = time.monotonic() - killed
        finally:
            submitter.stop()
        ids = submitter.ids()
        keys = wait_delivered(target, ids, 60, "every accepted job delivered after the failover")
        print(f"\nSentinel failover: replica promoted {promoted:.1f}s after kill -9 of the master, jobs accepted "
              f"again {followed:.1f}s after it; {len(ids)} jobs accepted in all, refusals "
              f"{dict(submitter.refused)}, duplicates {target.stats()['duplicates']}")
        assert set(keys) == ids, sorted(ids - set(keys))[:10]
        for daemon in daemons:
            assert daemon.proc.poll() is None, daemon.log()[-3000:]
        assert_no_traceback(*daemons)
    finally:
        for sentinel in sentinels:
            sentinel.kill()
        replica.kill()
        master.kill()


def test_sentinels_and_a_master_that_require_passwords(redis_binary, start_daemon, target, tmp_path):
    # The master's password before the @ (percent-encoded), the sentinels' own in the query;
    # neither shows in check-config's output. The daemon's connections to the master stay
    # within its pool's 16 however many requests come at once.
    master_pw, sentinel_pw = "m@ster pw/1", "s3ntinel:pw"
    master = RedisServer(redis_binary, tmp_path / "master", password=master_pw)
    master.start()
    sentinels = [Sentinel(redis_binary, tmp_path / f"sentinel{i}", SERVICE, master.port, password=sentinel_pw,
                          master_password=master_pw) for i in range(2)]
    try:
        wait_for(lambda: all(s.master_port(SERVICE) == master.port for s in sentinels), 20,
                 "the sentinels to know the master")
        url = (f"redis+sentinel://:{quote(master_pw, safe='')}@" + ",".join(f"127.0.0.1:{s.port}" for s in sentinels)
               + f"/{SERVICE}/0?sentinel_password={quote(sentinel_pw, safe='')}")
        fleet = Fleet(master, start_daemon, tmp_path, "auth")
        daemon = fleet.start("a", broker={"url": url}, pool={"size": 100})
        shown = run_gq("check-config", "-c", str(daemon.config_path))
        assert shown.returncode == 0, shown.stderr
        assert "<redacted>" in shown.stdout and "m%40ster" not in shown.stdout and "s3ntinel" not in shown.stdout, \
            shown.stdout

        peak, done = [0], threading.Event()
        gq = psutil.Process(daemon.proc.pid)

        def watch() -> None:  # the daemon's own TCP connections to the master
            while not done.wait(0.02):
                peak[0] = max(peak[0], sum(1 for c in gq.net_connections(kind="tcp")
                                           if c.raddr and c.raddr.port == master.port and c.status == "ESTABLISHED"))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        ids: list[str] = []
        lock = threading.Lock()

        def send(sender: int) -> None:
            with requests.Session() as session:
                for n in range(10):
                    batch = [{"id": f"p{sender}-{n}-{k}", "url": target.url(delay=0.05)} for k in range(5)]
                    answer = session.post(f"{daemon.api}/v1/jobs", json=batch, timeout=30)
                    assert answer.status_code == 202, answer.text
                    with lock:
                        ids.extend(answer.json()["ids"])

        senders = [threading.Thread(target=send, args=(i,)) for i in range(40)]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join()
        wait_delivered(target, set(ids), 60, "every job delivered")
        done.set()
        watcher.join()
        print(f"\nat most {peak[0]} connections from the daemon to the master, 40 senders, pool.size 100")
        assert len(ids) == 2000 and 0 < peak[0] <= CONNECTIONS, peak
        assert_no_traceback(daemon)
    finally:
        for sentinel in sentinels:
            sentinel.kill()
        master.kill()


# -- destination limits shared by the fleet

def per_second(times: list[float]) -> list[int]:
    """Requests in each whole second from the first one."""
    start = min(times)
    counts = [0] * (int(max(times) - start) + 1)
    for t in times:
        counts[int(t - start)] += 1
    return counts


@pytest.mark.parametrize("limit", ["rate", "max_in_flight"])
def test_fleet_wide_limits_hold_for_the_fleet_as_a_whole(limit, redis_server, start_daemon, target, tmp_path):
    fleet = Fleet(redis_server, start_daemon, tmp_path, f"fleet-{limit}")
    destinations = ({"scope": "fleet", "rate": 20, "burst": 1} if limit == "rate"
                    else {"scope": "fleet", "max_in_flight": 3})
    delay = 0.0 if limit == "rate" else 0.3
    a, b = (fleet.start(name, destinations=destinations, pool={"size": 10}) for name in ("a", "b"))
    ids = accepted(a.post([{"url": target.url(delay=delay)} for _ in range(100)]))
    wait_for(lambda: target.stats()["keys"] == 100, 60, "every job delivered")
    received = target.received()
    assert {r["key"] for r in received} == set(ids)
    taken_by = {daemon.name: daemon.status()["finished"]["succeeded"] for daemon in (a, b)}
    assert all(taken_by.values()), taken_by  # both daemons sent some
    if limit == "rate":
        counts = per_second([r["t"] for r in received])
        print(f"\nscope = fleet, rate 20, two daemons {taken_by}: requests per second {counts}")
        assert max(counts) <= 22, counts  # one daemon alone would be allowed 20
    else:
        most = target.stats()["max_active"]
        print(f"\nscope = fleet, max_in_flight 3, two daemons {taken_by}: at most {most} at once at the target")
        assert most <= 3


def test_a_circuit_opened_by_one_daemon_is_open_for_the_fleet(redis_server, start_daemon, target, tmp_path):
    # a finds the host down and opens its circuit; b, which never tried the host, then fails
    # its job to it at once ("circuit open"), without a request.
    fleet = Fleet(redis_server, start_daemon, tmp_path, "fleet-circuit")
    down = f"http://127.0.0.1:{closed_port()}/hook"
    destinations = {"scope": "fleet", "breaker_failures": 2, "breaker_window": 0.5, "breaker_cooldown": 30}
    retry = {"max_attempts": 50, "backoff_base": 0.05, "backoff_max": 0.2}
    a = fleet.start("a", destinations=destinations, retry=retry, pool={"size": 2})
    a.post([{"url": down} for _ in range(3)])
    wait_for(lambda: "circuit open" in a.log(), 15, "a opening the host's circuit")
    a.proc.send_signal(signal.SIGSTOP)  # from here only b takes jobs
    try:
        b = fleet.start("b", destinations=destinations, retry=retry, pool={"size": 2})
        job_id = b.post({"url": down, "max_attempts": 1}).json()["id"]
        wait_for(lambda: b.job(job_id).get("state") == "dead", 15, "b's job to the down host to end")
        job = b.job(job_id)
        assert job["last_error"].startswith("circuit open"), job
        assert "another daemon of the fleet opened it" in b.log()
    finally:
        a.proc.send_signal(signal.SIGCONT)


def test_a_live_daemons_jobs_stay_with_it_when_redis_comes_back(redis_server, start_daemon, target, tmp_path):
    # Redis away for longer than claim_idle (2 s) and 3 heartbeats: when it is back, the idle
    # times and liveness keys it kept say nothing of b, which runs its job all along. a must
    # leave the job with b: taken over, it would run on both at once, and its key with it.
    fleet = Fleet(redis_server, start_daemon, tmp_path, "back")
    b = fleet.start("b")
    [job] = accepted(b.post([{"url": target.url(delay=6), "ordering_key": "k"}]))
    wait_for(lambda: target.count() == 1, what="b's attempt at the target")
    a = fleet.start("a")
    redis_server.kill()
    time.sleep(3.5)  # the outage
    redis_server.start()
    wait_for(lambda: b.job(job)["state"] == "succeeded", what="b's attempt to succeed")
    sent = [(r["t"], r["end"]) for r in target.received()]
    assert len(sent) == 1, f"the job was sent {len(sent)} times: {sent}\n{a.log()[-3000:]}"
    assert_no_traceback(a, b)



def test_a_paused_daemons_late_outcome_is_not_written_over_the_daemon_that_took_its_job(
        redis_server, start_daemon, target, tmp_path):
    # b is paused with an attempt under way (it will get a 503); a takes the job over and runs
    # it (200). b, continued while a's attempt runs, has its outcome: a retry, which must not be
    # written over a's run (the job would run a third time, delivered twice).
    fleet = Fleet(redis_server, start_daemon, tmp_path, "late")
    a = fleet.start("a")
    b = fleet.start("b")
    [job] = accepted(b.post([{"url": target.url(delay=4, fail=1)}]))
    wait_for(lambda: target.count() == 1, what="an attempt at the target")
    taker = a if job in fleet.pending_job_ids(consumer_of(b)) else b
    holder = b if taker is a else a
    holder.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: target.count() == 2, what="the job taken over and sent again")
    finally:
        holder.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: taker.job(job)["state"] == "succeeded", what="the job to succeed")
    wait_for(lambda: fleet.pending_total() == 0 and not fleet.retry_ids(), what="nothing left to run")
    statuses = [r["status"] for r in target.received()]
    assert statuses.count(200) == 1, statuses
    assert_no_traceback(a, b)


def test_a_paused_daemon_does_not_start_a_job_taken_over_while_it_was_paused(
        redis_server, start_daemon, target, tmp_path):
    # b (one worker, one job held beyond it) is paused past claim_idle with one job at the
    # target and one held, unstarted; a, busy, takes both over and holds them unstarted too.
    # b, continued, must leave the job it held to a: started by b, it would be sent with no
    # attempt a knows of, and a, finding it running, would drop it, stuck at running forever.
    fleet = Fleet(redis_server, start_daemon, tmp_path, "held")
    b = fleet.start("b", broker={"prefetch": 1}, pool={"size": 1})
    slow, held = accepted(b.post([{"url": target.url(delay=3)}, {"url": target.url()}]))
    wait_for(lambda: keys_received(target)[slow] == 1 and held in fleet.pending_job_ids(consumer_of(b)),
             what="b running one job and holding the other")
    a = fleet.start("a", broker={"prefetch": 2}, pool={"size": 1})
    [busy] = accepted(a.post([{"url": target.url(delay=8)}]))
    wait_for(lambda: keys_received(target)[busy] == 1, what="a busy")
    b.proc.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: held in fleet.pending_job_ids(consumer_of(a)), 30, "a holding the job b held")
    finally:
        b.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: all(a.job(i)["state"] == "succeeded" for i in (slow, held, busy)), 60, "every job delivered")
    assert keys_received(target)[held] == 1, (a.job(held), b.log()[-2000:])
    assert [h["outcome"] for h in a.job(held)["history"]] == ["success"]
    assert f"job {held}: taken over by another daemon" in b.log()
    assert_no_traceback(a, b)


class AnswerCutter:
    """A TCP relay between gq and Redis on loopback that can lose Redis's answers: while
    `cutting`, the answer to a transaction (MULTI … EXEC: gq's writer) that holds `marker`
    is dropped and its connection closed, after Redis wrote it (as a Redis killed between its
    fsync and its answer, or a network that drops the answer, would leave it)."""

    def __init__(self, redis_port: int, marker: bytes, blackout: float = 0.0):
        """`blackout`: seconds after a cut during which new connections are closed at once
        (Redis unreachable: the write is tried again only after that)."""
        self.redis_port, self.marker, self.cutting, self.cut = redis_port, marker, threading.Event(), 0
        self.blackout, self.closed_until = blackout, 0.0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            if time.monotonic() < self.closed_until:
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.redis_port))
            marked = threading.Event()   # a transaction was sent while cutting: its answer goes
            threading.Thread(target=self._pump, args=(client, server, marked, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, marked, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, marked: threading.Event, answers: bool) -> None:
        try:
            while data := source.recv(65536):
                if answers and marked.is_set():
                    self.cut += 1
                    self.closed_until = time.monotonic() + self.blackout
                    break
                if not answers and self.cutting.is_set() and b"MULTI" in data and self.marker in data:
                    marked.set()
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.mark.parametrize("blackout", [0.0, 6.0], ids=["at-once", "after-the-start-wait"])
def test_a_start_written_whose_answer_was_lost_runs_the_job(blackout, redis_server, start_daemon, target, tmp_path):
    # Redis writes an attempt's start and its answer is lost: gq writes the start again, and
    # finds the job running already. That is this very start, not a cancel: the job must run,
    # not be dropped with its state "running" for ever; also when the start is written again
    # only after the 5 s an attempt waits for its start (the attempt handed back meanwhile).
    start_script = hashlib.sha1(lua_script("start").encode()).hexdigest().encode()   # as redis-py sends it
    cutter = AnswerCutter(redis_server.port, start_script, blackout)
    daemon = start_daemon(broker={"kind": "redis", "url": f"redis://127.0.0.1:{cutter.port}/0", "prefix": "cut"},
                          pool={"size": 8})
    ids = accepted(daemon.post([{"url": target.url(delay=0.05)} for _ in range(400)]))
    for cuts in range(1, 6 if not blackout else 3):
        count = target.count()
        wait_for(lambda: target.count() >= count + 16, what="jobs flowing")
        cutter.cutting.set()
        wait_for(lambda: cutter.cut >= cuts, what="an answer lost")
        cutter.cutting.clear()

    def unfinished() -> dict[str, str]:
        return {i: state for i in ids if (state := daemon.job(i).get("state")) != "succeeded"}  # None: Redis away
    try:
        wait_for(lambda: not unfinished(), timeout=60, what="every job to succeed")
    except pytest.fail.Exception:
        pytest.fail(f"jobs never finished after {cutter.cut} answers lost: {unfinished()}\n{daemon.log()[-2000:]}")
    assert_no_traceback(daemon)
