"""The Redis broker's dispatch: jobs taken from the shared stream (a dead daemon's or a stale
one first, redis_takeovers), held here until settled, and let go only once their start or
settlement is written (or Redis is known to be down)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from gevent.event import Event

from gq.broker import Entry, State, drop_payload, record
from gq.broker.redis_link import READ_ERRORS, REDIS_ERRORS, Health, Keys, entry_of, passing, text_id, unreadable
from gq.broker.redis_takeovers import Takeovers
from gq.broker.redis_writer import TAKEN, RedisWriter
from gq.broker.sections import BrokerConfig
from gq.core.outcome import AttemptResult, Outcome, Verdict

log = logging.getLogger("gq.redis")

BACKOFF_MAX = 5.0     # seconds a failed read waits before the next, at most
START_WAIT = 5.0      # seconds an attempt waits for its start to be written (else: handed back, not attempted)
SETTLE_WAIT = 5.0     # seconds a settlement waits for its write (else: kept, written once Redis answers)


class RedisDispatch:
    def __init__(self, client: redis.Redis, config: BrokerConfig, consumer: str, writer: RedisWriter,
                 link: Health, hold_at_most: int, stopped: Event, reconnect: Callable[[], None]):
        """Holds `held`, the jobs taken and not settled (by stream id), at most `hold_at_most`;
        `stopped`: the broker is closing (a failed read waits no more); `reconnect()`: create the
        consumer group again (Redis lost it)."""
        self.redis, self.consumer, self.writer, self.link = client, consumer, writer, link
        keys = Keys.of(config.prefix)
        self.stream, self.group = keys.stream, keys.group
        self.hold_at_most, self._stopped, self._reconnect = hold_at_most, stopped, reconnect
        self._room = Event()   # set when a held job is settled or deferred
        self.keep_payload = False  # journal.keep_succeeded_payload: a succeeded job keeps its body
        self.held: dict[str, Entry] = {}         # taken and not settled, by stream id
        # Entries this daemon still holds, or has settled but not yet written (Redis refusing
        # writes, its touches failing meanwhile), are its own: never taken over.
        self.takeovers = Takeovers(client, config, consumer, self._taken,
                                   lambda: self.held.keys() | writer.settling, link)

    def take(self, limit: int, timeout: float) -> list[Entry]:
        """Jobs of dead daemons first, then jobs idle too long in any consumer's hands, then
        new ones (XREADGROUP, blocking); never more than hold_at_most held in all."""
        limit = min(limit, self.hold_at_most - len(self.held))
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
            self._reconnect()
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
        self.held[handle] = entry
        return entry

    def started(self, entry: Entry) -> None:
        """Returns once the attempt's start is written, so that a daemon dying during it
        leaves the attempt counted. The entry is RUNNING then, and only then may the attempt
        go: a job cancelled meanwhile is dropped (CANCELLED); one another daemon took over is
        left to it (QUEUED); one whose start Redis did not confirm within START_WAIT is handed
        back unattempted (QUEUED)."""
        entry.attempts += 1
        entry.state = State.RUNNING
        written = self.writer.start(entry)
        confirmed = written.wait(START_WAIT)
        if confirmed is True:
            return
        entry.attempts -= 1
        if confirmed == TAKEN:
            entry.state = State.QUEUED
            self._left_to_another(entry)
            return
        if confirmed is False:  # cancelled while it waited here
            entry.state = State.CANCELLED
            self._release(entry)
            self.writer.ack(entry.handle)
            return
        # Not confirmed: the start may yet be written. Held until it is known, then handed back.
        entry.state = State.QUEUED
        written.rawlink(lambda result: self._hand_back(entry, result.value))

    def _hand_back(self, entry: Entry, started: bool | str) -> None:
        """A start confirmed too late (Redis stalled): the attempt did not go. Written, it
        counts as an attempt whose outcome is unknown (retried now, like a takeover); refused
        (cancelled meanwhile), the entry is dropped; taken over, it is left to that daemon."""
        if started == TAKEN:
            self._left_to_another(entry)
            return
        if not started:
            self._release(entry)
            self.writer.ack(entry.handle)
            return
        entry.attempts += 1
        entry.state, entry.due = State.RETRYING, time.time()
        entry.reason = ""
        self._let_go(entry, wait=False)  # a callback: it cannot wait

    def _left_to_another(self, entry: Entry) -> None:
        """Not acknowledged: the entry is the other daemon's now, and runs there."""
        log.warning("job %s: taken over by another daemon while this one was paused; not started here",
                    entry.job.id)
        self._release(entry)

    def _release(self, entry: Entry) -> None:
        """No longer held here: room for another job."""
        self.held.pop(entry.handle, None)
        self._room.set()

    def settle(self, entry: Entry, result: AttemptResult, outcome: Outcome) -> None:
        record(entry, result)
        if outcome.verdict is Verdict.SUCCESS:
            drop_payload(entry, self.keep_payload)
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
        self._release(entry)
        written = self.writer.settle(entry)
        if wait and self.link.healthy:
            written.wait(SETTLE_WAIT)
