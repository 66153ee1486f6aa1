"""Standard Webhooks signatures on deliveries to a host with a signing secret, checked by an
independent verifier (`verify_webhook`), as a receiver would check them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets as secrets_
import time

from support import final_state, new_id, post_job, records


def verify_webhook(secret: str, headers: dict[str, str], body: bytes, tolerance: float = 300.0,
                   now: float | None = None) -> bool:
    """Standard Webhooks verification, as a receiver of gq's deliveries would write it.

    `headers` as received (names in lower case); `body` the raw request body bytes.
    """
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False                                        # too old or from the future: a replay
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, sig.partition(",")[2])
               for sig in headers["webhook-signature"].split() if sig.startswith("v1,"))


def test_deliveries_to_a_host_with_a_secret_are_signed(start_daemon, shared_target):
    whsec = "whsec_" + base64.b64encode(secrets_.token_bytes(32)).decode()
    daemon = start_daemon(target={"signing_secrets": {"127.0.0.1": whsec}})
    started = time.time()
    jobs = {
        "json-retried": {"url": shared_target.url("/signed", fail=1, retry_after=0), "json": {"msg": "héllo", "n": 1}},
        "body": {"url": shared_target.url("/signed"), "body": "raw body, {not json} ünïcode"},
        "no-body": {"url": shared_target.url("/signed"), "method": "GET"},
        "forged": {"url": shared_target.url("/signed"), "body": "x",
                   "headers": {"webhook-signature": "v1,forged", "webhook-id": "forged-id"}},
        "unsigned-host": {"url": f"http://localhost:{shared_target.port}/unsigned", "body": "y"},
    }
    ids = {}
    for name, job in jobs.items():
        response = post_job(daemon, {"id": new_id(name), **job})
        assert response.status_code == 202, response.text
        ids[name] = response.json()["id"]
    for name, job_id in ids.items():
        assert final_state(daemon, job_id)["state"] == "succeeded", name

    attempts = records(shared_target, ids["json-retried"])
    assert len(attempts) == 2
    for name in ("json-retried", "body", "no-body", "forged"):
        for r in records(shared_target, ids[name]):
            h = r["headers"]
            assert h["webhook-id"] == ids[name], (name, h)
            assert started - 2 <= int(h["webhook-timestamp"]) <= time.time() + 2, (name, h)
            assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", h["webhook-signature"]), (name, h)
            body = r["body"].encode()
            assert verify_webhook(whsec, h, body), (name, h)
            other = "whsec_" + base64.b64encode(secrets_.token_bytes(32)).decode()
            assert not verify_webhook(other, h, body)
            assert not verify_webhook(whsec, h, body + b" ")
            assert not verify_webhook(whsec, {**h, "webhook-id": "other"}, body)
            assert not verify_webhook(whsec, h, body, now=int(h["webhook-timestamp"]) + 301)
    unsigned = records(shared_target, ids["unsigned-host"])[-1]["headers"]
    assert not [name for name in unsigned if name.startswith("webhook-")], unsigned
