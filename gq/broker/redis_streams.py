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
script by the states gq.core.lifecycle allows it from (`sources(event)`, passed in), so that a
move the table refuses (a held job cancelled, then handed back) is refused atomically. An
attempt goes ahead only once its start is written. The Lua scripts that must be atomic are
in scripts/, one a file.

This module is the broker's connection (set up and closed) and look-ups. Its intake is
RedisIntake's (redis_intake), its taking and holding of jobs until settled RedisDispatch's
(redis_dispatch), its writes RedisWriter's (redis_writer), its takeovers of other
daemons' jobs Takeovers' (redis_takeovers), what runs beside the jobs
RedisMaintenance's (redis_maintenance), joining and leaving the consumer group and
reading the fleet's ledger Membership's (redis_membership); what they all share is in
redis_link.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from collections.abc import Iterable, Iterator
from typing import Any

import gevent
import redis
from gevent.event import Event

from gq.broker import Added, Conflict, Entry, Filter, FleetLink, Found, Replayed, State
from gq.broker.redis_audit import RedisAudit
from gq.broker.redis_dispatch import RedisDispatch
from gq.broker.redis_intake import RedisIntake
from gq.broker.redis_link import (
    READ_ERRORS,
    REDIS_ERRORS,
    Health,
    Keys,
    client,
    entry_of,
    lua_script,
    payload,
)
from gq.broker.redis_maintenance import RedisMaintenance
from gq.broker.redis_membership import Membership
from gq.broker.redis_operations import RedisOperations
from gq.broker.redis_urls import SENTINEL_SCHEME
from gq.broker.redis_writer import RedisWriter
from gq.broker.sections import BrokerConfig, JournalConfig
from gq.core.audit import Audit, dlq_done
from gq.core.job import Job
from gq.core.lifecycle import CANCELLABLE, sources
from gq.core.lifecycle import Event as LifeEvent
from gq.core.outcome import AttemptResult, Outcome
from gq.core.supervisor import Supervisor
from gq.errors import BrokerUnavailable, GqError

log = logging.getLogger("gq.redis")


class RedisBroker(RedisAudit):
    """The Broker of a Redis fleet: the connection (the group joined at start, left at close,
    the jobs still held given back; its `membership` joins and leaves) and the look-ups;
    the rest is its parts'."""

    backlog = True

    @classmethod
    def from_config(cls, broker: BrokerConfig, journal: JournalConfig, supervisor: Supervisor | None = None, *,
                    pool_size: int) -> RedisBroker:
        """The stream [broker] names, holding what the pool runs and broker.prefetch beyond it;
        a succeeded job's body kept as [journal] keeps it."""
        return cls(broker, supervisor, hold_at_most=pool_size + (broker.prefetch or pool_size),
                   keep_payload=journal.keep_succeeded_payload)

    def __init__(self, config: BrokerConfig, supervisor: Supervisor | None = None, hold_at_most: int = 200,
                 keep_payload: bool = False):
        """`hold_at_most`: jobs taken from the stream and not yet settled, at most (pool.size
        + broker.prefetch): the rest stay in the stream for whichever daemon is free.
        `keep_payload` (journal.keep_succeeded_payload): a succeeded job keeps its body in
        its status hash (it can be replayed), else drops it as the journal does."""
        self.config = config
        self.keys = keys = Keys.of(config.prefix)
        self.stream, self.group = keys.stream, keys.group
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        # Few connections serve all: one blocks in XREADGROUP, the writer batches settlements,
        # intake requests and maintenance share the rest; more callers wait for one.
        self.redis = client(config.url)
        RedisAudit.__init__(self, self.redis, keys.audit)  # keep_action, actions: the fleet's audit stream
        self.sentinel = config.url.startswith(SENTINEL_SCHEME)
        self._cancel = self.redis.register_script(lua_script("cancel"))
        self._stopped = Event()
        self.link = Health()
        self.writer = RedisWriter(self.redis, keys, config.status_ttl, self.link, self.consumer)
        self.dispatch = RedisDispatch(self.redis, config, self.consumer, self.writer, self.link,
                                      hold_at_most, self._stopped, lambda: self.membership.join())
        self.dispatch.keep_payload = keep_payload
        self.maintenance = RedisMaintenance(self.redis, keys, config, self.consumer, self.dispatch.held,
                                            self.writer.settling, self.link)
        self.intake = RedisIntake(self.redis, config, self.link,
                                  lambda: self.sentinel and bool(self.maintenance.replicas))
        self.operations = RedisOperations(self.redis, keys, config.status_ttl, lambda: self.writer.settling)
        self.membership = Membership(self.redis, keys, config, self.consumer, self.link, self.maintenance)
        self.membership.join()
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

    # -- intake

    def add(self, jobs: Iterable[Job], hold: int = 0) -> Added:
        """Into the shared stream: every daemon of the fleet takes from it (`hold` is not used)."""
        return self.intake.add(list(jobs))

    # -- dispatch (redis_dispatch)

    def take(self, limit: int, timeout: float) -> list[Entry]:
        return self.dispatch.take(limit, timeout)

    def started(self, entry: Entry) -> None:
        self.dispatch.started(entry)

    def settle(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        self.dispatch.settle(entry, result, outcome)

    def defer(self, entry: Entry, due: float) -> None:
        self.dispatch.defer(entry, due)

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
        entry.trimmed = status.get(b"trimmed") == b"1"
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

    def ledger(self) -> dict[str, int] | None:
        return self.membership.ledger()

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

    def count(self, where: Filter, most: int) -> int:
        """Walked as `find` walks (the index by acceptance, each job's state looked up)."""
        return sum(1 for _ in self.operations.find(dataclasses.replace(where, after=None), most))

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
            held = self.dispatch.held
            given = len(held)
            if held:  # with their attempts so far
                pipe = self.redis.pipeline(transaction=True)
                for msg_id, entry in held.items():
                    pipe.xadd(self.stream, {"payload": payload(entry)})
                    pipe.xack(self.stream, self.group, msg_id)
                    pipe.xdel(self.stream, msg_id)
                pipe.execute()
            given += self.membership.leave()
            if given:
                log.info("broker: %d unfinished job(s) given back to the stream", given)
        except REDIS_ERRORS as e:
            log.error("broker: Redis unavailable at exit (%s): %d job(s) stay pending and are taken "
                      "over by another daemon within %g s", e, len(self.dispatch.held), 3 * self.config.heartbeat)
        self.redis.close()


class DeadLetters(RedisAudit):
    """The dead-letter stream: `gq dlq` and the broker both work on it (no daemon needed);
    what `gq dlq` does is recorded in the fleet's audit stream."""

    def __init__(self, client: redis.Redis, config: BrokerConfig):
        self.redis, self.keys, self.ttl = client, Keys.of(config.prefix), config.status_ttl
        RedisAudit.__init__(self, client, self.keys.audit)
        self.audit = Audit(self)
        self.stream, self.dead = self.keys.stream, self.keys.dead
        self._requeue = client.register_script(lua_script("requeue"))
        self._purge = client.register_script(lua_script("purge"))

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
                self._purge(keys=[self.keys.prefix], client=pipe, args=[entry.job.id])
        try:
            pipe.execute()
        except REDIS_ERRORS as e:
            raise GqError(f"broker: cannot reach Redis: {e}") from None
        done = [entry.job.id for _, entry in picked]
        dlq_done(self.audit, op, ids, done)
        return done

    def close(self) -> None:
        self.redis.close()

