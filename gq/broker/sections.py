"""[broker] and [journal]: where the jobs are kept, declared beside the brokers that read them
(gq/core/settings.py says how a key is declared; gq/config.py gathers the sections)."""

from __future__ import annotations

from dataclasses import dataclass

from gq.broker.redis_urls import redis_url
from gq.core.settings import URL, boolean, choice, integer, seconds, setting, text


@dataclass(frozen=True)
class JournalConfig:
    path: str = setting("gq-data/journal.sqlite3", text,
                        'SQLite journal, relative to the working directory; "" = memory only', live=False)
    max_backlog: int = setting(10_000_000, integer(1), "unfinished jobs held at most (memory only too); "
                               "past it intake answers 429")
    min_free_mb: int = setting(256, integer(0), "free space kept on the journal's file system; below it "
                               "intake answers 503")
    keep_succeeded: float = setting(3600.0, seconds(), "seconds a succeeded job stays visible and counts as a "
                                    "duplicate; its body is dropped at success")
    keep_succeeded_payload: bool = setting(False, boolean, "true: a succeeded job keeps its body while it is "
                                           "kept, so that it can be replayed (more disk; memory only and Redis too)")


@dataclass(frozen=True)
class BrokerConfig:
    kind: str = setting("embedded", choice("embedded", "redis"), '"redis": daemons share one Redis stream',
                       live=False)
    url: str = setting("redis://127.0.0.1:6379/0", redis_url, "Redis URL when kind = \"redis\"; or "
                       "redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…]/SERVICE[/DB]"
                       "[?sentinel_password=P] (Redis Sentinel)", secret=URL, live=False)
    prefix: str = setting("gq", text, "Redis keys' prefix: daemons with the same one share the queue")
    claim_idle: float = setting(60.0, seconds(1),
                                "seconds a job may sit with a daemon that stopped before another takes it")
    max_backlog: int = setting(1000000, integer(1), "unfinished jobs of the fleet beyond which intake answers 429")
    status_ttl: int = setting(86400, integer(60), "seconds job ids and states are kept in Redis after the job ends")
    prefetch: int = setting(0, integer(0), "jobs a daemon holds from the shared stream beyond those in "
                            "flight; 0 = pool.size")
    heartbeat: float = setting(1.0, seconds(0.1), "seconds between a daemon's liveness beats; silent for 3 "
                               "beats, it is dead and its jobs run on the others")
