"""The Redis broker's writer: attempt starts and settlements, batched into one transaction
per round trip, and kept to be written again while Redis refuses them."""

from __future__ import annotations

import time

import redis
from gevent.event import AsyncResult, Event

from gq.broker import Entry, State
from gq.broker.redis_link import BACKOFF_MAX, Health, Keys, lua_script, passing, payload


class RedisWriter:
    def __init__(self, client: redis.Redis, keys: Keys, status_ttl: int, health: Health):
        self.redis, self.keys, self.status_ttl, self.health = client, keys, status_ttl, health
        self._ops: list[tuple[str, Entry | str]] = []  # waiting to be written, in order
        self._starting: list[AsyncResult] = []         # start() callers waiting for their write
        self.settling: set[str] = set()                # stream ids whose settlement is not written yet
        self._wake = Event()
        self.stopped = Event()
        self._start = client.register_script(lua_script("start"))
        self._finish = client.register_script(lua_script("finish"))

    def start(self, entry: Entry) -> AsyncResult:
        """The attempt's start and count, to write; the result is set once written: True, or
        False when the job was cancelled meanwhile (nothing is written then)."""
        written = AsyncResult()
        self._starting.append(written)
        self._queue(("start", entry))
        return written

    def settle(self, entry: Entry) -> None:
        """The entry's outcome (its state says which), to write: acknowledged and deleted
        from the stream, and a retry (or a job deferred for its host) into the retry set, a
        dead letter into the dead stream."""
        self.settling.add(entry.handle)
        self._queue(("settle", entry))

    def ack(self, msg_id: str) -> None:
        """A stream entry with nothing in it (deleted while pending), to acknowledge."""
        self._ops.append(("ack", msg_id))

    def _queue(self, op: tuple[str, Entry | str]) -> None:
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
            if not passing(e):
                raise
            self.health.failed("write", e)
            return False
        self.health.recovered()
        self.settling.difference_update(op[1].handle for op in ops if op[0] == "settle")  # type: ignore[union-attr]
        for waiter, at in zip(starting, answers):
            waiter.set(bool(results[at]))
        return True

    def _write(self, pipe, op: tuple[str, Entry | str]) -> None:
        kind, item = op
        keys = self.keys
        if isinstance(item, str):  # an ack
            pipe.xack(keys.stream, keys.group, item)
            pipe.xdel(keys.stream, item)
            return
        entry = item
        status_key = keys.status(entry.job.id)
        if kind == "start":  # the state and the attempt count; the job itself is there since intake
            self._start(keys=[status_key], args=[entry.attempts], client=pipe)
            return
        job = payload(entry)
        last = entry.history[-1] if entry.history else None
        status = {"state": entry.state.value, "payload": job, "attempts": entry.attempts,
                  "reason": entry.reason,
                  "due": entry.due, "last_status": "" if not last or last.status is None else last.status,
                  "last_error": (last.error or "") if last else ""}
        pipe.xack(keys.stream, keys.group, entry.handle)
        pipe.xdel(keys.stream, entry.handle)
        if entry.state in (State.RETRYING, State.QUEUED):  # QUEUED: deferred for its host
            pipe.zadd(keys.retry_set, {job: entry.due})
        elif entry.state is State.DEAD:
            pipe.xadd(keys.dead, {"payload": job, "reason": entry.reason, "id": entry.job.id})
        pipe.hset(status_key, mapping=status)
        pipe.expire(status_key, self.status_ttl)
        key = entry.job.ordering_key
        if key is not None and entry.state in (State.SUCCEEDED, State.DEAD):  # the key's next job goes
            self._finish(keys=[keys.prefix], args=[key, entry.job.id, time.time(), self.status_ttl], client=pipe)
