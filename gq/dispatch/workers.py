"""The workers: greenlets running attempts, at most `size` at once.

gevent's Pool has a fixed size; a reload may change `size`. So the bound is
kept here, over a plain gevent Group: a shrink under load takes effect as
attempts end (none is cut off), a growth at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gevent.event import Event
from gevent.pool import Group


class Workers:
    def __init__(self, size: int):
        self.size = size
        self.pool = Group()   # the greenlets in flight (the process metrics count them)
        self._freed = Event()

    def busy(self) -> int:
        return len(self.pool)

    def wait_available(self) -> None:
        """Block until fewer than `size` are busy."""
        while len(self.pool) >= self.size:
            self._freed.clear()
            self._freed.wait()

    def spawn(self, run: Callable[..., Any], *args: Any) -> None:
        """Start `run(*args)` on a worker; call only once `wait_available` returned."""
        self.pool.spawn(run, *args).rawlink(self._ended)

    def _ended(self, _greenlet: Any) -> None:
        self._freed.set()

    def resize(self, size: int) -> None:
        self.size = size
        self._freed.set()

    def kill(self) -> None:
        self.pool.kill()
