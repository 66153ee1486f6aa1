"""What an operator changes in the journal file (cancel, replay, purge; commands for a
running daemon), and the ordering keys' lines that those changes and a job's path both move:
of a key's unfinished jobs only the oldest is anything but blocked, and when it finishes the
next in the order accepted is let go in the same transaction (`_release`)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable

from gq.broker import Replayed, State, journal_ledger, unreplayable
from gq.broker.journal_lookups import BLOCKED, shown

KEYED = ("ordering_key IS NOT NULL AND state IN "
         "('queued', 'scheduled', 'retrying', 'taken', 'running', 'blocked')")  # jobs_key's condition
CANCELLABLE_ROWS = ("queued", "scheduled", "retrying", BLOCKED)  # states cancel() takes


def _unreplayable(row: sqlite3.Row | None, states: list[State]) -> str | None:
    """gq.broker.unreplayable of a row (None: no such job): a succeeded job whose body was
    dropped (trimmed) cannot be replayed."""
    if row is None:
        return unreplayable(None, states)
    return unreplayable(shown(row["state"]), states, payload_kept=not row["trimmed"])


class JournalKeys:
    """The ordering keys' lines, on the journal's connection `db` (a JournalFile)."""

    db: sqlite3.Connection

    def _key_busy(self, key: str, blocked: bool = True) -> bool:
        """Whether an unfinished job of `key` is there (not counting blocked ones, unless `blocked`)."""
        others = "" if blocked else f"AND state != '{BLOCKED}'"
        return self.db.execute(f"SELECT 1 FROM jobs INDEXED BY jobs_key WHERE ordering_key = ? AND {KEYED} "
                               f"{others} LIMIT 1", (key,)).fetchone() is not None

    def _release(self, key: str, now: float) -> str:
        """When no job of `key` runs or waits to, let its oldest blocked job go; returns its
        new state (queued or scheduled), or "" for none let go."""
        if self._key_busy(key, blocked=False):
            return ""
        row = self.db.execute(f"SELECT rowid, due FROM jobs INDEXED BY jobs_key WHERE ordering_key = ? AND {KEYED} "
                              f"AND state = '{BLOCKED}' ORDER BY rowid LIMIT 1", (key,)).fetchone()
        if row is None:
            return ""
        state = "scheduled" if row["due"] > now else "queued"
        self.db.execute("UPDATE jobs SET state = ? WHERE rowid = ?", (state, row["rowid"]))
        return state



class JournalOperations(JournalKeys):
    """An operator's changes, each one transaction on the writer's connection."""

    def cancel(self, job_id: str, now: float) -> tuple[str, str]:
        """Cancel a job that waits in the file (queued, scheduled, retrying or blocked);
        returns the state it had ("" unknown): when it was not one of those, it is left.
        And the new state of the job of its ordering key let go in its place ("" none)."""
        released = ""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute("SELECT state, ordering_key FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return "", ""
            if row["state"] in CANCELLABLE_ROWS:
                self.db.execute("UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE id = ?", (now, job_id))
                if row["ordering_key"] is not None:
                    released = self._release(row["ordering_key"], now)
        return row["state"], released

    # -- replays and purges, for the process that holds the journal

    def _rows(self, ids: list[str] | None, states: Iterable[str]) -> list[sqlite3.Row]:
        """The rows (id, state, trimmed, ordering_key) of `ids` whatever their state, or with
        None of every job in one of `states`; each once, in the order accepted."""
        columns = "rowid, id, state, trimmed, ordering_key"
        if ids is None:
            return self.db.execute(f"SELECT {columns} FROM jobs WHERE state IN "
                                   f"({','.join(repr(s) for s in states)}) ORDER BY rowid").fetchall()
        found: dict[int, sqlite3.Row] = {}
        for start in range(0, len(ids), 500):  # SQLite takes so many parameters at most
            chunk = ids[start:start + 500]
            found.update((r["rowid"], r) for r in self.db.execute(
                f"SELECT {columns} FROM jobs WHERE id IN ({','.join('?' * len(chunk))})", chunk))
        return [found[rowid] for rowid in sorted(found)]

    def replay(self, ids: list[str] | None, states: Iterable[str] = ("dead",)) -> tuple[Replayed, int]:
        """Finished jobs in `states` (dead letters, by default) back to waiting, attempts
        reset and due at once: queued, or blocked behind an unfinished job of their
        ordering key; the others of `ids` are skipped (see `_unreplayable`). Also returns
        how many of those replayed were dead."""
        wanted = [State(s) for s in states]
        replayed, dead, keys = [], 0, set()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            rows = self._rows(ids, states)
            found = {row["id"]: row for row in rows}
            skipped = [(job_id, why) for job_id in (found if ids is None else dict.fromkeys(ids))
                       if (why := _unreplayable(found.get(job_id), wanted))]  # in the order named
            passed = {job_id for job_id, _ in skipped}
            for row in rows:  # in the order accepted
                if row["id"] in passed:
                    continue
                key = row["ordering_key"]
                state = BLOCKED if key is not None and self._key_busy(key) else "queued"
                self.db.execute("UPDATE jobs SET state = ?, attempts = 0, due = 0, reason = NULL, "
                                "finished_at = NULL WHERE id = ?", (state, row["id"]))
                replayed.append(row["id"])
                dead += row["state"] == "dead"
                if state == BLOCKED:
                    keys.add(key)
            now = time.time()
            for key in keys:  # a key with blocked jobs only (an older one replayed): its oldest goes
                self._release(key, now)
        return Replayed(replayed, skipped), dead

    def purge(self, ids: list[str] | None) -> list[str]:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            done = [row["id"] for row in self._rows(ids, ("dead",)) if row["state"] == "dead"]
            self.db.executemany("DELETE FROM jobs WHERE id = ?", ((i,) for i in done))
            journal_ledger.count(self.db, forgotten=len(done))
        return done

    # -- commands for a running daemon

    def request(self, op: str, ids: list[str] | None) -> int:
        cursor = self.db.execute("INSERT INTO control (op, ids) VALUES (?, ?)",
                                 (op, None if ids is None else json.dumps(ids)))
        return cursor.lastrowid or 0

    def answer(self, seq: int) -> list[str] | None:
        row = self.db.execute("SELECT result FROM control WHERE seq = ?", (seq,)).fetchone()
        return None if row is None or row[0] is None else json.loads(row[0])

    def requests(self) -> list[tuple[int, str, list[str] | None]]:
        rows = self.db.execute("SELECT seq, op, ids FROM control WHERE result IS NULL ORDER BY seq")
        return [(seq, op, None if ids is None else json.loads(ids)) for seq, op, ids in rows]

    def answered(self, seq: int, result: list[str]) -> None:
        with self.db:
            self.db.execute("UPDATE control SET result = ? WHERE seq = ?", (json.dumps(result), seq))
            self.db.execute("DELETE FROM control WHERE result IS NOT NULL AND seq < ?", (seq - 100,))

