"""The operator's actions in Redis (gq.broker.AuditLog): a stream, P:audit, capped at about
AUDIT_KEEP entries (`XADD … MAXLEN ~`: Redis trims whole nodes of it, so a few more may
stay), shared by the fleet and by `gq dlq`. A row's position is its entry id's two numbers."""

from __future__ import annotations

import json
from typing import Any

import redis

from gq.broker import AUDIT_KEEP, Position
from gq.broker.redis_link import REDIS_ERRORS
from gq.errors import BrokerUnavailable


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
        start = "+" if after is None else f"({int(after[0])}-{after[1]}"
        try:
            entries: Any = self.redis.xrevrange(self.key, start, "-", count=limit)
        except REDIS_ERRORS as e:
            raise BrokerUnavailable(f"broker: cannot reach Redis: {e}") from None
        found = []
        for msg_id, fields in entries:
            ms, _, seq = (msg_id.decode() if isinstance(msg_id, bytes) else msg_id).partition("-")
            found.append((json.loads(fields[b"action"]), (float(ms), int(seq))))
        return found
