"""The Redis broker's intake: jobs into the shared stream (a scheduled one into the retry
set until due, one of an ordering key behind the key's head), each id once (scripts/add.lua),
answered for only once Redis has them (and, under Sentinel with replicas, a replica too)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from gq.broker import Added, Entry
from gq.broker.redis_link import REDIS_ERRORS, REDIS_TIMEOUT, Health, Keys, lua_script, passing, payload
from gq.broker.sections import BrokerConfig
from gq.core.job import Job
from gq.errors import BacklogFull, BrokerUnavailable


class RedisIntake:
    def __init__(self, client: redis.Redis, config: BrokerConfig, link: Health, replicated: Callable[[], bool]):
        """`replicated()`: a failover could promote a replica now (Sentinel, replicas seen)."""
        self.redis, self.config, self.link, self._replicated = client, config, link, replicated
        self.stream = Keys.of(config.prefix).stream
        self._add = client.register_script(lua_script("add"))

    def add(self, jobs: list[Job]) -> Added:
        prefix = self.config.prefix
        keys = [self.stream, f"{prefix}:id:", f"{prefix}:job:", self.config.status_ttl, prefix]
        now = time.time()
        args: list[Any] = [self.config.max_backlog, now]
        for job in jobs:
            due = job.run_at if job.run_at is not None and job.run_at > now else 0
            args += [job.id, payload(Entry(job)), due, job.ordering_key or ""]
        try:
            fresh = self._added(keys, args)
        except REDIS_ERRORS as e:
            self.link.failed("intake", e)
            raise BrokerUnavailable(f"broker: Redis unavailable ({e})") from None
        except redis.ResponseError as e:
            if passing(e):
                self.link.failed("intake", e)
                raise BrokerUnavailable(f"broker: Redis unavailable ({e})") from None
            if "NOGROUP" not in str(e) and "NOSCRIPT" not in str(e):
                raise
            raise BrokerUnavailable(f"broker: Redis lost its data ({e}); try again") from None
        if fresh == -1:
            raise BacklogFull(f"backlog full: the fleet holds broker.max_backlog ({self.config.max_backlog}) "
                              "unfinished jobs at most; try again once some are delivered")
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
        if not self._replicated():  # no replica: no failover can lose them
            return self._add(keys=keys, args=args)
        pipe = self.redis.pipeline(transaction=False)
        self._add(keys=keys, args=args, client=pipe)
        pipe.wait(1, int(REDIS_TIMEOUT * 1000))
        fresh, replicas = pipe.execute()
        if fresh != -1 and fresh and replicas < 1:
            raise BrokerUnavailable("broker: no Redis replica confirmed the jobs within "
                                    f"{REDIS_TIMEOUT:g}s; send them again with the same ids")
        return fresh
