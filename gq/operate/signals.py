"""The signals gq obeys: SIGTERM/SIGINT drain (a second one stops at once), SIGHUP reloads."""

from __future__ import annotations

import signal

import gevent
from gevent.event import Event

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """SIGTERM/SIGINT: the first sets `stop` (drain), a second sets `hurry` (stop now).
    SIGHUP sets `reload`. The handlers only set events; the main greenlet logs and acts."""

    def __init__(self) -> None:
        self.stop = Event()
        self.hurry = Event()
        self.reload = Event()
        self.received: str = ""
        self._handlers = [gevent.signal_handler(s, self._on, s) for s in STOP_SIGNALS]
        self._handlers.append(gevent.signal_handler(signal.SIGHUP, self.reload.set))
        # A process started with them blocked (a part of `gq batch -p N`) gets them from now on.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def _on(self, signum: int) -> None:
        if self.stop.is_set():
            self.hurry.set()
        else:
            self.received = signal.Signals(signum).name
            self.stop.set()

    def close(self) -> None:
        """Once the drain is over and the journal closed, when the process only exits: a late
        SIGTERM/SIGINT is ignored from here, not left to kill it and its exit status with it."""
        for handler in self._handlers:
            handler.cancel()
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
