"""A daemon's membership of its fleet: the consumer group joined at start (and again when
Redis lost it), left at close; and the fleet's ledger, which every member's scripts keep
(gq/broker/redis_streams.py joins, leaves, and reads the ledger for the metrics)."""

from __future__ import annotations

import time
from typing import Any

import redis

from gq.broker.redis_link import REDIS_ERRORS, Health, Keys, lua_script
from gq.broker.redis_maintenance import RedisMaintenance
from gq.broker.sections import BrokerConfig
from gq.core import redaction
from gq.core.lifecycle import LEDGER
from gq.errors import GqError


class Membership:
    """`consumer` in the group of the fleet [broker] names; joining says Redis serves again
    (`link`) and has `maintenance` read the fleet's counts and beat at once."""

    def __init__(self, client: redis.Redis, keys: Keys, config: BrokerConfig, consumer: str, link: Health,
                 maintenance: RedisMaintenance):
        self.redis, self.keys, self.config, self.consumer = client, keys, config, consumer
        self.link, self.maintenance = link, maintenance
        self._leave = client.register_script(lua_script("leave"))
        self._begin_ledger = client.register_script(lua_script("ledger"))

    def join(self) -> None:
        """Create the group (and stream) if missing; raises GqError if Redis cannot be reached."""
        try:
            try:
                self.redis.xgroup_create(self.keys.stream, self.keys.group, id="0", mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise
            self._count_unfinished()
            self._begin_ledger(keys=[self.keys.prefix], args=[time.time()])
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
        pipe.xlen(self.keys.stream)
        pipe.zcard(self.keys.retry_set)
        length, waiting = pipe.execute()
        self.redis.set(self.keys.unfinished, length + waiting, nx=True)

    def leave(self) -> int:
        """Leave the group, this daemon no longer alive; returns how many entries were still
        pending for it (read, maybe never seen), each given back to the stream as a new entry."""
        given: int = self._leave(keys=[self.keys.stream], args=[self.keys.group, self.consumer])
        self.redis.delete(self.keys.alive_prefix + self.consumer)
        return given

    def ledger(self) -> dict[str, int] | None:
        """The fleet's, as its scripts keep it (P:counts), read now: one reading."""
        try:
            kept: Any = self.redis.hgetall(self.keys.prefix + ":counts")
        except REDIS_ERRORS:
            return None
        return {name: int(kept.get(name.encode(), 0)) for name in LEDGER}
