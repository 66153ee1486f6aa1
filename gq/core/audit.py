"""The audit: every operator action kept, from wherever it came (API, console, CLI, signal).

One entry point, `Audit.record`, that the API, the console, the CLI and a reload call once an
action is done. It writes a log line at info level, counts the action in
`gq_operator_actions_total{action}` (a daemon's; a command alone has no metrics), and hands
the row to the broker, which keeps the newest AUDIT_KEEP beside the jobs (the journal's
`audit` table, a capped Redis stream, a bounded deque in memory). `GET /v1/audit` lists them.

A row: `{"at", "action", "ids" or "filter", "count", "by", "via"}`: `ids` holds the first
IDS_KEPT ids and `count` all of them, so a bulk replay of a million jobs is one small row;
a reload's row has `changed` (the keys it changed) instead. What is refused (400, 403, 404,
409) or changed nothing is not an action done, and is not kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

log = logging.getLogger("gq.audit")

ACTIONS = ("cancel", "replay", "purge", "reload")
BY = ("token", "read_token", "local", "anonymous")  # the roles of gq.intake.access, and "local": the machine's user
VIA = ("api", "console", "cli", "signal")           # "signal": a SIGHUP's reload
IDS_KEPT = 100  # ids a row names at most; `count` says how many there were
AUDIT_KEEP = 10_000  # operator actions a broker keeps (its AuditLog): the newest; older ones go
Position = tuple[float, int]  # a kept action's place, newest first: (when, a number the broker keeps)


class AuditLog(Protocol):
    """Where the operator's actions are kept (Audit writes them): beside the jobs,
    AUDIT_KEEP of them at most, trimmed as they come; never growing with use."""

    def keep_action(self, row: dict[str, Any]) -> None:
        """Keep one action (a JSON object); once this returns, a durable broker has written it."""

    def actions(self, limit: int, after: Position | None = None) -> list[tuple[dict[str, Any], Position]]:
        """Up to `limit` kept actions, newest first, each with its position; `after`: only
        those older than that position."""


def row(action: str, *, by: str, via: str, count: int, ids: Sequence[str] | None = None,
        filter: dict[str, Any] | None = None, changed: Sequence[str] | None = None,
        at: float | None = None) -> dict[str, Any]:
    """An action as GET /v1/audit shows it. Raises ValueError for an action, `by` or `via`
    gq does not know (a mistake of gq's, found at once)."""
    if action not in ACTIONS or by not in BY or via not in VIA:
        raise ValueError(f"audit: unknown action {action!r}, by {by!r} or via {via!r}")
    shown: dict[str, Any] = {"at": round(time.time() if at is None else at, 6), "action": action}
    if ids is not None:
        shown["ids"] = list(ids[:IDS_KEPT])
    if filter is not None:
        shown["filter"] = dict(filter)
    if changed is not None:
        shown["changed"] = list(changed)
    shown.update(count=count, by=by, via=via)
    return shown


def said(shown: dict[str, Any]) -> str:
    """A row as one log line's words."""
    what = [f"{shown['action']} of {shown['count']} job(s)" if shown["action"] != "reload" else "reload"]
    if "ids" in shown:
        more = shown["count"] - len(shown["ids"])
        what.append("ids " + ", ".join(map(repr, shown["ids"])) + (f" and {more} more" if more > 0 else ""))
    if "filter" in shown:
        what.append("filter " + ", ".join(f"{k}={v}" for k, v in shown["filter"].items()))
    if "changed" in shown:
        what.append("changed " + (", ".join(shown["changed"]) or "nothing"))
    return f"{'; '.join(what)}; by {shown['by']} via {shown['via']}"


class Audit:
    """Records operator actions into `keeper` (a broker, or the journal file a command
    changes); `counted(action)`: the daemon's gq_operator_actions_total, None in a command."""

    def __init__(self, keeper: AuditLog, counted: Callable[[str], None] | None = None):
        self.keeper = keeper
        self.counted = counted

    def record(self, action: str, *, by: str, via: str, count: int, ids: Sequence[str] | None = None,
               filter: dict[str, Any] | None = None, changed: Sequence[str] | None = None) -> dict[str, Any]:
        """Keep an action that was done: `action` one of ACTIONS, `by` one of BY, `via` one of
        VIA; `ids` the jobs it touched (or `filter`, how they were chosen) and `count` how
        many. Logs it, counts it, and keeps it; returns the row. Does not raise once the
        action is known: a row the broker cannot keep (Redis away, a disk error) is logged as
        an error, for the action is done whatever happens to its record."""
        shown = row(action, by=by, via=via, count=count, ids=ids, filter=filter, changed=changed)
        log.info("audit: %s", said(shown))
        if self.counted is not None:
            self.counted(action)
        try:
            self.keeper.keep_action(shown)
        except Exception as e:  # the log line above is the record then
            log.error("audit: cannot keep the %s above in the broker: %s", action, e)
        return shown


def dlq_done(audit: Audit, op: str, ids: Sequence[str] | None, done: Sequence[str]) -> None:
    """Record what a `gq dlq replay|purge` did (`ids` None: --all, every dead letter), where
    it was done: in the file or Redis by the command, or by the daemon it asked."""
    if done:
        audit.record(op, by="local", via="cli", count=len(done),
                     **({"filter": {"state": "dead"}} if ids is None else {"ids": done}))
