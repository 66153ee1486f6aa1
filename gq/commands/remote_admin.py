"""`gq jobs` through a running daemon's API: a JobsAdmin (gq.broker) on a gq.Client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gq.broker import Conflict, Filter, Replayed
from gq.client import Client
from gq.core.lifecycle import State
from gq.errors import GqError, Refused

TOKEN_HINT = "(give --token or set $GQ_TOKEN)"
NO_REASON = "skipped (the daemon gives no reason)"


def explained(e: Refused, what: str) -> GqError:
    """A refusal as the CLI says it: `cannot WHAT: ...`, with a hint for a 401."""
    if e.status == 401:
        return GqError(f"cannot {what}: unauthorized: {e.error} {TOKEN_HINT}")
    if e.status == 501:
        return GqError(f"cannot {what} on this daemon: {e.error}")
    return GqError(f"cannot {what}: {e}")


class RemoteAdmin:
    """JobsAdmin through the daemon that `client` reaches."""

    def __init__(self, client: Client):
        self.client = client

    def job(self, job_id: str) -> dict[str, Any] | None:
        try:
            return self.client.get(job_id)
        except Refused as e:
            if e.status == 404:
                return None
            raise explained(e, "look up a job") from None

    def jobs(self, where: Filter, limit: int | None) -> Iterator[dict[str, Any]]:
        try:
            yield from self.client.jobs(**where.fields(), limit=limit)
        except Refused as e:
            raise explained(e, "list jobs") from None

    def cancel(self, job_id: str) -> bool:
        try:
            self.client.cancel(job_id)
        except Refused as e:
            if e.status == 404:
                return False
            state = _state_of(e)
            if e.status == 409 and state is not None:
                raise Conflict(job_id, state) from None
            raise explained(e, "cancel a job") from None
        return True

    def replay(self, ids: list[str]) -> Replayed:
        done = Replayed()
        for page in self._pages(ids):
            done.ids.extend(page.ids)
            done.skipped.extend(page.skipped)
        return done

    def replay_matching(self, where: Filter) -> Iterator[Replayed]:
        return self._pages(None, **where.fields())

    def _pages(self, ids: list[str] | None, **where: Any) -> Iterator[Replayed]:
        try:
            for body in self.client.replay_pages(ids, **where):
                # A daemon of an earlier version names the ids it skipped, without a reason.
                skipped = [(s["id"], s["reason"]) if isinstance(s, dict) else (s, NO_REASON) for s in body["skipped"]]
                yield Replayed(body["ids"], skipped)
        except Refused as e:
            raise explained(e, "replay jobs") from None

    def close(self) -> None:
        self.client.close()


def _state_of(e: Refused) -> State | None:
    """The state a 409 names."""
    state = e.answer.get("state")
    return State(state) if state in {s.value for s in State} else None
