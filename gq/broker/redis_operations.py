"""The operator's operations on the Redis broker: find jobs (`GET /v1/jobs`) and replay
finished ones (`POST /v1/jobs/replay`), for the whole fleet.

Keys, under `broker.prefix` (P), besides those of redis_streams:
    P:accepted      sorted set, the index of jobs by acceptance: score the time a job was
                    accepted (the daemon's clock), member its place in the order accepted
                    (P:seq, 16 digits) then its id; written at intake (scripts/accepted.lua,
                    run by add.lua)
The status hash P:job:ID keeps `accepted_at` and `seq` too. A member is stale once its status
hash is gone (expired after broker.status_ttl) or holds another `seq` (the id accepted
again): stale members are removed as `find` passes them and by `trim`, which walks the
members older than status_ttl (a newer one cannot be stale) a chunk at a time.

A page of `find` walks the index newest first from its cursor, FIND_CHUNK members a round
trip (ZREVRANGEBYSCORE, bounded by since/until), reads their states in one pipeline, and
the matching jobs' hashes FETCH_CHUNK at a time as they are asked for: it stops once
`limit` jobs matched. Filtering by state, host, ordering key or id prefix reads the members
it passes over (a rare filter walks the whole since/until window): no index per state, host
or key is kept, since a job's state changes in every script and write of the broker. An id
prefix is checked on the member itself, an ordering key on the status hash's `key` field
with the state: neither reads a job's hash it does not return.

A replay is one script a job (scripts/replay.lua, after scripts/keys.lua), guarded by the
lifecycle's sources for `replayed`: the job goes back to running only if it is still in
one of the states taken. A dead letter's entry in the dead stream (P:dead) is found by one
walk of that stream per replay call (FETCH_CHUNK entries a round trip), stopping once every
dead job named is found, and deleted by the script with the move.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any

import gevent
import redis
from gevent.event import Event as Stop

from gq.broker import Entry, Filter, Found, Replayed, State, unreplayable
from gq.broker.redis_link import REDIS_ERRORS, Keys, entry_of, lua_script, payload, text_id
from gq.core import hosts
from gq.core.lifecycle import Event, sources
from gq.errors import BrokerUnavailable

log = logging.getLogger("gq.redis")

FIND_CHUNK = 200       # index members a round trip of find
FETCH_CHUNK = 20       # hashes (or dead stream entries) read in one round trip: each may be as
                       # large as api.max_body_bytes
TRIM_EVERY = 5.0       # seconds between trims, when the last one reached the end
SEQ_DIGITS = 16
WRITTEN_WAIT = 3.0     # seconds an operation waits for this daemon's settlements to be written


def member_parts(member: bytes | str) -> tuple[int, str]:
    """The acceptance sequence and id an index member holds."""
    text = text_id(member)
    return int(text[:SEQ_DIGITS]), text[SEQ_DIGITS:]


def read_entry(status: dict[bytes, bytes], state: State | None = None) -> Entry | None:
    """The Entry a status hash holds, read leniently: None when its job cannot be read (an
    earlier gq's form)."""
    try:
        found = State(status[b"state"].decode()) if state is None else state
        entry = entry_of(status[b"payload"], state=found)
        entry.attempts = int(status.get(b"attempts", entry.attempts))
        entry.reason = status.get(b"reason", b"").decode()
        entry.due = float(status.get(b"due", 0) or 0)
        entry.accepted_at = float(status.get(b"accepted_at", 0) or 0)
        entry.trimmed = status.get(b"trimmed") == b"1"
    except (KeyError, ValueError, TypeError, RecursionError) as e:
        log.debug("broker: a job of Redis cannot be read (%s)", e)
        return None
    return entry


class RedisOperations:
    def __init__(self, client: redis.Redis, keys: Keys, status_ttl: int,
                 unwritten: Callable[[], Collection[str]] = frozenset):
        """`unwritten()`: the settlements this daemon made that its writer has not written yet;
        an operation waits for them (up to WRITTEN_WAIT seconds), so that it sees them."""
        self.redis, self.keys, self.ttl, self._unwritten = client, keys, status_ttl, unwritten
        self.index = f"{keys.prefix}:accepted"
        self._replay = client.register_script(lua_script("keys") + lua_script("replay"))
        self._trim_from: str | None = None   # the score the next trim starts from

    # -- find

    def _written(self) -> None:
        deadline = time.monotonic() + WRITTEN_WAIT
        while self._unwritten() and time.monotonic() < deadline:
            gevent.sleep(0.005)

    def find(self, where: Filter, limit: int) -> Iterator[Found]:
        self._written()
        try:
            yield from self._find(where, limit)
        except REDIS_ERRORS as e:
            raise BrokerUnavailable(f"broker: Redis unavailable ({e})") from None

    def _find(self, where: Filter, limit: int) -> Iterator[Found]:
        left = limit
        for chunk in self._walk(where):
            if left <= 0:
                return
            picked = self._states(chunk, where)
            for i in range(0, len(picked), FETCH_CHUNK):
                for found in self._fetched(picked[i:i + FETCH_CHUNK], where):
                    yield found
                    left -= 1
                    if left <= 0:
                        return

    def _walk(self, where: Filter) -> Iterator[list[tuple[float, int, str]]]:
        """The index's members in the filter's window, newest first after its cursor, a
        chunk at a time: (accepted_at, seq, id)."""
        low: str = "-inf" if where.since is None else repr(float(where.since))
        high: str = "+inf" if where.until is None else f"({float(where.until)!r}"
        after = where.after
        if after is not None and (where.until is None or after[0] < where.until):
            high = repr(float(after[0]))
        while True:
            reply: Any = self._chunk(self.redis.zrevrangebyscore, high, low)
            chunk = []
            for member, score in reply:
                seq, job_id = member_parts(member)
                if where.prefix is not None and not job_id.startswith(where.prefix):
                    continue
                if after is None or (score, seq) < (after[0], after[1]):
                    chunk.append((score, seq, job_id))
            if chunk:
                yield chunk
            if len(reply) < FIND_CHUNK:
                return
            high = f"({reply[-1][1]!r}"
            gevent.sleep(0)

    def _chunk(self, walk: Callable[..., Any], start: str, end: str) -> list[tuple[bytes, float]]:
        """FIND_CHUNK members from `start` towards `end` (by score), and every other member at the
        last one's score: the walk goes on past that score, so that no offset is kept (members
        removed meanwhile would shift it). Members share a score when one request accepted them
        (one time for the batch): at most api.max_jobs_per_request of them."""
        reply: list[tuple[bytes, float]] = walk(self.index, start, end, start=0, num=FIND_CHUNK, withscores=True)
        if len(reply) < FIND_CHUNK:
            return reply
        last = reply[-1][1]
        rest: list[tuple[bytes, float]] = walk(self.index, repr(last), repr(last), withscores=True)
        return [r for r in reply if r[1] != last] + rest

    def _states(self, chunk: list[tuple[float, int, str]], where: Filter) -> list[tuple[float, int, str]]:
        """The members of `chunk` whose job is there (its hash, of the same acceptance), in
        `where.state` (None: any) and of `where.key`; the stale ones leave the index."""
        state = where.state
        pipe = self.redis.pipeline(transaction=False)
        for _, _, job_id in chunk:
            pipe.hmget(self.keys.status(job_id), "state", "seq", "key")
        picked, stale = [], []
        for (score, seq, job_id), (found, kept_seq, key) in zip(chunk, pipe.execute()):
            if found is None or kept_seq is None or int(kept_seq) != seq:
                stale.append(f"{seq:0{SEQ_DIGITS}d}{job_id}")
            elif ((state is None or found.decode() == state.value)
                  and (where.key is None or key is None or key.decode() == where.key)):  # None: checked once read
                picked.append((score, seq, job_id))
        if stale:
            self.redis.zrem(self.index, *stale)
        return picked

    def _fetched(self, picked: list[tuple[float, int, str]], where: Filter) -> Iterator[Found]:
        pipe = self.redis.pipeline(transaction=False)
        for _, _, job_id in picked:
            pipe.hgetall(self.keys.status(job_id))
        for (score, seq, _), status in zip(picked, pipe.execute()):
            if b"payload" not in status or int(status.get(b"seq", -1)) != seq:
                continue  # gone since its state was read
            entry = read_entry(status)
            if entry is None or (where.state is not None and entry.state is not where.state):
                continue
            if where.host is not None and hosts.destination(entry.job.url) != where.host:
                continue
            if not where.matches(entry.job):
                continue
            entry.accepted_at = score
            yield entry, (score, seq)

    def trim(self) -> int:
        """Stale members of the index out, a chunk of those older than status_ttl (only they
        can be stale) from where the last trim stopped; returns how many were looked at (a
        full chunk, FIND_CHUNK or more: call again soon)."""
        low = self._trim_from or "-inf"
        high = repr(time.time() - self.ttl)
        reply = self._chunk(self.redis.zrangebyscore, low, high)
        self._trim_from = None if len(reply) < FIND_CHUNK else f"({reply[-1][1]!r}"
        if reply:
            self._states([(score, *member_parts(member)) for member, score in reply], Filter())  # the stale ones leave
        return len(reply)

    def loop(self, stopped: Stop) -> None:
        """Trim until `stopped` is set: at once again after a full chunk, else every TRIM_EVERY."""
        while not stopped.is_set():
            try:
                full = self.trim() >= FIND_CHUNK
            except (*REDIS_ERRORS, redis.ResponseError) as e:
                log.debug("broker: the index of jobs not trimmed now (%s)", e)
                full = False
            stopped.wait(0.05 if full else TRIM_EVERY)

    # -- replay

    def replay(self, ids: Iterable[str] | None, states: Iterable[State] = (State.DEAD,)) -> Replayed:
        wanted = tuple(states)
        self._written()
        try:
            return self._replayed(ids, wanted)
        except REDIS_ERRORS as e:
            raise BrokerUnavailable(f"broker: Redis unavailable ({e})") from None

    def _replayed(self, ids: Iterable[str] | None, wanted: tuple[State, ...]) -> Replayed:
        if ids is None:  # every job in those states the index holds
            named = [e.job.id for state in wanted for e, _ in self._find(Filter(state=state), 2**62)]
        else:
            named = list(dict.fromkeys(ids))
        taken = [s.value for s in wanted if s.value in sources(Event.REPLAYED)]
        picked: list[tuple[int, str, Entry]] = []
        skipped: list[tuple[str, str]] = []
        for i in range(0, len(named), FETCH_CHUNK):
            pipe = self.redis.pipeline(transaction=False)
            for job_id in named[i:i + FETCH_CHUNK]:
                pipe.hgetall(self.keys.status(job_id))
            for job_id, status in zip(named[i:i + FETCH_CHUNK], pipe.execute()):
                state = _state(status)
                entry = None if state is None else read_entry(status, state)
                why = unreplayable(state, wanted, b"payload" in status and status.get(b"trimmed") != b"1")
                if why is None and entry is None:
                    why = "unreadable: its job cannot be read back"
                if why is not None or entry is None:
                    skipped.append((job_id, why or ""))
                    continue
                picked.append((int(status.get(b"seq", 0) or 0), job_id, entry))
        picked.sort(key=lambda p: p[0])  # in the order accepted
        dead = self._dead_entries({job_id for _, job_id, e in picked if e.state is State.DEAD})
        done = []
        now = time.time()
        for _, job_id, entry in picked:
            entry.attempts, entry.reason = 0, ""
            was = self._replay(keys=[self.keys.prefix], args=[
                job_id, payload(entry), "|".join(taken), dead.get(job_id, ""), now])
            was = text_id(was)
            if was in taken:
                done.append(job_id)
            else:  # it moved since it was read
                state = State(was) if was else None
                skipped.append((job_id, unreplayable(state, wanted) or f"{was} (no longer replayable)"))
        return Replayed(done, skipped)

    def _dead_entries(self, ids: set[str]) -> dict[str, str]:
        """The dead stream's entries of the jobs `ids` (job id -> entry id), one walk of the
        stream, ended once all are found."""
        found: dict[str, str] = {}
        start = "-"
        while ids - found.keys():
            reply: Any = self.redis.xrange(self.keys.dead, start, "+", count=FETCH_CHUNK)
            for msg_id, fields in reply:
                job_id = fields.get(b"id")
                if job_id is None:  # from before dead letters named their job
                    entry = read_entry({b"state": b"dead", **fields})
                    job_id = entry.job.id.encode() if entry else b""
                if job_id.decode() in ids:
                    found.setdefault(job_id.decode(), text_id(msg_id))
            if len(reply) < FETCH_CHUNK:
                break
            start = "(" + text_id(reply[-1][0])
        return found


def _state(status: dict[bytes, bytes]) -> State | None:
    try:
        return State(status[b"state"].decode())
    except (KeyError, ValueError):
        return None
