"""The Redis broker's writer: attempt starts and settlements, batched into one transaction
per round trip, and kept to be written again while Redis refuses them."""

from __future__ import annotations

import time
from typing import Any

import redis
from gevent.event import AsyncResult, Event

from gq.broker import Entry, State
from gq.broker.redis_link import BACKOFF_MAX, Health, Keys, Unreadable, lua_script, passing, payload
from gq.core.lifecycle import Event as LifeEvent
from gq.core.lifecycle import sources

# The event a settled entry's state says happened (QUEUED: handed back unattempted).
EVENTS = {State.SUCCEEDED: LifeEvent.SUCCEEDED, State.DEAD: LifeEvent.FAILED, State.RETRYING: LifeEvent.RETRIED,
          State.QUEUED: LifeEvent.DEFERRED}
TAKEN = "taken"  # a start's answer: its entry is another daemon's now (this one paused past claim_idle)


class RedisWriter:
    def __init__(self, client: redis.Redis, keys: Keys, status_ttl: int, health: Health, consumer: str):
        self.redis, self.keys, self.status_ttl, self.health = client, keys, status_ttl, health
        self.consumer = consumer   # this daemon's: a start's token names it, a settle is its own
        self._ops: list[tuple[str, Any]] = []  # waiting to be written, in order
        self._starting: list[AsyncResult] = []         # start() callers waiting for their write
        self._settled: list[AsyncResult] = []          # settle() callers that may wait for theirs
        self.settling: set[str] = set()                # stream ids whose settlement is not written yet
        self._wake = Event()
        self.stopped = Event()
        self._start = client.register_script(lua_script("start"))
        self._settle = client.register_script(lua_script("settle"))

    def start(self, entry: Entry) -> AsyncResult:
        """The attempt's start and count, to write; the result is set once written: True, or
        False when the job was cancelled meanwhile, or TAKEN when its entry is another
        daemon's now (nothing is written then)."""
        written = AsyncResult()
        self._starting.append(written)
        # As it is now: a start not confirmed in time is taken back from the entry (its attempts
        # counted down) while this write may still be tried again, and must stay the same write.
        self._queue(("start", (entry.job.id, entry.handle, entry.attempts)))
        return written

    def settle(self, entry: Entry) -> AsyncResult:
        """The entry's outcome (its state says which), to write: acknowledged and deleted
        from the stream, and a retry (or a job deferred for its host) into the retry set, a
        dead letter into the dead stream. The result is set once written (with the other
        writes of its round trip)."""
        written = AsyncResult()
        self._settled.append(written)
        self.settling.add(entry.handle)
        self._queue(("settle", entry))
        return written

    def unreadable(self, item: Unreadable) -> None:
        """A stream entry that cannot be read back as a job, to write as a dead letter that
        says why (0 attempts), its key released."""
        self.settling.add(item.handle)
        self._queue(("unreadable", item))

    def ack(self, msg_id: str) -> None:
        """A stream entry with nothing in it (deleted while pending), to acknowledge."""
        self._ops.append(("ack", msg_id))

    def _queue(self, op: tuple[str, Any]) -> None:
        self._ops.append(op)
        self._wake.set()

    def loop(self) -> None:
        backoff = 0.1
        while not self.stopped.is_set():
            self._wake.wait()
            self._wake.clear()
            if self.flush():
                backoff = 0.1
            else:
                self.stopped.wait(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)
                self._wake.set()

    def stop(self) -> None:
        self.stopped.set()
        self._wake.set()

    def flush(self) -> bool:
        """Write what is pending; False (and kept for the next try) when Redis fails."""
        ops, self._ops = self._ops, []
        starting, self._starting = self._starting, []
        settled, self._settled = self._settled, []
        if not ops:
            return True
        pipe = self.redis.pipeline(transaction=True)
        answers = []  # where each start's answer is, in the order of `starting`
        for op in ops:
            if op[0] == "start":
                answers.append(len(pipe.command_stack))
            self._write(pipe, op)
        try:
            results = pipe.execute()
        except BaseException as e:  # kept for the next write, whatever stopped this one
            self._ops[:0] = ops
            self._starting[:0] = starting
            self._settled[:0] = settled
            if not passing(e):
                raise
            self.health.failed("write", e)
            return False
        self.health.recovered()
        self.settling.difference_update(op[1].handle for op in ops if op[0] in ("settle", "unreadable"))
        for waiter, at in zip(starting, answers):
            waiter.set(TAKEN if results[at] in (b"taken", "taken") else bool(results[at]))
        for done in settled:
            done.set(True)
        return True

    def _write(self, pipe: redis.client.Pipeline, op: tuple[str, Any]) -> None:
        kind, item = op
        keys = self.keys
        if kind == "ack":
            pipe.xack(keys.stream, keys.group, item)
            pipe.xdel(keys.stream, item)
            return
        if kind == "unreadable":
            self._settle(keys=[keys.prefix], client=pipe, args=[
                item.handle, item.job_id, State.DEAD.value, "|".join(sources(LifeEvent.UNREADABLE)), time.time(),
                self.status_ttl, item.key, 0, item.payload, item.reason, self.consumer, "attempts", 0])
            return
        if kind == "start":  # the state and the attempt count; the job itself is there since intake
            job_id, handle, attempts = item
            # Its token: a start written again after its answer was lost finds itself there.
            token = f"{self.consumer} {handle} {attempts}"
            self._start(keys=[keys.status(job_id)], client=pipe,
                        args=[attempts, "|".join(sources(LifeEvent.STARTED)), keys.prefix, token])
            return
        entry = item
        last = entry.history[-1] if entry.history else None
        self._settle(keys=[keys.prefix], client=pipe, args=[
            entry.handle, entry.job.id, entry.state.value, "|".join(sources(EVENTS[entry.state])), time.time(),
            self.status_ttl, entry.job.ordering_key or "", entry.due, payload(entry), entry.reason, self.consumer,
            "attempts", entry.attempts, "trimmed", int(entry.trimmed),
            "last_status", "" if not last or last.status is None else last.status,
            "last_error", (last.error or "") if last else ""])
