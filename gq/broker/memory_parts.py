"""What the memory broker holds besides its entries: the lines of its ordering keys, the
heap of the jobs that wait to be due, the finished jobs it remembers, and how a list walks
them (gq/broker/memory.py keeps the entries and moves them)."""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import Any

import gevent

from gq.broker import CANCELLABLE, Entry, Filter, Found, State
from gq.core import hosts
from gq.core.audit import AUDIT_KEEP, Position

COMPACT_AT = 1024    # cancelled jobs the heap may hold beyond twice the unfinished ones
FIND_STRETCH = 4096  # jobs a list looks at before it lets other greenlets run


class KeyLines:
    """Of each ordering key's unfinished jobs, the one that runs or waits to (its head), and
    the others behind it, in the order accepted (a replayed one too: gq/core/lifecycle.py)."""

    def __init__(self) -> None:
        self._heads: dict[str, Entry] = {}
        self._behind: dict[str, deque[Entry]] = {}

    def join(self, entry: Entry) -> bool:
        """`entry` takes its place in its key: True when it waits behind the key's head,
        False when it is the head now (or has no key)."""
        key = entry.job.ordering_key
        if key is None:
            return False
        if key not in self._heads:
            self._heads[key] = entry
            return False
        line = self._behind.setdefault(key, deque())
        if line and line[-1].handle > entry.handle:  # replayed: back in the order accepted
            bisect.insort(line, entry, key=lambda e: e.handle)
        else:
            line.append(entry)
        return True

    def leave(self, entry: Entry) -> Entry | None:
        """`entry` is finished: if it was its key's head, the next of the key that still
        waits (cancelled ones passed over) is the head now, and is returned."""
        key = entry.job.ordering_key
        if key is None or self._heads.get(key) is not entry:
            return None
        del self._heads[key]
        line = self._behind.get(key)
        head = None
        while line and head is None:
            candidate = line.popleft()
            if candidate.state is State.QUEUED:
                head = self._heads[key] = candidate
        if not line:
            self._behind.pop(key, None)
        return head


class Waiting:
    """The jobs held until due (scheduled, retrying, deferred, or queued beyond the queue):
    a heap of (due, seq, id). A job cancelled in it stays until it is due or the heap is
    compacted, which it is once such jobs outnumber the unfinished ones twice over."""

    def __init__(self, seq: Iterator[int]):
        self._heap: list[tuple[float, int, str]] = []
        self._seq = seq

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, entry: Entry) -> None:
        heapq.heappush(self._heap, (entry.due, next(self._seq), entry.job.id))

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def due(self, now: float, limit: int, entry_of: Callable[[str], Entry | None]) -> list[Entry]:
        """Up to `limit` jobs due by `now` that still wait, earliest first, out of the heap."""
        found: list[Entry] = []
        while self._heap and len(found) < limit and self._heap[0][0] <= now:
            _, _, job_id = heapq.heappop(self._heap)
            entry = entry_of(job_id)
            if entry is not None and entry.state in CANCELLABLE and entry.due <= now:
                found.append(entry)
        return found

    def compact(self, unfinished: int, entry_of: Callable[[str], Entry | None]) -> None:
        """Without the jobs that no longer wait in it, once they are too many."""
        if len(self._heap) <= 2 * unfinished + COMPACT_AT:
            return
        self._heap = [(due, seq, job_id) for due, seq, job_id in self._heap
                      if (e := entry_of(job_id)) is not None and e.state in CANCELLABLE and e.due == due]
        heapq.heapify(self._heap)


class Finished:
    """Succeeded and cancelled jobs, remembered for look-ups and as duplicates: `most` of
    them, `seconds` long at most (journal.keep_succeeded), the oldest forgotten first."""

    def __init__(self, clock: Callable[[], float], most: int, seconds: float):
        self.clock, self.most, self.seconds = clock, most, seconds
        self._at: OrderedDict[str, float] = OrderedDict()  # id → when it finished, oldest first

    def add(self, job_id: str) -> list[str]:
        """`job_id` finished now; returns the ids to forget."""
        self._at[job_id] = self.clock()
        return self.expired()

    def discard(self, job_id: str) -> None:
        self._at.pop(job_id, None)

    def expired(self) -> list[str]:
        """The ids past `most` or `seconds`, no longer remembered."""
        before, gone = self.clock() - self.seconds, []
        while self._at and (len(self._at) > self.most or next(iter(self._at.values())) < before):
            gone.append(self._at.popitem(last=False)[0])
        return gone


def newest_first(entries: list[Entry], where: Filter, limit: int) -> Iterator[Found]:
    """The `entries` (in the order accepted, their handles rising) that match `where`, newest
    first from the cursor's place, until `limit` match: nothing is sorted, and a page reads
    the jobs it passes over, no more. The hub is let go between stretches."""
    end = len(entries) if where.after is None else bisect.bisect_left(entries, where.after[1], key=lambda e: e.handle)
    left = limit
    for i in range(end - 1, -1, -1):
        if left <= 0:
            return
        if i % FIND_STRETCH == 0:
            gevent.sleep(0)
        entry = entries[i]
        if ((where.state is None or entry.state is where.state)
                and (where.host is None or hosts.destination(entry.job.url) == where.host)
                and (where.since is None or entry.accepted_at >= where.since)
                and (where.until is None or entry.accepted_at < where.until)
                and where.matches(entry.job)):
            left -= 1
            yield entry, (entry.accepted_at, entry.handle)


class AuditRows:
    """The operator's actions of a broker with no storage: the newest `keep`, in memory
    (gq.core.audit.AuditLog); a row's position is (when, its number)."""

    def __init__(self, keep: int | None = None) -> None:
        self._rows: deque[tuple[dict[str, Any], Position]] = deque(maxlen=keep or AUDIT_KEEP)
        self._numbers = itertools.count(1)

    def keep_action(self, row: dict[str, Any]) -> None:
        self._rows.append((row, (row["at"], next(self._numbers))))

    def actions(self, limit: int, after: Position | None = None) -> list[tuple[dict[str, Any], Position]]:
        older = (kept for kept in reversed(self._rows) if after is None or kept[1][1] < after[1])
        return list(itertools.islice(older, limit))
