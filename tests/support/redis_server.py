"""A real redis-server for the Redis broker's tests: its own loopback port and directory, AOF on.

`find_redis_server()` returns the binary, installing Debian's package when it is missing
(as root, with apt-get); `RedisServer` starts, stops and restarts one server process.
A system Redis that the package may start on 6379 never matters: each server here has a
free port of its own, and the tests name it in every URL.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import redis

from support import free_port
from support.packages import PackageError, provide

START_DEADLINE = 20.0   # seconds for a server to answer PING (an AOF replay included)


def find_redis_server() -> tuple[str | None, str]:
    """(path of redis-server, "") or (None, why it cannot be had); installs it when it can."""
    try:
        [path] = provide("redis-server", packages=["redis-server"])
    except PackageError as e:
        return None, str(e)
    return path, ""


class RedisServer:
    """redis-server on 127.0.0.1:`port`, data in `directory`, append-only file on.

    appendfsync "always": Redis writes and fsyncs a command to the AOF before it answers
    it. A 202 from gq comes only after Redis answered the intake script, so whatever gq
    acknowledged is on disk however Redis stops: a job missing after a restart is gq's
    fault, never the test server's ("everysec" leaves up to a second of acknowledged
    writes to the shutdown's flush, and loses them on a crash).
    """

    def __init__(self, binary: str, directory: Path, appendfsync: str = "always", args: tuple[str, ...] = (),
                 password: str | None = None):
        """`args`: more of redis-server's options (`--replicaof HOST PORT`); `password`: its
        requirepass."""
        self.binary, self.directory, self.appendfsync, self.password = binary, directory, appendfsync, password
        self.args = (*args, "--requirepass", password) if password else args
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=10,
                           socket_connect_timeout=5)

    def start(self) -> None:
        """Start on a free port the first time, on the same port and directory afterwards."""
        for _ in range(5):
            port = self.port or free_port()
            self.proc = subprocess.Popen(
                [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                 "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "",
                 "--enable-debug-command", "local",
                 "--daemonize", "no", "--logfile", str(self.log_path), "--loglevel", "notice", *self.args],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                cwd=self.directory)
            if self._answers(port):
                self.port = port
                self.starts += 1
                return
            self.proc.kill()
            self.proc.wait()
            if self.port:  # a restart must keep its port
                break
        raise RuntimeError(f"redis-server did not start:\n{self.log()[-3000:]}")

    def _answers(self, port: int) -> bool:
        client = redis.Redis(host="127.0.0.1", port=port, password=self.password, socket_timeout=2,
                             socket_connect_timeout=2)
        deadline = time.monotonic() + START_DEADLINE
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.RedisError:  # not listening yet, or still loading the AOF
                    time.sleep(0.02)
            return False
        finally:
            client.close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Signal the server and wait for it to exit; returns its exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"redis-server ignored signal {sig} for {timeout:g}s") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Sentinel:
    """redis-server --sentinel on a free loopback port, watching the master named `service`
    (2 sentinels make a quorum); its config file in `directory`, as Sentinel rewrites it."""

    def __init__(self, binary: str, directory: Path, service: str, master_port: int, password: str | None = None,
                 master_password: str | None = None):
        """`password`: the sentinel's own (requirepass); `master_password`: the master's."""
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = directory / "sentinel.conf"
        conf.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
                        f"sentinel monitor {service} 127.0.0.1 {master_port} 2\n"
                        f"sentinel down-after-milliseconds {service} 1000\n"
                        f"sentinel failover-timeout {service} 5000\n"
                        + (f'requirepass "{password}"\n' if password else "")
                        + (f'sentinel auth-pass {service} "{master_password}"\n' if master_password else ""))
        self.proc = subprocess.Popen([binary, str(conf), "--sentinel", "--logfile", str(directory / "sentinel.log")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(host="127.0.0.1", port=self.port, password=password, socket_timeout=5,
                                  decode_responses=True)

    def master_port(self, service: str) -> int | None:
        try:
            return int(self.client.sentinel_get_master_addr_by_name(service)[1])
        except (redis.RedisError, TypeError):
            return None

    def replicas(self, service: str) -> int:
        try:
            return len(self.client.sentinel_slaves(service))
        except redis.RedisError:
            return 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
