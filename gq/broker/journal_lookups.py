"""The journal's look-ups: reading its rows back as jobs, on any connection (the daemon's
look-ups' own, or a command's), never changing the file. The jobs a look-up shows are read
as the file holds them, their bodies apart (cut for a list); the jobs to run are parsed again, as at
intake (gq/broker/journal_file.py takes them)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from gq.broker import Entry, Filter, Found, State, attempt_of
from gq.core.job import LISTED_PAYLOAD, as_stored, parse

TAKEN = "taken"
BLOCKED = "blocked"
FINAL = ("succeeded", "dead", "cancelled")
# The file's states behind each state a user sees.
FILE_STATES = {State.QUEUED: ("queued", TAKEN, BLOCKED)}
ALL_FILE_STATES = ("queued", TAKEN, BLOCKED, "scheduled", "running", "retrying", *FINAL)
# What a look-up reads of a row: the job without its body, and the body apart as text (a `json`
# one as its JSON text), so that neither is parsed in Python to be shown. A list reads the
# body cut (LISTED_PAYLOAD characters and one, to tell it was cut): a page of jobs of
# api.max_body_bytes each then moves little more than it shows.
_BODY = ("CASE WHEN json_type(spec, '$.json') IS NULL THEN json_extract(spec, '$.body') "
         "ELSE json_quote(json_extract(spec, '$.json')) END")
_LOOKED_UP = ("id, state, attempts, due, accepted_at, reason, history, trimmed, "
              "json_remove(spec, '$.json', '$.body') AS spec, json_type(spec, '$.json') IS NOT NULL AS is_json, ")
LOOKED_UP = _LOOKED_UP + f"{_BODY} AS payload"
LISTED = _LOOKED_UP + f"substr({_BODY}, 1, {LISTED_PAYLOAD + 1}) AS payload"
LAST_CHARACTER = "\U0010ffff"  # every string that begins with P sorts below P + this
READ_BYTES = 262144     # characters of jobs a look-up reads at a time (in gevent's threadpool)


def _window(where: Filter) -> tuple[list[str], list[float | str]]:
    """The conditions (and their values) of `where`'s since, until and cursor."""
    bounds: list[str] = []
    params: list[float | str] = []
    if where.since is not None:
        bounds.append("accepted_at >= ?")
        params.append(where.since)
    if where.until is not None:
        bounds.append("accepted_at < ?")
        params.append(where.until)
    if where.after is not None:
        bounds.append("(accepted_at, rowid) < (?, ?)")
        params.extend(where.after)
    return bounds, params


def _file_states(where: Filter) -> tuple[str, ...]:
    """The file's states behind `where.state` (None: all of them)."""
    return ALL_FILE_STATES if where.state is None else FILE_STATES.get(where.state, (where.state.value,))


def shown(state: str) -> State:
    """The state a user sees of a row's state."""
    return State.QUEUED if state in (TAKEN, BLOCKED) else State(state)


def found(read: Callable[..., Any], where: Filter, limit: int) -> Iterator[Found]:
    """Up to `limit` jobs that match `where`, newest first, each with its position, read
    READ_BYTES at a time as they are asked for: the page that stops early (gq.intake.jobs_api's byte
    budget) has read little more than it holds. `read(method, *args)` calls a JournalFile
    method on a connection (off the hub, for the daemon)."""
    positions = read(JournalLookups.positions, where, limit)
    start = 0
    while start < len(positions):
        batch, start = read(JournalLookups.rows, positions, start, READ_BYTES)
        yield from batch


def entry(row: sqlite3.Row, strict: bool = True) -> Entry:
    """The row as an Entry. `strict` (a job to run): its job is parsed again, checked as at
    intake (ValueError or GqError when it no longer passes); not (a look-up): the job is
    shown as the file holds it, its body as the row's `payload` reads it, valid or not."""
    state = shown(row["state"])
    history = [attempt_of(a) for a in json.loads(row["history"])]
    spec = json.loads(row["spec"])
    job = parse(spec) if strict else as_stored(row["id"], spec, (row["payload"], bool(row["is_json"])))
    return Entry(job, state, row["attempts"], row["due"], row["accepted_at"], history=history,
                 reason=row["reason"] or "", trimmed=bool(row["trimmed"]))


class JournalLookups:
    """Reads of the journal's connection `db` (a JournalFile): one job, a page of jobs, the
    dead letters, the oldest unfinished job."""

    db: sqlite3.Connection

    def get(self, job_id: str) -> Entry | None:
        row = self.db.execute(f"SELECT {LOOKED_UP} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else entry(row, strict=False)

    def oldest(self) -> float | None:
        """When the oldest unfinished job that is due was accepted (one index seek per
        state; a scheduled job is not late)."""
        return self.db.execute(
            "SELECT min(t) FROM (" + " UNION ALL ".join(
                f"SELECT min(accepted_at) AS t FROM jobs WHERE state = '{s}'"
                for s in ("queued", TAKEN, BLOCKED, "running", "retrying")) + ")").fetchone()[0]

    def find(self, where: Filter, limit: int) -> Iterator[Found]:
        """Up to `limit` jobs that match, newest first, each with its position (for a
        cursor), read a few at a time as they are asked for (see `found`)."""
        return found(lambda method, *args: method(self, *args), where, limit)

    def positions(self, where: Filter, limit: int) -> list[tuple[float, int]]:
        """Where the first `limit` jobs that match are, newest first. Each of the file's states
        is read through an index in order (by host, or by ordering key, and state), and the
        positions merged, so no query sorts: a page costs `limit` index steps per state, and
        no job is read. An id prefix is the exception: the range of ids it spans is read
        through the id's index, and only those jobs are sorted (`by_prefix`)."""
        if where.prefix is not None:
            return self.by_prefix(where, limit)
        bounds, params = _window(where)
        looks: list[tuple[str, list[str], list[float | str]]] = [("jobs_accepted", bounds, params)]
        states = _file_states(where)
        if where.key is not None:
            if where.host is not None:  # read on the key's rows: a key's jobs mostly go to one host
                bounds, params = ["host = ?", *bounds], [where.host, *params]
            looks = [("jobs_ordering", ["ordering_key = ?", "state = ?", *bounds], [where.key, state, *params])
                     for state in states]
        elif where.host is not None:
            looks = [("jobs_host", ["host = ?", "state = ?", *bounds], [where.host, state, *params])
                     for state in states]
        elif where.state is not None:
            looks = [("jobs_state", ["state = ?", *bounds], [state, *params]) for state in states]
        merged: list[tuple[float, int]] = []
        for index, conditions, values in looks:
            clause = f"WHERE {' AND '.join(conditions)}" if conditions else ""
            merged += [(r[0], r[1]) for r in self.db.execute(
                f"SELECT accepted_at, rowid FROM jobs INDEXED BY {index} {clause} "
                f"ORDER BY accepted_at DESC, rowid DESC LIMIT ?", (*values, limit))]
        return sorted(merged, reverse=True)[:limit]

    def by_prefix(self, where: Filter, limit: int) -> list[tuple[float, int]]:
        """`positions` of the jobs whose id begins with `where.prefix`: the ids from the prefix
        up to the last string that begins with it, read through the id's index (every job of
        the range is looked at, whatever else the filter asks), the matches sorted."""
        bounds, params = _window(where)
        conditions = ["id >= ?", "id < ?", *bounds]
        values: list[float | str] = [where.prefix or "", (where.prefix or "") + LAST_CHARACTER, *params]
        if where.state is not None:
            states = _file_states(where)
            conditions.append(f"state IN ({', '.join('?' * len(states))})")
            values.extend(states)
        for column, value in (("host", where.host), ("ordering_key", where.key)):
            if value is not None:
                conditions.append(f"{column} = ?")
                values.append(value)
        return [(r[0], r[1]) for r in self.db.execute(
            f"SELECT accepted_at, rowid FROM jobs INDEXED BY sqlite_autoindex_jobs_1 WHERE {' AND '.join(conditions)} "
            f"ORDER BY accepted_at DESC, rowid DESC LIMIT ?", (*values, limit))]

    def rows(self, positions: list[tuple[float, int]], start: int, most: int) -> tuple[list[Found], int]:
        """The jobs at `positions[start:]` (those still there), in that order, read one by
        one until they hold `most` characters (one at least); and where the next read starts."""
        read: list[Found] = []
        for n in range(start, len(positions)):
            if most <= 0:
                return read, n
            row = self.db.execute(f"SELECT {LISTED} FROM jobs WHERE rowid = ?", (positions[n][1],)).fetchone()
            if row is not None:  # not deleted since
                read.append((entry(row, strict=False), positions[n]))
                most -= len(row["spec"]) + len(row["history"]) + len(row["payload"] or "")
        return read, len(positions)

    def dead_letters(self) -> Iterator[Entry]:
        """Dead letters, oldest first, read as they are used (there may be millions)."""
        for row in self.db.execute(f"SELECT {LOOKED_UP} FROM jobs WHERE state = 'dead' ORDER BY accepted_at"):
            yield entry(row, strict=False)

