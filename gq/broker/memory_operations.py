"""The memory broker's operator side: cancel, find and count, replay and purge (gq.broker.
Operations, DeadLetters), on the entries gq/broker/memory.py keeps, moved as it moves them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator

from gq.broker import Conflict, Counts, Entry, Filter, Found, Replayed, State, unreplayable
from gq.broker.memory_parts import Finished, KeyLines, Waiting, newest_first
from gq.core.lifecycle import Event as JobEvent
from gq.core.lifecycle import allows


class MemoryOperations:
    """An operator's changes and look-ups of the memory broker (MemoryBroker), which keeps
    what they use: its entries (in the order accepted), its ledger and parts, and how it
    moves a job (held until due, finished, forgotten)."""

    _entries: dict[str, Entry]
    _counts: Counts
    _finished: Finished
    _lines: KeyLines
    _waiting: Waiting
    _hold: Callable[[Entry, float, State], None]
    _remember_finished: Callable[[Entry], None]
    _drop: Callable[[str], None]

    def cancel(self, job_id: str) -> bool:
        entry = self._entries.get(job_id)
        if entry is None:
            return False
        if not allows(JobEvent.CANCELLED, entry.state):
            raise Conflict(job_id, entry.state)
        self._counts.move(entry, State.CANCELLED)  # where it waits (held, blocked, queued) it is passed over
        self._remember_finished(entry)
        self._waiting.compact(self._counts.unfinished(), self._entries.get)
        return True

    def count(self, where: Filter, most: int) -> int:
        return sum(1 for _ in self.find(dataclasses.replace(where, after=None), most))

    def find(self, where: Filter, limit: int) -> Iterator[Found]:
        return newest_first(list(self._entries.values()), where, limit)

    def dead_letters(self) -> list[Entry]:
        return [e for e in self._entries.values() if e.state is State.DEAD]

    def replay(self, ids: Iterable[str] | None, states: Iterable[State] = (State.DEAD,)) -> Replayed:
        wanted = tuple(states)
        picked, skipped = [], []
        for job_id, entry in self._pick(ids, wanted):
            if why := unreplayable(None if entry is None else entry.state, wanted,
                                   payload_kept=entry is None or not entry.trimmed):
                skipped.append((job_id, why))
            elif entry is not None:
                picked.append(entry)
        picked.sort(key=lambda e: e.handle)  # in the order accepted
        for entry in picked:
            entry.attempts, entry.reason = 0, ""
            self._finished.discard(entry.job.id)
            if self._lines.join(entry):
                self._counts.move(entry, State.QUEUED)
            else:
                self._hold(entry, 0.0, State.QUEUED)
        return Replayed([e.job.id for e in picked], skipped)

    def _pick(self, ids: Iterable[str] | None, states: Iterable[State]) -> list[tuple[str, Entry | None]]:
        """The jobs of `ids` whatever their state (None: not known), each once, in the order
        named; with ids None, every job in one of `states`, in the order accepted."""
        if ids is None:
            return [(job_id, e) for job_id, e in self._entries.items() if e.state in states]
        return [(job_id, self._entries.get(job_id)) for job_id in dict.fromkeys(ids)]

    def purge(self, ids: Iterable[str] | None) -> list[str]:
        dead = [e for _, e in self._pick(ids, (State.DEAD,)) if e is not None and e.state is State.DEAD]
        for entry in dead:
            self._drop(entry.job.id)
        return [e.job.id for e in sorted(dead, key=lambda e: e.handle)]
