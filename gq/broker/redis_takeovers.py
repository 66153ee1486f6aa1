"""Takeovers: the jobs of daemons that can no longer run them, taken by this one.

Two kinds: the jobs of a daemon whose liveness key expired (three heartbeats
without a beat), looked for once a heartbeat; and any job idle in a consumer's
hands for broker.claim_idle seconds (XAUTOCLAIM), looked for twice in that time.
A job taken over keeps the attempts its state records.

Neither is looked for until Redis has served this daemon for 3 heartbeats (a dead
daemon's) or claim_idle (an idle job) since it last failed or refused writes: while Redis
was away (killed, restarted on its append-only file, a read-only replica) no daemon could
beat or keep its jobs fresh, so a liveness key expired then, or an idle time grown then,
says nothing of a daemon that still runs its jobs. Its holder, reaching Redis again, beats
and keeps them fresh within that time.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Set
from typing import Any

import redis

from gq.broker import Entry, State, attempt_of
from gq.broker.redis_link import Health, Keys, lua_script, text_id
from gq.broker.sections import BrokerConfig

log = logging.getLogger("gq.redis")

SILENT_BEATS = 3    # heartbeats a daemon's liveness key lasts without a beat
Taken = Callable[[Any, Any], "Entry | None"]   # (stream id, fields) → the entry, now held here


class Takeovers:
    def __init__(self, client: redis.Redis, config: BrokerConfig, consumer: str, taken: Taken,
                 mine: Callable[[], Set[str]], link: Health):
        self.redis, self.config, self.consumer, self.link = client, config, consumer, link
        self.keys = Keys.of(config.prefix)
        self._taken, self._mine = taken, mine
        self._takeover = client.register_script(lua_script("takeover"))
        self._last_takeover = self._last_claim = 0.0

    def claim(self, limit: int) -> list[Entry]:
        """Up to `limit` jobs to run here: a dead daemon's first, else stale ones; often none."""
        served = self.link.served_for()
        dead = self._dead(limit) if served >= SILENT_BEATS * self.config.heartbeat else []
        return dead or (self._stale(limit) if served >= self.config.claim_idle else [])

    def _dead(self, limit: int) -> list[Entry]:
        now = time.monotonic()
        if now - self._last_takeover < self.config.heartbeat:
            return []
        self._last_takeover = now
        claimed = self._takeover(keys=[self.keys.stream],
                                 args=[self.keys.group, self.consumer, limit, self.keys.alive_prefix])
        entries = [e for e in (self._taken(msg_id, dict(zip(fields[::2], fields[1::2])) if fields else None)
                               for msg_id, fields in claimed) if e]
        if entries:
            self._resume_attempts(entries)
            log.warning("broker: took over %d job(s) of a daemon silent for %g heartbeats", len(entries),
                        SILENT_BEATS)
        return entries

    def _stale(self, limit: int) -> list[Entry]:
        now = time.monotonic()
        if now - self._last_claim < self.config.claim_idle / 2:
            return []
        self._last_claim = now
        _, claimed, *_ = self.redis.xautoclaim(self.keys.stream, self.keys.group, self.consumer,
                                               int(self.config.claim_idle * 1000), "0-0", count=limit)
        mine = self._mine()
        entries = [e for e in (self._taken(msg_id, fields) for msg_id, fields in claimed
                               if text_id(msg_id) not in mine) if e]
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
            pipe.hmget(self.keys.status(entry.job.id), "payload", "attempts", "state")
        for entry, (recorded, attempts, state) in zip(entries, pipe.execute()):
            if recorded:
                known = json.loads(recorded)
                if known["attempts"] > entry.attempts:
                    entry.attempts = known["attempts"]
                    entry.history = [attempt_of(a) for a in known["history"]]
            entry.attempts = max(entry.attempts, int(attempts or 0))
            # An attempt begun and never settled: its daemon died during it.
            entry.interrupted = state == State.RUNNING.value.encode() and entry.attempts > 0
