"""The Redis Streams broker: many gq daemons share one queue through a consumer group.

Keys, under `broker.prefix` (P):
    P:jobs       stream of jobs to run; one consumer group, P:workers, each daemon a consumer
    P:retry      sorted set of jobs waiting for their next attempt (score: when due)
    P:dead       stream of dead letters
    P:id:ID      the job id is known (idempotent intake), for broker.status_ttl seconds
    P:job:ID     hash: the job's state, attempts and history, for GET /v1/jobs/{id}
    P:alive:C    consumer C's daemon is alive (set every broker.heartbeat, expires after 3)

Every entry carries one field, `payload`: JSON of the job, the attempts made and
their history. A job is XADDed at intake, read by one daemon with XREADGROUP
(no more than pool.size + broker.prefetch held at once), and XACKed and XDELeted
when its attempt's outcome is final: the stream holds only unfinished work (Redis 7
cannot trim only acknowledged entries, so MAXLEN is not used: it could drop unread
jobs). A retry moves the job to P:retry, held by no daemon, until a mover puts it
back on the stream. A daemon that dies leaves its jobs pending: once its P:alive key
expires another daemon takes them over at once, and after broker.claim_idle seconds
any job idle in a consumer's hands is taken over (XAUTOCLAIM), so a job runs at
least once. Live daemons keep their own jobs from looking idle. The Lua scripts that
must be atomic are in scripts/, one a file.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterable
from importlib.resources import files
from typing import Any

import gevent
import redis
from redis.sentinel import Sentinel
from gevent.event import AsyncResult, Event

from gq.broker import HISTORY_LIMIT, Added, Entry, State
from gq.config import SENTINEL_SCHEME, BrokerConfig, sentinel_parts
from gq.errors import BrokerUnavailable, GqError, QueueFull
from gq.job import Job, parse, redact_url
from gq.outcome import AttemptResult, Outcome, Verdict
from gq.supervisor import Supervisor

log = logging.getLogger("gq.redis")

MOVE_EVERY = 0.2      # seconds between looks for due retries
COUNTS_EVERY = 1.0    # seconds between refreshes of the shared counts
BACKOFF_MAX = 5.0     # seconds between reconnection attempts, at most
START_WAIT = 5.0      # seconds an attempt waits for its start to be written (Redis down: it goes on)
# Seconds a Redis command may take, and a caller may wait for a connection: Redis answers in
# milliseconds, so one that is silent this long is not serving (DEBUG SLEEP, a stalled host,
# a network partition): the daemon says not ready and backs off instead of hanging with it.
REDIS_TIMEOUT = 3.0
# Redis cannot serve now: gone, slow, loading, out of memory, a read-only replica, a failover.
# gq backs off and answers not ready meanwhile. Other errors reach the supervisor.
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, redis.exceptions.OutOfMemoryError,
                redis.ReadOnlyError, redis.exceptions.ExecAbortError, redis.exceptions.MasterDownError,
                redis.exceptions.TryAgainError)
# The same, said in a plain error reply: snapshots failing (MISCONF), a blocked read unblocked
# by a failover (UNBLOCKED), replicas missing, a script running too long.
PASSING_REPLIES = ("MISCONF", "UNBLOCKED", "NOREPLICAS", "BUSY ")


def client(url: str) -> redis.Redis:
    """A client for the Redis the URL names. redis://, rediss://, unix://: callers share 16
    connections, waiting for one. redis+sentinel://: the master the sentinels name now, found
    again after a failover (redis-py's Sentinel; its pool opens a connection per caller that
    finds none free)."""
    timeouts: dict[str, Any] = {"socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT}
    if url.startswith(SENTINEL_SCHEME):
        sentinels, service, db = sentinel_parts(url)
        return Sentinel(sentinels, sentinel_kwargs=timeouts, **timeouts).master_for(service, db=db)
    return redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(
        url, max_connections=16, timeout=REDIS_TIMEOUT, health_check_interval=30, **timeouts))


def _passing(error: BaseException) -> bool:
    return isinstance(error, REDIS_ERRORS) or (
        isinstance(error, redis.ResponseError) and str(error).startswith(PASSING_REPLIES))


def lua_script(name: str) -> str:
    """A Lua script of scripts/ (each says what it does, atomically, in Redis)."""
    return (files("gq.broker") / "scripts" / f"{name}.lua").read_text(encoding="utf-8")


def _payload(entry: Entry) -> str:
    head = json.dumps({"attempts": entry.attempts, "history": [_attempt(a) for a in entry.history]},
                      ensure_ascii=False)
    return head[:-1] + f', "job": {entry.job.to_json()}}}'  # the job as it is, not parsed again


def _attempt(a: AttemptResult) -> list:
    return [a.started, round(a.duration, 6), a.status, a.error, a.snippet]


def _entry(payload: str | bytes, handle: Any = None, state: State = State.QUEUED) -> Entry:
    data = json.loads(payload)
    return Entry(parse(data["job"]), state, data["attempts"],
                 history=[AttemptResult(*a) for a in data["history"]], handle=handle)


class RedisBroker:
    backlog = True

    def __init__(self, config: BrokerConfig, supervisor: Supervisor | None = None, hold_at_most: int = 200):
        """`hold_at_most`: jobs taken from the stream and not yet settled, at most (pool.size
        + broker.prefetch): the rest stay in the stream for whichever daemon is free."""
        self.config = config
        self.hold_at_most = hold_at_most
        p = config.prefix
        self.stream, self.group, self.retry_set, self.dead = f"{p}:jobs", f"{p}:workers", f"{p}:retry", f"{p}:dead"
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        # Few connections serve all: one blocks in XREADGROUP, the writer batches settlements,
        # intake requests and maintenance share the rest; more callers wait for one.
        self.redis = client(config.url)
        self.sentinel = config.url.startswith(SENTINEL_SCHEME)
        self._replicas = 0   # the master's replicas, as last looked at (Sentinel: see _added)
        self._add, self._move, self._leave, self._sweep, self._takeover = (
            self.redis.register_script(lua_script(name)) for name in ("add", "move", "leave", "sweep", "takeover"))
        self.alive_prefix = f"{p}:alive:"
        self._room = Event()   # set when a held job is settled or deferred
        self._last_takeover = 0.0
        self.dlq = DeadLetters(self.redis, config)
        self.healthy = False
        self._held: dict[str, Entry] = {}         # taken and not settled, by stream id
        self._ops: list[tuple] = []               # settlements waiting for the writer
        self._starting: list[AsyncResult] = []    # started() calls waiting for their write
        self._settling: set[str] = set()           # stream ids whose settlement is not written yet
        self._wake = Event()
        self._stop = Event()
        self._counts = {"queued": 0, "running": 0, "retrying": 0, "dead": 0}
        self.shared = {"stream_length": 0, "pending": 0}
        self._last_claim = 0.0
        self._connect()
        supervisor = supervisor or Supervisor()
        self._loops = [supervisor.spawn("Redis writer", self._write_loop),
                       supervisor.spawn("Redis maintenance", self._maintain_loop)]

    # -- connection

    def _connect(self) -> None:
        """Create the group (and stream) if missing; raises GqError if Redis cannot be reached."""
        try:
            self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        except REDIS_ERRORS as e:
            raise GqError(f"broker: cannot reach Redis at {self._where()}: {e}") from None
        self._refresh_counts()
        self._beat()
        self.healthy = True

    def _where(self) -> str:
        return redact_url(self.config.url)

    def _failed(self, what: str, error: Exception) -> None:
        if self.healthy:
            log.error("broker: Redis %s failed (%s); retrying with backoff, not ready meanwhile", what, error)
        self.healthy = False

    def _recovered(self) -> None:
        if not self.healthy:
            log.info("broker: Redis reachable again")
        self.healthy = True

    # -- intake

    def add(self, jobs: Iterable[Job], hold: int = 0) -> Added:
        """Into the shared stream: every daemon of the fleet takes from it (`hold` is not used)."""
        jobs = list(jobs)
        keys = [self.stream, f"{self.config.prefix}:id:", f"{self.config.prefix}:job:", self.config.status_ttl]
        args: list[Any] = [self.config.max_backlog]
        for job in jobs:
            args += [job.id, _payload(Entry(job))]
        try:
            fresh = self._added(keys, args)
        except REDIS_ERRORS as e:
            self._failed("intake", e)
            raise BrokerUnavailable(f"broker: Redis unavailable ({e})") from None
        except redis.ResponseError as e:
            if _passing(e):
                self._failed("intake", e)
                raise BrokerUnavailable(f"broker: Redis unavailable ({e})") from None
            if "NOGROUP" not in str(e) and "NOSCRIPT" not in str(e):
                raise
            raise BrokerUnavailable(f"broker: Redis lost its data ({e}); try again") from None
        if fresh == -1:
            raise QueueFull(f"queue full: the shared stream holds broker.max_backlog "
                            f"({self.config.max_backlog}) jobs")
        fresh = {i.decode() if isinstance(i, bytes) else i for i in fresh}
        duplicates, seen = [], set()
        for job in jobs:
            if job.id not in fresh or job.id in seen:
                duplicates.append(job.id)
            seen.add(job.id)
        return Added([], duplicates, stored=len(fresh))

    def _added(self, keys: list, args: list) -> Any:
        """Run the intake script. Under Sentinel, a failover promotes a replica that may miss
        the master's last writes: the jobs are answered for only once a replica has them too
        (WAIT, on the script's own connection)."""
        if not (self.sentinel and self._replicas):  # no replica: no failover can lose them
            return self._add(keys=keys, args=args)
        pipe = self.redis.pipeline(transaction=False)
        self._add(keys=keys, args=args, client=pipe)
        pipe.wait(1, int(REDIS_TIMEOUT * 1000))
        fresh, replicas = pipe.execute()
        if fresh != -1 and fresh and replicas < 1:
            raise BrokerUnavailable("broker: no Redis replica confirmed the jobs within "
                                    f"{REDIS_TIMEOUT:g}s; send them again with the same ids")
        return fresh

    # -- dispatch

    def take(self, limit: int, timeout: float) -> list[Entry]:
        """Jobs of dead daemons first, then jobs idle too long in any consumer's hands, then
        new ones (XREADGROUP, blocking); never more than hold_at_most held in all."""
        limit = min(limit, self.hold_at_most - len(self._held))
        if limit <= 0:
            self._room.clear()
            self._room.wait(timeout)
            return []
        try:
            entries = self._claim_dead(limit) or self._claim_stale(limit)
            if not entries:
                reply = self.redis.xreadgroup(self.group, self.consumer, {self.stream: ">"},
                                              count=limit, block=max(1, int(timeout * 1000)))
                entries = [self._taken(msg_id, fields) for _, messages in reply or ()
                           for msg_id, fields in messages]
        except REDIS_ERRORS as e:
            self._failed("read", e)
            self._stop.wait(min(BACKOFF_MAX, max(timeout, 0.5)))
            return []
        except redis.ResponseError as e:
            if _passing(e):
                self._failed("read", e)
                self._stop.wait(min(BACKOFF_MAX, max(timeout, 0.5)))
                return []
            if "NOGROUP" not in str(e):
                raise
            log.warning("broker: the consumer group is gone (Redis lost its data?); creating it again")
            self._connect()
            return []
        # A read that works says nothing of writes (an out-of-memory Redis still reads):
        # only writes (the writer, maintenance) say Redis is usable again.
        return [e for e in entries if e is not None]

    def _taken(self, msg_id: bytes, fields: dict | None) -> Entry | None:
        msg_id = msg_id.decode()
        if not fields:  # deleted while pending
            self._ops.append(("ack", msg_id))
            return None
        entry = _entry(fields[b"payload"], handle=msg_id)
        self._held[msg_id] = entry
        self._counts["running"] = len(self._held)
        return entry

    def _claim_dead(self, limit: int) -> list[Entry]:
        """The jobs of daemons whose liveness key expired (3 heartbeats without a beat)."""
        now = time.monotonic()
        if now - self._last_takeover < self.config.heartbeat:
            return []
        self._last_takeover = now
        claimed = self._takeover(keys=[self.stream], args=[self.group, self.consumer, limit, self.alive_prefix])
        entries = [e for e in (self._taken(msg_id, dict(zip(fields[::2], fields[1::2])) if fields else None)
                               for msg_id, fields in claimed) if e]
        if entries:
            self._resume_attempts(entries)
            log.warning("broker: took over %d job(s) of a daemon silent for %g heartbeats", len(entries), 3)
        return entries

    def _claim_stale(self, limit: int) -> list[Entry]:
        now = time.monotonic()
        if now - self._last_claim < self.config.claim_idle / 2:
            return []
        self._last_claim = now
        _, claimed, *_ = self.redis.xautoclaim(self.stream, self.group, self.consumer,
                                               int(self.config.claim_idle * 1000), "0-0", count=limit)
        # Entries this daemon still holds, or has settled but not yet written (Redis refusing
        # writes, its touches failing meanwhile), are its own: not taken over again.
        mine = self._held.keys() | self._settling
        entries = [e for e in (self._taken(msg_id, fields) for msg_id, fields in claimed
                               if _text_id(msg_id) not in mine) if e]
        if entries:
            self._resume_attempts(entries)
            log.warning("broker: took over %d job(s) idle for %gs in a consumer that stopped",
                        len(entries), self.config.claim_idle)
        return entries

    def _resume_attempts(self, entries: list[Entry]) -> None:
        """A job taken over keeps the attempts its state records (the stream entry holds
        those made before it was queued; the count, one begun when its daemon died), so a
        job that kills daemons is not retried forever."""
        pipe = self.redis.pipeline(transaction=False)
        for entry in entries:
            pipe.hmget(f"{self.config.prefix}:job:{entry.job.id}", "payload", "attempts", "state")
        for entry, (payload, attempts, state) in zip(entries, pipe.execute()):
            if payload:
                known = json.loads(payload)
                if known["attempts"] > entry.attempts:
                    entry.attempts = known["attempts"]
                    entry.history = [AttemptResult(*a) for a in known["history"]]
            entry.attempts = max(entry.attempts, int(attempts or 0))
            # An attempt begun and never settled: its daemon died during it.
            entry.interrupted = state == State.RUNNING.value.encode() and entry.attempts > 0

    def started(self, entry: Entry) -> None:
        """Returns once the attempt's start is written (or after START_WAIT seconds without
        Redis), so that a daemon dying during it leaves the attempt counted."""
        entry.attempts += 1
        entry.state = State.RUNNING
        written = AsyncResult()
        self._starting.append(written)
        self._queue_op(("start", entry))
        written.wait(START_WAIT)

    def settle(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        entry.history.append(result)
        if len(entry.history) > HISTORY_LIMIT:
            del entry.history[1]
        if outcome.verdict is Verdict.SUCCESS:
            entry.state = State.SUCCEEDED
        elif outcome.verdict is Verdict.FAIL:
            entry.state, entry.reason = State.DEAD, outcome.reason
        else:
            entry.state, entry.due = State.RETRYING, time.time() + outcome.delay
        self._held.pop(entry.handle, None)
        self._room.set()
        self._counts["running"] = len(self._held)
        self._queue_op(("settle", entry))

    def defer(self, entry: Entry, due: float) -> None:
        """Back to the shared retry set, unattempted: any daemon may run it when due."""
        entry.state, entry.due = State.QUEUED, due
        self._held.pop(entry.handle, None)
        self._room.set()
        self._counts["running"] = len(self._held)
        self._queue_op(("settle", entry))

    def _queue_op(self, op: tuple) -> None:
        if op[0] == "settle":
            self._settling.add(op[1].handle)
        self._ops.append(op)
        self._wake.set()

    # -- the writer: settlements batched into one transaction per round trip

    def _write_loop(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self.flush():
                backoff = 0.1
            else:
                self._stop.wait(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)
                self._wake.set()

    def flush(self) -> bool:
        """Write pending settlements; False (and kept for the next try) when Redis fails."""
        ops, self._ops = self._ops, []
        starting, self._starting = self._starting, []
        if not ops:
            return True
        pipe = self.redis.pipeline(transaction=True)
        for op in ops:
            self._write(pipe, op)
        try:
            pipe.execute()
        except BaseException as e:  # kept for the next write, whatever stopped this one
            self._ops[:0] = ops
            self._starting[:0] = starting
            if not _passing(e):
                raise
            self._failed("write", e)
            return False
        self._recovered()
        self._settling.difference_update(op[1].handle for op in ops if op[0] == "settle")
        for waiter in starting:
            waiter.set(True)
        return True

    def _write(self, pipe, op: tuple) -> None:
        kind, item = op
        if kind == "ack":
            pipe.xack(self.stream, self.group, item)
            pipe.xdel(self.stream, item)
            return
        entry: Entry = item
        status_key = f"{self.config.prefix}:job:{entry.job.id}"
        if kind == "start":  # the state and the attempt count; the job itself is there since intake
            pipe.hset(status_key, mapping={"state": entry.state.value, "attempts": entry.attempts})
            return
        payload = _payload(entry)
        last = entry.history[-1] if entry.history else None
        status = {"state": entry.state.value, "payload": payload, "attempts": entry.attempts,
                  "reason": entry.reason,
                  "due": entry.due, "last_status": "" if not last or last.status is None else last.status,
                  "last_error": (last.error or "") if last else ""}
        if kind == "settle":
            pipe.xack(self.stream, self.group, entry.handle)
            pipe.xdel(self.stream, entry.handle)
            if entry.state in (State.RETRYING, State.QUEUED):  # QUEUED: deferred for its host
                pipe.zadd(self.retry_set, {payload: entry.due})
            elif entry.state is State.DEAD:
                pipe.xadd(self.dead, {"payload": payload, "reason": entry.reason, "id": entry.job.id})
        pipe.hset(status_key, mapping=status)
        pipe.expire(status_key, self.config.status_ttl)

    # -- maintenance: due retries, counts, in-flight jobs kept fresh, gone consumers

    def _maintain_loop(self) -> None:
        last_counts = last_touch = last_sweep = last_beat = 0.0
        while not self._stop.wait(MOVE_EVERY):
            now = time.monotonic()
            try:
                if now - last_beat >= self.config.heartbeat:
                    self._beat()
                    last_beat = now
                self._move(keys=[self.retry_set, self.stream], args=[time.time(), 500])
                if now - last_counts >= COUNTS_EVERY:
                    self._refresh_counts()
                    last_counts = now
                if now - last_touch >= self.config.claim_idle / 3:
                    self._touch_held()
                    last_touch = now
                if now - last_sweep >= self.config.claim_idle:
                    self._sweep_consumers()
                    last_sweep = now
            except REDIS_ERRORS as e:
                self._failed("maintenance", e)
            except redis.ResponseError as e:
                if _passing(e):
                    self._failed("maintenance", e)
                else:
                    log.warning("broker: maintenance: %s", e)
            else:
                self._recovered()  # its script writes: Redis takes writes again

    def _sweep_consumers(self) -> None:
        """Forget consumers of daemons that are gone: nothing pending, idle for long.
        (A live one removed by mistake comes back by itself at its next read.)"""
        self._sweep(keys=[self.stream], args=[self.group, self.consumer, int(2000 * self.config.claim_idle)])

    def _refresh_counts(self) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(self.stream)
        pipe.xpending(self.stream, self.group)
        pipe.zcard(self.retry_set)
        pipe.xlen(self.dead)
        pipe.xrange(self.stream, count=1)
        pipe.info("replication")
        length, pending, retrying, dead, head, replication = pipe.execute()
        self._replicas = int(replication.get("connected_slaves", 0))
        pending = pending["pending"] if isinstance(pending, dict) else 0
        oldest = int(head[0][0].split(b"-")[0]) / 1000 if head else None  # a stream id: milliseconds-seq
        self.shared = {"stream_length": length, "pending": pending, "oldest": oldest}
        self._counts.update(queued=max(0, length - pending), retrying=retrying, dead=dead)

    def _touch_held(self) -> None:
        """Reset the idle time of the jobs this daemon holds, so nobody takes them over; a job
        another daemon took over meanwhile (this one was paused) is left with it."""
        if not self._held:
            return
        owned = {_text_id(p["message_id"]) for p in self.redis.xpending_range(
            self.stream, self.group, "-", "+", len(self._held) + len(self._settling), consumername=self.consumer)}
        held = [i for i in self._held if i in owned]
        for start in range(0, len(held), 500):
            self.redis.xclaim(self.stream, self.group, self.consumer, 0, held[start:start + 500],
                              justid=True)

    def _beat(self) -> None:
        """This daemon is alive for 3 more heartbeats."""
        self.redis.set(self.alive_prefix + self.consumer, 1, px=int(3000 * self.config.heartbeat))

    # -- look-ups

    def get(self, job_id: str) -> Entry | None:
        try:
            status = self.redis.hgetall(f"{self.config.prefix}:job:{job_id}")
        except REDIS_ERRORS as e:
            raise BrokerUnavailable(f"broker: Redis unavailable ({e})") from None
        if b"payload" not in status:  # unknown, or expired (status_ttl) before its attempt began
            return None
        entry = _entry(status[b"payload"], state=State(status[b"state"].decode()))
        entry.attempts = int(status.get(b"attempts", entry.attempts))
        entry.reason = status.get(b"reason", b"").decode()
        entry.due = float(status.get(b"due", 0) or 0)
        return entry

    def health(self) -> str | None:
        return None if self.healthy else "broker: Redis unavailable"

    def oldest_accepted(self) -> float | None:
        """The oldest entry of the shared stream (its id is its time), as last looked at."""
        return self.shared.get("oldest")

    def stored_bytes(self) -> int:
        return 0

    def counts(self) -> dict[str, int]:
        """Shared counts (the whole fleet's), refreshed every second; running is this daemon's."""
        return dict(self._counts)

    # -- dead letters

    def dead_letters(self) -> list[Entry]:
        return self.dlq.dead_letters()

    def replay(self, ids: Iterable[str] | None) -> list[str]:
        return self.dlq.run("replay", None if ids is None else list(ids))

    def purge(self, ids: Iterable[str] | None) -> list[str]:
        return self.dlq.run("purge", None if ids is None else list(ids))

    # -- stopping

    def close(self) -> None:
        """Write what is pending; give back jobs still held (a drain that timed out) as new
        stream entries, so no consumer that is gone holds any; leave the group."""
        self._stop.set()
        self._wake.set()
        gevent.joinall(self._loops)
        try:
            if not self.flush():
                raise redis.ConnectionError("settlements not written")
            given = len(self._held)
            if self._held:  # with their attempts so far
                pipe = self.redis.pipeline(transaction=True)
                for msg_id, entry in self._held.items():
                    pipe.xadd(self.stream, {"payload": _payload(entry)})
                    pipe.xack(self.stream, self.group, msg_id)
                    pipe.xdel(self.stream, msg_id)
                pipe.execute()
            given += self._leave(keys=[self.stream], args=[self.group, self.consumer])
            self.redis.delete(self.alive_prefix + self.consumer)
            if given:
                log.info("broker: %d unfinished job(s) given back to the stream", given)
        except REDIS_ERRORS as e:
            log.error("broker: Redis unavailable at exit (%s): %d job(s) stay pending and are taken "
                      "over by another daemon within %g s", e, len(self._held), 3 * self.config.heartbeat)
        self.redis.close()


class DeadLetters:
    """The dead-letter stream: `gq dlq` and the broker both work on it (no daemon needed)."""

    def __init__(self, client: redis.Redis, config: BrokerConfig):
        self.redis, self.prefix = client, config.prefix
        self.stream, self.dead = f"{config.prefix}:jobs", f"{config.prefix}:dead"

    @classmethod
    def open(cls, config: BrokerConfig) -> DeadLetters:
        return cls(client(config.url), config)

    def dead_letters(self) -> list[Entry]:
        return [self._entry(fields) for _, fields in self._all()]

    def _all(self) -> list:
        try:
            return self.redis.xrange(self.dead)
        except REDIS_ERRORS as e:
            raise GqError(f"broker: cannot reach Redis: {e}") from None

    @staticmethod
    def _entry(fields: dict) -> Entry:
        entry = _entry(fields[b"payload"], state=State.DEAD)
        entry.reason = fields.get(b"reason", b"").decode()
        return entry

    def run(self, op: str, ids: list[str] | None) -> list[str]:
        """replay (back to the stream, attempts reset) or purge; returns the ids done."""
        wanted = None if ids is None else set(ids)
        picked, seen = [], set()
        for msg_id, fields in self._all():
            entry = self._entry(fields)
            if (wanted is None or entry.job.id in wanted) and entry.job.id not in seen:
                picked.append((msg_id, entry))
                seen.add(entry.job.id)
        pipe = self.redis.pipeline(transaction=True)
        for msg_id, entry in picked:
            pipe.xdel(self.dead, msg_id)
            status_key = f"{self.prefix}:job:{entry.job.id}"
            if op == "replay":
                entry.attempts, entry.reason, entry.state = 0, "", State.QUEUED
                payload = _payload(entry)
                pipe.xadd(self.stream, {"payload": payload})
                pipe.hset(status_key, mapping={"state": "queued", "payload": payload, "attempts": 0, "reason": ""})
            else:
                pipe.delete(status_key)
        try:
            pipe.execute()
        except REDIS_ERRORS as e:
            raise GqError(f"broker: cannot reach Redis: {e}") from None
        return [entry.job.id for _, entry in picked]

    def close(self) -> None:
        self.redis.close()


def _text_id(msg_id: bytes | str) -> str:
    return msg_id.decode() if isinstance(msg_id, bytes) else msg_id
