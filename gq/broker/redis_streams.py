"""The Redis Streams broker: many gq daemons share one queue through a consumer group.

Keys, under `broker.prefix` (P):
    P:jobs       stream of jobs to run; one consumer group, P:workers, each daemon a consumer
    P:retry      sorted set of jobs waiting for their next attempt (score: when due)
    P:dead       stream of dead letters
    P:id:ID      the job id is known (idempotent intake): until broker.status_ttl seconds
                 after its job ends (no expiry while it is unfinished)
    P:job:ID     hash: the job's state, attempts and history, for GET /v1/jobs/{id}; kept as
                 long as P:id:ID
    P:unfinished the fleet's unfinished jobs, wherever they wait: the backlog bound
    P:seq        the order of acceptance (each job's place in it: seq in P:job:ID)
    P:alive:C    consumer C's daemon is alive (set every broker.heartbeat, expires after 3)
    P:head:K     the one job of ordering key K that runs or waits to (on the stream, in P:retry)
    P:behind:K   sorted set of K's other unfinished jobs, by their place in the order
                 accepted: a replayed job takes its place again (scripts/keys.lua)

Every entry carries one field, `payload`: JSON of the job, the attempts made and
their history. A job is XADDed at intake, read by one daemon with XREADGROUP
(no more than pool.size + broker.prefetch held at once), and XACKed and XDELeted
when its attempt's outcome is final: the stream holds only unfinished work (Redis 7
cannot trim only acknowledged entries, so MAXLEN is not used: it could drop unread
jobs). A retry moves the job to P:retry, held by no daemon, until a mover puts it
back on the stream. A daemon that dies leaves its jobs pending: once its P:alive key
expires another daemon takes them over at once, and after broker.claim_idle seconds
any job idle in a consumer's hands is taken over (XAUTOCLAIM), so a job runs at
least once. Live daemons keep their own jobs from looking idle. A scheduled job waits in
P:retry until due. A cancelled job is marked so in its P:job hash; a daemon that reads it
finds it so when it would start it, and drops it. Every move of a job is guarded in its
script by the states gq.lifecycle allows it from (`sources(event)`, passed in), so that a
move the table refuses (a held job cancelled, then handed back) is refused atomically. An
attempt goes ahead only once its start is written. The Lua scripts that must be atomic are
in scripts/, one a file.

This module is the broker's reads and look-ups. Its intake is RedisIntake's
(redis_intake), its writes RedisWriter's (redis_writer), its takeovers of other
daemons' jobs Takeovers' (redis_takeovers), what runs beside the jobs
RedisMaintenance's (redis_maintenance); what they all share is in redis_link.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable, Iterator
from typing import Any

import gevent
import redis
from gevent.event import Event

from gq import redaction
from gq.broker import Added, Conflict, Entry, Filter, FleetLink, Found, Replayed, State, record
from gq.broker.redis_intake import RedisIntake
from gq.broker.redis_link import (
    READ_ERRORS,
    REDIS_ERRORS,
    Health,
    Keys,
    client,
    entry_of,
    lua_script,
    passing,
    payload,
    text_id,
    unreadable,
)
from gq.broker.redis_maintenance import RedisMaintenance
from gq.broker.redis_operations import RedisOperations
from gq.broker.redis_takeovers import Takeovers
from gq.broker.redis_writer import RedisWriter
from gq.config import SENTINEL_SCHEME, BrokerConfig
from gq.errors import BrokerUnavailable, GqError
from gq.job import Job
from gq.lifecycle import CANCELLABLE, sources
from gq.lifecycle import Event as LifeEvent
from gq.outcome import AttemptResult, Outcome, Verdict
from gq.supervisor import Supervisor

log = logging.getLogger("gq.redis")

BACKOFF_MAX = 5.0     # seconds a failed read waits before the next, at most
START_WAIT = 5.0      # seconds an attempt waits for its start to be written (else: handed back, not attempted)
SETTLE_WAIT = 5.0     # seconds a settlement waits for its write (else: kept, written once Redis answers)


class RedisBroker:
    backlog = True

    def __init__(self, config: BrokerConfig, supervisor: Supervisor | None = None, hold_at_most: int = 200):
        """`hold_at_most`: jobs taken from the stream and not yet settled, at most (pool.size
        + broker.prefetch): the rest stay in the stream for whichever daemon is free."""
        self.config = config
        self.hold_at_most = hold_at_most
        self.keys = keys = Keys.of(config.prefix)
        self.stream, self.group = keys.stream, keys.group
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        # Few connections serve all: one blocks in XREADGROUP, the writer batches settlements,
        # intake requests and maintenance share the rest; more callers wait for one.
        self.redis = client(config.url)
        self.sentinel = config.url.startswith(SENTINEL_SCHEME)
        self._leave = self.redis.register_script(lua_script("leave"))
        self._cancel = self.redis.register_script(lua_script("cancel"))
        self._room = Event()   # set when a held job is settled or deferred
        self._held: dict[str, Entry] = {}         # taken and not settled, by stream id
        self.link = Health()
        self.writer = RedisWriter(self.redis, keys, config.status_ttl, self.link)
        # Entries this daemon still holds, or has settled but not yet written (Redis refusing
        # writes, its touches failing meanwhile), are its own: never taken over.
        self.takeovers = Takeovers(self.redis, config, self.consumer, self._taken,
                                   lambda: self._held.keys() | self.writer.settling)
        self.maintenance = RedisMaintenance(self.redis, keys, config, self.consumer, self._held,
                                            self.writer.settling, self.link)
        self.intake = RedisIntake(self.redis, config, self.link,
                                  lambda: self.sentinel and bool(self.maintenance.replicas))
        self.operations = RedisOperations(self.redis, keys, config.status_ttl, lambda: self.writer.settling)
        self._stopped = Event()
        self._connect()
        supervisor = supervisor or Supervisor()
        self._loops = [supervisor.spawn("Redis writer", self.writer.loop),
                       supervisor.spawn("Redis maintenance", self.maintenance.loop),
                       supervisor.spawn("Redis index of jobs", lambda: self.operations.loop(self._stopped))]

    # -- capabilities (gq.broker.Capabilities): the fleet's limits and gauges

    def fleet(self) -> FleetLink:
        return FleetLink(self.redis, self.config.prefix, self.consumer)

    def shared_gauges(self) -> RedisMaintenance:
        return self.maintenance

    def batch_ledger(self) -> None:
        return None

    # -- connection

    def _connect(self) -> None:
        """Create the group (and stream) if missing; raises GqError if Redis cannot be reached."""
        try:
            try:
                self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise
            self._count_unfinished()
            self.maintenance.refresh_counts()
            self.maintenance.beat()
        except REDIS_ERRORS as e:
            raise GqError(f"broker: cannot reach Redis at {redaction.url(self.config.url)}: {e}") from None
        self.link.recovered()

    def _count_unfinished(self) -> None:
        """P:unfinished, which the scripts keep, from a fleet of an earlier gq that kept none:
        the stream and the retry set; the jobs behind a key are not counted, so that count is short
        by them until they are done."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.xlen(self.stream)
        pipe.zcard(self.keys.retry_set)
        length, waiting = pipe.execute()
        self.redis.set(self.keys.unfinished, length + waiting, nx=True)

    # -- intake

    def add(self, jobs: Iterable[Job], hold: int = 0) -> Added:
        """Into the shared stream: every daemon of the fleet takes from it (`hold` is not used)."""
        return self.intake.add(list(jobs))

    # -- dispatch

    def take(self, limit: int, timeout: float) -> list[Entry]:
        """Jobs of dead daemons first, then jobs idle too long in any consumer's hands, then
        new ones (XREADGROUP, blocking); never more than hold_at_most held in all."""
        limit = min(limit, self.hold_at_most - len(self._held))
        if limit <= 0:
            self._room.clear()
            self._room.wait(timeout)
            return []
        entries: list[Entry | None]
        try:
            entries = list(self.takeovers.claim(limit))
            if not entries:
                reply: Any = self.redis.xreadgroup(self.group, self.consumer, {self.stream: ">"},
                                              count=limit, block=max(1, int(timeout * 1000)))
                entries = [self._taken(msg_id, fields) for _, messages in reply or ()
                           for msg_id, fields in messages]
        except REDIS_ERRORS as e:
            self.link.failed("read", e)
            self._stopped.wait(min(BACKOFF_MAX, max(timeout, 0.5)))
            return []
        except redis.ResponseError as e:
            if passing(e):
                self.link.failed("read", e)
                self._stopped.wait(min(BACKOFF_MAX, max(timeout, 0.5)))
                return []
            if "NOGROUP" not in str(e):
                raise
            log.warning("broker: the consumer group is gone (Redis lost its data?); creating it again")
            self._connect()
            return []
        # A read that works says nothing of writes (an out-of-memory Redis still reads):
        # only writes (the writer, maintenance) say Redis is usable again.
        return [e for e in entries if e is not None]

    def _taken(self, msg_id: bytes | str, fields: dict | None) -> Entry | None:
        handle = text_id(msg_id)
        if not fields:  # deleted while pending
            self.writer.ack(handle)
            return None
        try:
            entry = entry_of(fields[b"payload"], handle=handle)
        except READ_ERRORS as e:  # a dead letter that says why; the jobs beside it go on
            item = unreadable(handle, fields[b"payload"], e)
            log.error("broker: stream entry %s (job %s) cannot be read back as a job: %s; kept as a dead letter",
                      handle, item.job_id or "?", e)
            if item.job_id:
                self.writer.unreadable(item)
            else:
                self.writer.ack(handle)
            return None
        self._held[handle] = entry
        return entry

    def started(self, entry: Entry) -> None:
        """Returns once the attempt's start is written, so that a daemon dying during it
        leaves the attempt counted. The entry is RUNNING then, and only then may the attempt
        go: a job cancelled meanwhile is dropped (CANCELLED); one whose start Redis did not
        confirm within START_WAIT is handed back unattempted (QUEUED)."""
        entry.attempts += 1
        entry.state = State.RUNNING
        written = self.writer.start(entry)
        confirmed = written.wait(START_WAIT)
        if confirmed:
            return
        entry.attempts -= 1
        if confirmed is False:  # cancelled while it waited here
            entry.state = State.CANCELLED
            self._held.pop(entry.handle, None)
            self._room.set()
            self.writer.ack(entry.handle)
            return
        # Not confirmed: the start may yet be written. Held until it is known, then handed back.
        entry.state = State.QUEUED
        written.rawlink(lambda result: self._hand_back(entry, result.value))

    def _hand_back(self, entry: Entry, started: bool) -> None:
        """A start confirmed too late (Redis stalled): the attempt did not go. Written, it
        counts as an attempt whose outcome is unknown (retried now, like a takeover); refused
        (cancelled meanwhile), the entry is dropped."""
        if not started:
            self._held.pop(entry.handle, None)
            self._room.set()
            self.writer.ack(entry.handle)
            return
        entry.attempts += 1
        entry.state, entry.due = State.RETRYING, time.time()
        entry.reason = ""
        self._let_go(entry, wait=False)  # a callback: it cannot wait

    def settle(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        record(entry, result)
        if outcome.verdict is Verdict.SUCCESS:
            entry.state = State.SUCCEEDED
        elif outcome.verdict is Verdict.FAIL:
            entry.state, entry.reason = State.DEAD, outcome.reason
        else:
            entry.state, entry.due = State.RETRYING, time.time() + outcome.delay
        self._let_go(entry)

    def defer(self, entry: Entry, due: float) -> None:
        """Back to the shared retry set, unattempted: any daemon may run it when due."""
        entry.state, entry.due = State.QUEUED, due
        self._let_go(entry)

    def _let_go(self, entry: Entry, wait: bool = True) -> None:
        """Written before it returns, so that what comes next (a GET, a cancel, a replay, the
        backlog bound) sees it. With Redis down (known so: at once; else after SETTLE_WAIT) it
        returns all the same, the write kept to be done once Redis answers, and seen then: a
        drain does not wait for every job it hands back."""
        self._held.pop(entry.handle, None)
        self._room.set()
        written = self.writer.settle(entry)
        if wait and self.link.healthy:
            written.wait(SETTLE_WAIT)

    # -- look-ups

    def get(self, job_id: str) -> Entry | None:
        try:
            status: Any = self.redis.hgetall(self.keys.status(job_id))
        except REDIS_ERRORS as e:
            raise BrokerUnavailable(f"broker: Redis unavailable ({e})") from None
        if b"payload" not in status:  # unknown, or expired (status_ttl) before its attempt began
            return None
        state = State(status[b"state"].decode())
        try:
            entry = entry_of(status[b"payload"], state=state)
        except READ_ERRORS:  # a job no longer run as it is (from an earlier gq): shown as stored
            entry = entry_of(status[b"payload"], state=state, strict=False)
        entry.attempts = int(status.get(b"attempts", entry.attempts))
        entry.reason = status.get(b"reason", b"").decode()
        entry.due = float(status.get(b"due", 0) or 0)
        entry.accepted_at = float(status.get(b"accepted_at", 0) or 0)
        return entry

    def health(self) -> str | None:
        return None if self.link.healthy else "broker: Redis unavailable"

    def oldest_accepted(self) -> float | None:
        """The oldest entry of the shared stream (its id is its time), as last looked at."""
        return self.maintenance.shared.get("oldest")

    def stored_bytes(self) -> int:
        return 0

    def counts(self) -> dict[str, int]:
        """The whole fleet's counts by state, as its scripts keep them (P:counts), refreshed
        every second: a job held by a daemon and not started is queued."""
        return dict(self.maintenance.counts)

    # -- operations (find and replay: redis_operations)

    def cancel(self, job_id: str) -> bool:
        """In Redis, for the whole fleet: a daemon holding the job finds it cancelled when it
        would start it (scripts/start.lua)."""
        try:
            was = self._cancel(keys=[self.keys.prefix], args=[job_id, time.time(), self.config.status_ttl,
                                                                "|".join(sources(LifeEvent.CANCELLED))])
        except REDIS_ERRORS as e:
            raise BrokerUnavailable(f"broker: Redis unavailable ({e})") from None
        was = was.decode() if isinstance(was, bytes) else was
        if was == "unknown":
            return False
        if State(was) not in CANCELLABLE:
            raise Conflict(job_id, State(was))
        return True

    def find(self, where: Filter, limit: int) -> Iterator[Found]:
        return self.operations.find(where, limit)

    def replay(self, ids: Iterable[str] | None, states: Iterable[State] = (State.DEAD,)) -> Replayed:
        return self.operations.replay(ids, states)

    # -- stopping

    def close(self) -> None:
        """Write what is pending; give back jobs still held (a drain that timed out) as new
        stream entries, so no consumer that is gone holds any; leave the group."""
        self._stopped.set()
        self.writer.stop()
        self.maintenance.stopped.set()
        gevent.joinall(self._loops)
        try:
            if not self.writer.flush():
                raise redis.ConnectionError("settlements not written")
            given = len(self._held)
            if self._held:  # with their attempts so far
                pipe = self.redis.pipeline(transaction=True)
                for msg_id, entry in self._held.items():
                    pipe.xadd(self.stream, {"payload": payload(entry)})
                    pipe.xack(self.stream, self.group, msg_id)
                    pipe.xdel(self.stream, msg_id)
                pipe.execute()
            given += self._leave(keys=[self.stream], args=[self.group, self.consumer])
            self.redis.delete(self.keys.alive_prefix + self.consumer)
            if given:
                log.info("broker: %d unfinished job(s) given back to the stream", given)
        except REDIS_ERRORS as e:
            log.error("broker: Redis unavailable at exit (%s): %d job(s) stay pending and are taken "
                      "over by another daemon within %g s", e, len(self._held), 3 * self.config.heartbeat)
        self.redis.close()


class DeadLetters:
    """The dead-letter stream: `gq dlq` and the broker both work on it (no daemon needed)."""

    def __init__(self, client: redis.Redis, config: BrokerConfig):
        self.redis, self.keys, self.ttl = client, Keys.of(config.prefix), config.status_ttl
        self.stream, self.dead = self.keys.stream, self.keys.dead
        self._requeue = client.register_script(lua_script("requeue"))

    @classmethod
    def open(cls, config: BrokerConfig) -> DeadLetters:
        return cls(client(config.url), config)

    def dead_letters(self) -> list[Entry]:
        return [self._entry(fields) for _, fields in self._all()]

    def _all(self) -> list:
        try:
            replies: Any = self.redis.xrange(self.dead)
            return replies
        except REDIS_ERRORS as e:
            raise GqError(f"broker: cannot reach Redis: {e}") from None

    @staticmethod
    def _entry(fields: dict) -> Entry:
        entry = entry_of(fields[b"payload"], state=State.DEAD)
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
        now = time.time()
        for msg_id, entry in picked:
            pipe.xdel(self.dead, msg_id)
            if op == "replay":  # behind its ordering key's head, if the key has one
                entry.attempts, entry.reason, entry.state = 0, "", State.QUEUED
                self._requeue(keys=[self.keys.prefix], client=pipe, args=[
                    entry.job.id, payload(entry), entry.job.ordering_key or "", now, self.ttl,
                    "|".join(sources(LifeEvent.REPLAYED))])
            else:
                pipe.delete(self.keys.status(entry.job.id))
        try:
            pipe.execute()
        except REDIS_ERRORS as e:
            raise GqError(f"broker: cannot reach Redis: {e}") from None
        return [entry.job.id for _, entry in picked]

    def close(self) -> None:
        self.redis.close()

