"""What a campaign runs: the target, the hostile target, gq (one daemon on a journal in a small
tmpfs, or two daemons on one Redis), all real processes on loopback."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from support import Target, spawn_listening, start_target
from support.campaign.disk import SmallDisk
from support.campaign.node import Node
from support.redis_server import RedisServer, find_redis_server

CLAIM_IDLE = 2.0        # broker.claim_idle: a stopped daemon's jobs go to the other one after it
TARGET_TIMEOUT = 8.0    # target.timeout: longer than any delay and any SIGSTOP the campaign makes
JOURNAL_MIN_FREE_MB = 4


def base_config(**sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    config: dict[str, dict[str, Any]] = {
        "api": {},
        "pool": {"size": 8},
        "retry": {"max_attempts": 8, "backoff_base": 0.1, "backoff_max": 1.5},
        "target": {"timeout": TARGET_TIMEOUT},
        "shutdown": {"drain_timeout": 15},
        "journal": {"path": "", "min_free_mb": JOURNAL_MIN_FREE_MB, "keep_succeeded": 86400},
        "console": {"enabled": False},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    return config


class World:
    """The processes of one campaign; `heal()` undoes every fault, `close()` ends them all."""

    def __init__(self, workdir: Path, setup: str, disk_mb: int = 64):
        self.workdir, self.setup = workdir, setup
        self.disk: SmallDisk | None = None
        self.redis: RedisServer | None = None
        self.nodes: list[Node] = []
        self.target: Target = start_target()
        self.hostile: subprocess.Popen | None = None
        try:
            self.hostile, port = spawn_listening("hostile.py", "--seconds", "3")
            self.hostile_base = f"http://127.0.0.1:{port}"
            if setup == "journal":
                self._journal(disk_mb)
            else:
                self._fleet()
            for node in self.nodes:
                node.start()
        except BaseException:
            self.close()
            raise

    def _journal(self, disk_mb: int) -> None:
        self.disk = SmallDisk(self.workdir / "disk", disk_mb)
        config = base_config(journal={"path": str(self.disk.path / "journal.sqlite3")})
        self.nodes.append(Node("gq", self.workdir / "gq", config))

    def _fleet(self) -> None:
        binary, why = find_redis_server()
        if binary is None:
            raise RuntimeError(why)
        self.redis = RedisServer(binary, self.workdir / "redis")
        self.redis.start()
        broker = {"kind": "redis", "url": self.redis.url, "prefix": f"campaign{time.monotonic_ns()}",
                  "claim_idle": CLAIM_IDLE}
        for name in ("gq-a", "gq-b"):
            self.nodes.append(Node(name, self.workdir / name, base_config(broker=broker)))

    @property
    def apis(self) -> list[str]:
        return [node.api for node in self.nodes]

    def config_path(self, node: int = 0) -> Path:
        return self.nodes[node].workdir / "gq.toml"

    def redis_master(self) -> None:
        """Redis running, and a master (REPLICAOF NO ONE)."""
        if self.redis is None:
            return
        if self.redis.proc is None or self.redis.proc.poll() is not None:
            self.redis.start()
        self.redis.client().execute_command("REPLICAOF", "NO", "ONE")

    def heal(self) -> None:
        """Every fault undone: the disk has room, Redis is up and a master, the target answers,
        every daemon runs (continued or started again) with its first config's limits."""
        if self.disk is not None:
            self.disk.free()
        self.redis_master()
        self.target.control("/_up")
        for node in self.nodes:
            node.ensure_running()

    def logs(self) -> str:
        return "".join(f"== {node.name}\n{node.logs()}" for node in self.nodes)

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        if self.redis is not None:
            self.redis.kill()
        if self.hostile is not None:
            self.hostile.send_signal(signal.SIGKILL)
            self.hostile.wait()
        self.target.stop()
        if self.disk is not None:
            self.disk.close()
