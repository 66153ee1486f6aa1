"""One gq daemon of a campaign: its config, its port kept across restarts, and the processes
it has been (each restart is a new `gq run` on the same journal or Redis)."""

from __future__ import annotations

import copy
import signal
import subprocess
from pathlib import Path
from typing import Any

from support import Daemon, free_port, to_toml

START_TRIES = 3

class Node:
    def __init__(self, name: str, workdir: Path, config: dict[str, dict[str, Any]]):
        self.name, self.workdir = name, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = copy.deepcopy(config)
        self.config.setdefault("api", {})["listen"] = f"127.0.0.1:{self.port}"
        self.api = f"http://127.0.0.1:{self.port}"
        self.first = copy.deepcopy(self.config)   # what heal() brings it back to
        self.daemon: Daemon | None = None
        self.past: list[Daemon] = []
        self.starts = 0
        self.stopped = False       # SIGSTOP sent, SIGCONT not yet

    def start(self) -> None:
        """A new `gq run` with the current config; waits until it listens."""
        self.retire()
        self.daemon = Daemon(self.workdir, self.config)
        self.starts += 1

    def alive(self) -> bool:
        return self.daemon is not None and self.daemon.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.daemon is not None
            self.daemon.proc.send_signal(sig)
            if sig == signal.SIGSTOP:
                self.stopped = True
            elif sig == signal.SIGCONT:
                self.stopped = False

    def kill(self) -> None:
        """SIGKILL, as `kill -9` and the kernel's OOM killer send it."""
        if self.daemon is not None and self.daemon.proc.poll() is None:
            self.daemon.proc.kill()
            self.daemon.proc.wait()
        self.stopped = False

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code once it exited, None if it still runs after `timeout`."""
        if self.daemon is None:
            return None
        try:
            return self.daemon.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def reload(self, **sections: dict[str, Any]) -> None:
        """Change the config file and send SIGHUP."""
        for name, values in sections.items():
            self.config.setdefault(name, {}).update(values)
        self.write_config()
        self.signal(signal.SIGHUP)

    def write_config(self) -> None:
        (self.workdir / "gq.toml").write_text(to_toml(self.config))

    def retire(self) -> None:
        if self.daemon is not None:
            self.kill()
            self.daemon.stop()
            self.past.append(self.daemon)
            self.daemon = None

    def ensure_running(self) -> None:
        """Continued if stopped, started if it is not running, on its first config (a pool of 2
        left by a reload would make the jobs still waiting take minutes)."""
        if self.stopped:
            self.signal(signal.SIGCONT)
        if self.config != self.first:
            self.config = copy.deepcopy(self.first)
            self.write_config()
            self.signal(signal.SIGHUP)
        if not self.alive():
            self.start()

    def logs(self) -> str:
        return "".join(d.log() for d in [*self.past, *([self.daemon] if self.daemon else [])])

    def close(self) -> None:
        if self.stopped:
            self.signal(signal.SIGCONT)
        self.retire()
