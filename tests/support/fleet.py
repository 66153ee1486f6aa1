"""gq daemons on one real redis-server (Fleet, the `fleet` fixture's), a client that submits
to them in turn (Submitter), and what the Redis tests look at in the daemons and the target."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from support import Daemon, to_toml, wait_for
from support.redis_server import RedisServer

CLAIM_IDLE = 2.0   # seconds: broker.claim_idle of every daemon here


class Fleet:
    """gq daemons on one Redis server and one key prefix, and a Redis client to look inside."""

    def __init__(self, server: RedisServer, start_daemon, tmp_path: Path, prefix: str):
        self.server, self._start, self.tmp_path, self.prefix = server, start_daemon, tmp_path, prefix
        self.redis = server.client()
        self.stream, self.group = f"{prefix}:jobs", f"{prefix}:workers"
        self.retry_set, self.dead = f"{prefix}:retry", f"{prefix}:dead"
        self.daemons: list[Daemon] = []

    def broker(self, **extra: Any) -> dict[str, Any]:
        return {"kind": "redis", "url": self.server.url, "prefix": self.prefix,
                "claim_idle": CLAIM_IDLE, **extra}

    def start(self, name: str, broker: dict[str, Any] | None = None, **sections: dict[str, Any]) -> Daemon:
        """A daemon in its own working directory (its own gq.toml and log)."""
        workdir = self.tmp_path / name
        workdir.mkdir(exist_ok=True)
        sections.setdefault("shutdown", {"drain_timeout": 20})
        daemon = self._start(workdir=workdir, broker=self.broker(**(broker or {})), **sections)
        daemon.name = name
        self.daemons.append(daemon)
        return daemon

    def cli_config(self, **extra: Any) -> Path:
        """A config file naming the fleet's broker, for `gq dlq -c`."""
        path = self.tmp_path / "cli.toml"
        path.write_text(to_toml({"broker": self.broker(**extra)}))
        return path

    # -- inside Redis

    def consumers(self) -> dict[str, int]:
        """The group's consumers and how many entries each has pending."""
        return {_text(c["name"]): c["pending"] for c in self.redis.xinfo_consumers(self.stream, self.group)}

    def pending_total(self) -> int:
        return self.redis.xpending(self.stream, self.group)["pending"]

    def pending_job_ids(self, consumer: str) -> list[str]:
        """The job ids of the stream entries `consumer` holds."""
        ids = []
        for p in self.redis.xpending_range(self.stream, self.group, "-", "+", 10000, consumername=consumer):
            for _, fields in self.redis.xrange(self.stream, p["message_id"], p["message_id"]):
                ids.append(json.loads(fields[b"payload"])["job"]["id"])
        return ids

    def retry_ids(self) -> dict[str, float]:
        return {json.loads(member)["job"]["id"]: score
                for member, score in self.redis.zrange(self.retry_set, 0, -1, withscores=True)}

    def stranded(self) -> list[str]:
        """Job ids of stream entries the group already handed out that no consumer holds:
        no daemon reads them again (XREADGROUP >) nor takes them over (XAUTOCLAIM)."""
        group = next(g for g in self.redis.xinfo_groups(self.stream) if _text(g["name"]) == self.group)
        delivered = _stream_id(group["last-delivered-id"])
        held = {_stream_id(p["message_id"])
                for p in self.redis.xpending_range(self.stream, self.group, "-", "+", 100000)}
        return [json.loads(fields[b"payload"])["job"]["id"] for msg_id, fields in self.redis.xrange(self.stream)
                if _stream_id(msg_id) <= delivered and _stream_id(msg_id) not in held]

    def dead_ids(self) -> list[str]:
        return [_text(fields[b"id"]) for _, fields in self.redis.xrange(self.dead)]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _stream_id(value: bytes | str) -> tuple[int, int]:
    ms, seq = _text(value).split("-")
    return int(ms), int(seq)


def consumer_of(daemon: Daemon) -> str:
    m = re.search(r"broker: Redis stream \S+, consumer (\S+)", daemon.log())
    assert m, daemon.log()
    return m.group(1)


def accepted_ids(response: requests.Response) -> list[str]:
    """The ids of a request whose jobs were all new. The status code itself is checked by
    test_new_jobs_are_answered_202 alone, so that the other tests check their own point."""
    assert response.status_code in (200, 202), (response.status_code, response.text)
    body = response.json()
    assert "duplicates" not in body, body
    return body["ids"] if "ids" in body else [body["id"]]


def keys_received(target) -> Counter:
    return Counter(r["key"] for r in target.received())


def wait_delivered(target, ids: set[str], timeout: float, what: str) -> Counter:
    """Wait until every id in `ids` has reached the target; returns requests per key."""
    deadline = time.monotonic() + timeout
    # Cheap first: the count of distinct keys; then the keys themselves.
    while target.stats()["keys"] < len(ids) and time.monotonic() < deadline:
        time.sleep(0.2)
    while True:
        keys = keys_received(target)
        missing = ids - set(keys)
        if not missing:
            return keys
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}: {len(missing)} accepted "
                        f"job(s) never reached the target: {sorted(missing)[:10]}")
        time.sleep(0.5)


def assert_no_traceback(*daemons: Daemon) -> None:
    for daemon in daemons:
        log = daemon.log()
        assert "Traceback" not in log, f"{daemon.name}:\n{log[-4000:]}"


class Submitter(threading.Thread):
    """Submits small batches with client ids to the daemons in turn, each retried on 503, 429
    or a connection error until accepted, as a well-behaved client does."""

    def __init__(self, daemons: list[Daemon], target):
        super().__init__(daemon=True)
        self.daemons, self.target = daemons, target
        self.accepted: list[str] = []      # ids accepted as new
        self.known: list[str] = []         # ids of a retried batch that an earlier try had written
        self.refused: Counter = Counter()
        self.answers: list[tuple[float, float]] = []   # (sent, answered) of each accepting request
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            session, n = requests.Session(), 0
            while not self.halt.is_set():
                batch = [{"id": f"rs-{n}-{k}", "url": self.target.url("/hook", delay=0.2)} for k in range(5)]
                self._submit(session, self.daemons[n % len(self.daemons)], batch)
                n += 1
                self.halt.wait(0.02)
        except BaseException as e:  # reported by the test
            self.error = e

    def more(self, count: int, timeout: float, what: str) -> None:
        """Wait until `count` more jobs than now are accepted."""
        after = len(self.accepted)
        wait_for(lambda: len(self.accepted) >= after + count, timeout, what)

    def stop(self) -> None:
        self.halt.set()
        self.join(70)

    def ids(self) -> set[str]:
        """Once stopped: every job a daemon accepted, or knew from a try whose answer was lost."""
        assert self.error is None, self.error
        return set(self.accepted) | set(self.known)

    def _submit(self, session: requests.Session, daemon: Daemon, batch: list[dict]) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                r = session.post(f"{daemon.api}/v1/jobs", json=batch, timeout=20)
            except requests.RequestException:
                self.refused["connection"] += 1
                time.sleep(0.1)
                continue
            if r.status_code in (200, 202):
                duplicates = set(r.json().get("duplicates", []))
                self.accepted += [j["id"] for j in batch if j["id"] not in duplicates]
                self.known += [j["id"] for j in batch if j["id"] in duplicates]
                self.answers.append((sent, time.monotonic()))
                return
            assert r.status_code in (429, 503), (r.status_code, r.text)
            self.refused[r.status_code] += 1
            time.sleep(0.1)
        raise AssertionError(f"batch {batch[0]['id']} not accepted within 60s")
