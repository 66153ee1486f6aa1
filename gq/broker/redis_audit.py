"""The operator's actions in Redis (gq.core.audit.AuditLog): a stream, P:audit, capped at about
AUDIT_KEEP entries (`XADD … MAXLEN ~`: Redis trims whole nodes of it, so a few more may
stay), shared by the fleet and by `gq dlq`. A row's position is its entry id's two numbers."""

from __future__ import annotations

import json
from typing import Any

import redis

from gq.broker.redis_link import REDIS_ERRORS
from gq.core.audit import AUDIT_KEEP, Position
from gq.errors import BrokerUnavailable

LAST = 2**64 - 1  # the largest of either number of a stream entry's id


def _before(after: Position) -> str | None:
    """The id of the newest entry a page after `after` may hold (inclusive); None: nothing
    can be older. A cursor holds any finite number and any 64-bit integer (gq.intake.jobs_api):
    the id is kept within what Redis takes."""
    ms, seq = min(int(after[0]), LAST), min(after[1], LAST + 1)
    if seq <= 0:
        ms, seq = ms - 1, LAST + 1
    return None if ms < 0 else f"{ms}-{seq - 1}"


class RedisAudit:
    def __init__(self, client: redis.Redis, key: str):
        self.redis, self.key = client, key

    def keep_action(self, row: dict[str, Any]) -> None:
        """Raises BrokerUnavailable when Redis cannot take it."""
        try:
            self.redis.xadd(self.key, {"action": json.dumps(row, ensure_ascii=False)},
                            maxlen=AUDIT_KEEP, approximate=True)
        except REDIS_ERRORS as e:
            raise BrokerUnavailable(f"broker: cannot reach Redis: {e}") from None

    def actions(self, limit: int, after: Position | None = None) -> list[tuple[dict[str, Any], Position]]:
        """Newest first; raises BrokerUnavailable when Redis does not answer."""
        newest = "+" if after is None else _before(after)
        if newest is None:
            return []
        try:
            entries: Any = self.redis.xrevrange(self.key, newest, "-", count=limit)
        except REDIS_ERRORS as e:
            raise BrokerUnavailable(f"broker: cannot reach Redis: {e}") from None
        found = []
        for msg_id, fields in entries:
            ms, _, seq = (msg_id.decode() if isinstance(msg_id, bytes) else msg_id).partition("-")
            found.append((json.loads(fields[b"action"]), (float(ms), int(seq))))
        return found
