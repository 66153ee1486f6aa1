"""What every part of the Redis broker shares: the client, the keys, which errors mean that
Redis cannot serve now, whether it serves (Health), and a job's form in Redis."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool

from gq.broker import Entry, State, attempt_of, stored
from gq.broker.redis_urls import SENTINEL_SCHEME, sentinel_parts
from gq.core.job import as_stored, parse
from gq.errors import GqError

log = logging.getLogger("gq.redis")

BACKOFF_MAX = 5.0     # seconds between reconnection attempts, at most
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


CONNECTIONS = 16  # to Redis, per daemon: callers beyond them wait for one (up to REDIS_TIMEOUT)


class BlockingSentinelPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """redis-py's pool of connections to the master the sentinels name, bounded as the pool
    of a redis:// URL is (redis-py's own opens one more connection for each caller that finds
    none free). A connection to a master that is no longer the master is closed on release,
    and its place given back."""


def client(url: str) -> redis.Redis:
    """A client for the Redis the URL names; its callers share CONNECTIONS connections.
    redis+sentinel://: the master the sentinels name now, found again after a failover
    (redis-py's Sentinel), with the master's credentials before the @ and the sentinels'
    in the query."""
    timeouts: dict[str, Any] = {"socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT}
    pooled: dict[str, Any] = {"max_connections": CONNECTIONS, "timeout": REDIS_TIMEOUT, "health_check_interval": 30}
    if url.startswith(SENTINEL_SCHEME):
        parts = sentinel_parts(url)
        sentinel = Sentinel(parts.sentinels, sentinel_kwargs={
            **timeouts, "username": parts.sentinel_username, "password": parts.sentinel_password}, **timeouts)
        return sentinel.master_for(parts.service, connection_pool_class=BlockingSentinelPool, db=parts.db,
                                   username=parts.username, password=parts.password, **pooled)
    return redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(url, **pooled, **timeouts))


def passing(error: BaseException) -> bool:
    """The error says Redis cannot serve now (it will again), not that gq asked wrongly."""
    return isinstance(error, REDIS_ERRORS) or (
        isinstance(error, redis.ResponseError) and str(error).startswith(PASSING_REPLIES))


# Scripts that move jobs, and so need scripts/keys.lua (the ordering keys' rules, the ledger's
# moves) before them.
PLACING = ("add", "cancel", "settle", "start", "requeue", "forget", "purge")


def lua_script(name: str) -> str:
    """A Lua script of scripts/ (each says what it does, atomically, in Redis)."""
    scripts = files("gq.broker") / "scripts"
    text = (scripts / f"{name}.lua").read_text(encoding="utf-8")
    if name == "add":  # intake also indexes the jobs it accepts (redis_operations)
        text = (scripts / "accepted.lua").read_text(encoding="utf-8") + text
    return (scripts / "keys.lua").read_text(encoding="utf-8") + text if name in PLACING else text


@dataclass(frozen=True)
class Keys:
    """The keys of one fleet, under broker.prefix P (see redis_streams)."""

    stream: str          # P:jobs
    group: str           # P:workers
    retry_set: str       # P:retry
    dead: str            # P:dead
    alive_prefix: str    # P:alive:CONSUMER
    status_prefix: str   # P:job:ID
    prefix: str          # P (scripts/keys.lua names its keys from it)
    unfinished: str      # P:unfinished
    audit: str           # P:audit

    @classmethod
    def of(cls, p: str) -> Keys:
        return cls(f"{p}:jobs", f"{p}:workers", f"{p}:retry", f"{p}:dead", f"{p}:alive:", f"{p}:job:", p,
                   f"{p}:unfinished", f"{p}:audit")

    def status(self, job_id: str) -> str:
        return self.status_prefix + job_id


class Health:
    """Whether Redis serves this daemon now, as its writes last said: /readyz reads it; and
    since when (time.monotonic())."""

    def __init__(self) -> None:
        self.healthy = False
        self.since = 0.0

    def failed(self, what: str, error: BaseException) -> None:
        if self.healthy:
            log.error("broker: Redis %s failed (%s); retrying with backoff, not ready meanwhile", what, error)
        self.healthy = False

    def recovered(self) -> None:
        if not self.healthy:
            log.info("broker: Redis reachable again")
            self.since = time.monotonic()
        self.healthy = True

    def served_for(self) -> float:
        """Seconds Redis has served this daemon without a failure; 0 while it does not."""
        return time.monotonic() - self.since if self.healthy else 0.0


def payload(entry: Entry) -> str:
    """A stream entry's one field: the job, the attempts made and their history."""
    head = json.dumps({"attempts": entry.attempts, "history": [stored(a) for a in entry.history]},
                      ensure_ascii=False)
    return head[:-1] + f', "job": {entry.job.to_json()}}}'  # the job as it is, not parsed again


def entry_of(data: str | bytes, handle: Any = None, state: State = State.QUEUED, strict: bool = True) -> Entry:
    """The Entry a payload() holds. `strict` (a job to run): its job is parsed again, checked
    as at intake (ValueError or GqError when it no longer passes); not (a look-up): the job
    as stored, valid or not (gq.core.job.as_stored, as the journal reads its look-ups)."""
    loaded = json.loads(data)
    spec = loaded.get("job") if isinstance(loaded, dict) else None
    if strict:
        job = parse(spec)
    else:
        job = as_stored(str(spec.get("id", "")) if isinstance(spec, dict) else "", spec)
    return Entry(job, state, loaded.get("attempts", 0) if isinstance(loaded, dict) else 0,
                 history=[attempt_of(a) for a in loaded.get("history", ())], handle=handle)


@dataclass(frozen=True)
class Unreadable:
    """A stream entry that is no longer a job gq may run (one from an earlier gq that this
    one refuses), as far as it can be read: it becomes a dead letter that says why."""

    handle: str
    job_id: str
    key: str
    payload: str
    reason: str


def unreadable(handle: str, data: bytes | str, error: Exception) -> Unreadable:
    try:
        entry = entry_of(data, strict=False)
        job_id, key = entry.job.id, entry.job.ordering_key or ""
    except (ValueError, TypeError, AttributeError, KeyError):
        job_id, key = "", ""
    raw = data.decode(errors="replace") if isinstance(data, bytes) else data
    return Unreadable(handle, job_id, key, raw, f"unreadable in the stream: {error}")


READ_ERRORS = (ValueError, TypeError, KeyError, GqError)  # a payload that is no job to run


def text_id(msg_id: bytes | str) -> str:
    return msg_id.decode() if isinstance(msg_id, bytes) else msg_id
