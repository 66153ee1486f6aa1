"""Signing deliveries the Standard Webhooks way, so receivers can verify they came from gq.

Each attempt to a host that has a secret carries:
    webhook-id:        the job id (the same on every attempt)
    webhook-timestamp: the attempt's time, in seconds since the epoch
    webhook-signature: v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>
where the key is the secret's base64 part after `whsec_`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

from gq.core.hosts import HostPatterns

PREFIX = "whsec_"


def decode_secret(secret: str) -> bytes:
    """The key of a `whsec_…` secret; raises ValueError when it is not one."""
    if not secret.startswith(PREFIX):
        raise ValueError(f"must start with {PREFIX}")
    try:
        key = base64.b64decode(secret[len(PREFIX):], validate=True)
    except binascii.Error:
        raise ValueError(f"must be {PREFIX} followed by base64") from None
    if len(key) < 16:
        raise ValueError("key too short: use at least 16 random bytes (24 to 64 is usual)")
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


class Signer:
    """Picks the secret for a host (the first pattern that matches) and signs."""

    def __init__(self, secrets: dict[str, str]):
        self.rules = [(HostPatterns.parse([pattern]), decode_secret(secret))
                      for pattern, secret in secrets.items()]

    def __bool__(self) -> bool:
        return bool(self.rules)

    def headers(self, host: str, msg_id: str, body: bytes | None) -> dict[str, str]:
        for patterns, key in self.rules:
            if patterns.match_name(host):
                timestamp = int(time.time())
                return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                        "webhook-signature": signature(key, msg_id, timestamp, body or b"")}
        return {}
