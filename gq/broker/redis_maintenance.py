"""What a daemon of the fleet does beside its jobs: beat (it is alive), move due retries
back to the stream, read the fleet's counts (and forget finished jobs past their ttl), keep
the jobs it holds from looking idle, and forget the consumers of daemons that are gone."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from gevent.event import Event

from gq.broker import Entry
from gq.broker.redis_link import (
    REDIS_ERRORS,
    Health,
    Keys,
    lua_script,
    passing,
    text_id,
)
from gq.broker.sections import BrokerConfig

log = logging.getLogger("gq.redis")

MOVE_EVERY = 0.2      # seconds between looks for due retries
COUNTS_EVERY = 1.0    # seconds between refreshes of the shared counts (and forgetting jobs past the ttl)
FORGET_STEP = 1000    # finished jobs forgotten per script, so that Redis never blocks long for it


class RedisMaintenance:
    def __init__(self, client: redis.Redis, keys: Keys, config: BrokerConfig, consumer: str,
                 held: dict[str, Entry], settling: set[str], health: Health):
        """`held` and `settling`: the broker's jobs taken and not settled, and settled but not
        written (both this daemon's own, kept fresh)."""
        self.redis, self.keys, self.config, self.consumer = client, keys, config, consumer
        self.held, self.settling, self.health = held, settling, health
        self._move = client.register_script(lua_script("move"))
        self._sweep = client.register_script(lua_script("sweep"))
        self._forget = client.register_script(lua_script("forget"))
        self.shared: dict[str, Any] = {"stream_length": 0, "pending": 0}  # the fleet's, for the metrics
        self.counts = {"queued": 0, "scheduled": 0, "running": 0, "retrying": 0, "dead": 0}  # the fleet's
        self.replicas = 0   # the master's replicas, as last looked at
        self.stopped = Event()

    def loop(self) -> None:
        last_counts = last_touch = last_sweep = last_beat = 0.0
        while not self.stopped.wait(MOVE_EVERY):
            now = time.monotonic()
            try:
                if now - last_beat >= self.config.heartbeat:
                    self.beat()
                    last_beat = now
                self._move(keys=[self.keys.retry_set, self.keys.stream], args=[time.time(), 500])
                if now - last_counts >= COUNTS_EVERY:
                    while self._forget(keys=[self.keys.prefix], args=[time.time(), FORGET_STEP]) == FORGET_STEP:
                        pass
                    self.refresh_counts()
                    last_counts = now
                if now - last_touch >= self.config.claim_idle / 3:
                    self._touch_held()
                    last_touch = now
                if now - last_sweep >= self.config.claim_idle:
                    self._sweep_consumers()
                    last_sweep = now
            except REDIS_ERRORS as e:
                self.health.failed("maintenance", e)
            except redis.ResponseError as e:
                if passing(e):
                    self.health.failed("maintenance", e)
                else:
                    log.warning("broker: maintenance: %s", e)
            else:
                self.health.recovered()  # its script writes: Redis takes writes again

    def beat(self) -> None:
        """This daemon is alive for 3 more heartbeats."""
        self.redis.set(self.keys.alive_prefix + self.consumer, 1, px=int(3000 * self.config.heartbeat))

    def refresh_counts(self) -> None:
        keys = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.xlen(keys.stream)
        pipe.xpending(keys.stream, keys.group)
        pipe.zcard(keys.retry_set)
        pipe.xlen(keys.dead)
        pipe.xrange(keys.stream, count=1)
        pipe.info("replication")
        pipe.hgetall(keys.prefix + ":counts")
        length, pending, retrying, dead, head, replication, states = pipe.execute()
        self.replicas = int(replication.get("connected_slaves", 0))
        pending = pending["pending"] if isinstance(pending, dict) else 0
        oldest = int(head[0][0].split(b"-")[0]) / 1000 if head else None  # a stream id: milliseconds-seq
        self.shared = {"stream_length": length, "pending": pending, "oldest": oldest}
        by_state = {name.decode(): max(0, int(n)) for name, n in states.items()}  # kept by the scripts
        self.counts.update({state: by_state.get(state, 0) for state in ("queued", "scheduled", "running", "retrying")},
                           dead=dead)

    def _sweep_consumers(self) -> None:
        """Forget consumers of daemons that are gone: nothing pending, idle for long.
        (A live one removed by mistake comes back by itself at its next read.)"""
        self._sweep(keys=[self.keys.stream], args=[self.keys.group, self.consumer, int(2000 * self.config.claim_idle)])

    def _touch_held(self) -> None:
        """Reset the idle time of the jobs this daemon holds, and of those it settled and could
        not write yet (Redis away: their outcome is written once it is back), so nobody takes
        them over; a job another daemon took over meanwhile (this one was paused) is left
        with it."""
        if not self.held and not self.settling:
            return
        keys = self.keys
        pending: Any = self.redis.xpending_range(
            keys.stream, keys.group, "-", "+", len(self.held) + len(self.settling), consumername=self.consumer)
        owned = {text_id(p["message_id"]) for p in pending}
        held: list[Any] = [i for i in (*self.held, *self.settling) if i in owned]
        for start in range(0, len(held), 500):
            self.redis.xclaim(keys.stream, keys.group, self.consumer, 0, held[start:start + 500], justid=True)
