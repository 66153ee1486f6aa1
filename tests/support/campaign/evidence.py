"""What the checker reads once the faults stopped: every accepted job as the API shows it
(waiting until each is final, as long as they move), and what the target received."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import requests

from support import Target
from support.campaign.records import Records

FINAL = ("succeeded", "dead", "cancelled")
LOOK_TIMEOUT = 10.0
STALL = 120.0          # seconds none of the jobs still waiting moves before they count as stuck
SETTLE_MOST = 1800.0   # seconds the wait lasts at most, however they move


@dataclass
class Evidence:
    views: dict[str, dict[str, Any] | None]         # id -> GET /v1/jobs/{id} (None: 404)
    arrivals: dict[str, list[dict[str, Any]]]        # id -> the target's records with that Idempotency-Key
    unasked: list[str] = field(default_factory=list)  # keys the target received that no request sent
    settled: float | None = None                      # seconds until every job was final (None: some never were)


def look(session: requests.Session, apis: list[str], job_id: str) -> dict[str, Any] | None:
    """The job as the API shows it (None: 404), from the first daemon that answers."""
    last = ""
    for _ in range(5):
        for api in apis:
            try:
                r = session.get(f"{api}/v1/jobs/{job_id}", timeout=LOOK_TIMEOUT)
            except requests.RequestException as e:
                last = str(e)
                continue
            if r.status_code == 404:
                return None
            if r.status_code == 200:
                return r.json()
            last = f"{r.status_code} {r.text[:200]}"
        time.sleep(1)
    raise RuntimeError(f"no daemon shows job {job_id}: {last}")


def gather(apis: list[str], target: Target, records: Records, prefix: str, stall: float = STALL,
           most: float = SETTLE_MOST) -> Evidence:
    """Wait for every accepted job to be final for as long as they move; then read the target.
    The jobs still waiting when none of them moved (its state or attempts) for `stall`
    seconds, or after `most` seconds in all, are stuck: the checker names them."""
    session = requests.Session()
    with records.lock:
        ids = list(records.accepted)
        maybe = sorted(records.given_up - set(records.accepted))
    views: dict[str, dict[str, Any] | None] = {}
    started = moved = time.monotonic()
    waiting, seen = ids, {}
    while waiting:
        for job_id in waiting:
            views[job_id] = look(session, apis, job_id)
        waiting = [i for i in waiting if (views[i] or {}).get("state", "lost") not in (*FINAL, "lost")]
        now = {i: ((views[i] or {}).get("state"), (views[i] or {}).get("attempts")) for i in waiting}
        if now != seen:
            seen, moved = now, time.monotonic()
        if not waiting or time.monotonic() - moved > stall or time.monotonic() - started > most:
            break
        time.sleep(1)
    settled = time.monotonic() - started if not waiting else None
    for job_id in maybe:  # a request given up may have been committed: then its jobs count too
        view = look(session, apis, job_id)
        if view is not None:
            views[job_id] = view
    arrivals: dict[str, list[dict[str, Any]]] = defaultdict(list)
    unasked = []
    for record in target.received():
        if record["key"] in views:
            arrivals[record["key"]].append(record)
        elif record["key"].startswith(prefix) and record["key"] not in maybe:
            unasked.append(record["key"])
    return Evidence(views, dict(arrivals), unasked, settled)
