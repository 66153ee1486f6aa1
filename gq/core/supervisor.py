"""The daemon's long-lived greenlets, owned and watched.

Every loop that runs for the life of the process (dispatch, feed, journal writer,
control poll, Redis writer and maintenance, event-loop monitor, heartbeat) is started
here. One that fails is logged with its cause and started again after a backoff; one
that keeps failing (RESTARTS_MAX times, each within RESTART_WINDOW seconds of its
start) cannot be trusted to recover, and `on_fatal` is called: the daemon then stops
answering ready, stops the watchdog and exits non-zero, for systemd to restart it. A
daemon never keeps answering ready while one of its loops is dead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import gevent

log = logging.getLogger("gq")

BACKOFF_FIRST = 0.1   # seconds before a failed loop is started again
BACKOFF_MAX = 5.0
RESTART_WINDOW = 30.0  # a loop that ran this long before failing starts afresh, backoff reset
RESTARTS_MAX = 10      # failures in a row, each soon after its start, before giving up


class Supervisor:
    def __init__(self, on_fatal: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.on_fatal = on_fatal or (lambda why: log.critical("%s", why))
        self.clock = clock
        self.backoff_first, self.backoff_max = BACKOFF_FIRST, BACKOFF_MAX
        self.restart_window, self.restarts_max = RESTART_WINDOW, RESTARTS_MAX
        self.fatal: str | None = None   # why the process cannot go on, once a loop gave up
        self._greenlets: list[gevent.Greenlet] = []

    def spawn(self, name: str, loop: Callable[[], None]) -> gevent.Greenlet:
        """Run `loop` in a greenlet of its own, watched; returns that greenlet (kill it to stop
        the loop). A loop that returns has finished for good."""
        greenlet = gevent.spawn(self._watch, name, loop)
        self._greenlets = [g for g in self._greenlets if not g.dead] + [greenlet]
        return greenlet

    def _watch(self, name: str, loop: Callable[[], None]) -> None:
        backoff, failures = self.backoff_first, 0
        while True:
            started = self.clock()
            try:
                loop()
                return
            except Exception as e:  # GreenletExit (a stop) is not caught: it ends the watch
                if self.clock() - started >= self.restart_window:
                    backoff, failures = self.backoff_first, 0
                failures += 1
                if failures >= self.restarts_max:
                    log.error("%s failed %d times in a row; giving up", name, failures, exc_info=True)
                    self.fatal = f"{name} failed {failures} times in a row: {e!r}"
                    self.on_fatal(self.fatal)
                    return
                log.error("%s failed (%r); starting it again in %.1fs", name, e, backoff, exc_info=True)
            gevent.sleep(backoff)
            backoff = min(self.backoff_max, backoff * 2)

    def stop(self) -> None:
        """Kill every loop still running (they end as their owners close)."""
        gevent.killall([g for g in self._greenlets if not g.dead])
        self._greenlets = []
