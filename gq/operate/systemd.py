"""systemd integration: sd_notify messages, the watchdog, socket activation.

The notify protocol is one datagram of `KEY=value` lines to the unix socket
named by $NOTIFY_SOCKET (a path, or `@name` for an abstract socket): small
enough that a dependency would not earn its place.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import MutableMapping

log = logging.getLogger("gq.systemd")

SD_LISTEN_FDS_START = 3


class Notifier:
    """Sends sd_notify messages; does nothing when not run by systemd (no $NOTIFY_SOCKET)."""

    def __init__(self, environ: MutableMapping[str, str] | None = None):
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if address else None
        if self.socket is not None:
            self.socket.setblocking(False)
        self.watchdog_interval = self._watchdog_interval(environ)
        # Children must not inherit these and talk to systemd in our name.
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            environ.pop(name, None)

    @staticmethod
    def _watchdog_interval(environ: MutableMapping[str, str]) -> float | None:
        """Half of $WATCHDOG_USEC in seconds, when the watchdog is meant for this process."""
        usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
        if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 2e6

    def send(self, **fields: str | int) -> None:
        """notify(READY=1, STATUS="...") → one datagram; a failure is logged, never raised."""
        if self.socket is None:
            return
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            self.socket.sendto(message.encode(), self.address)
        except OSError as e:
            log.warning("sd_notify %s failed: %s", ",".join(fields), e)

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()


def listen_socket(environ: MutableMapping[str, str] | None = None) -> socket.socket | None:
    """The listening socket systemd passed (socket activation), if any; clears $LISTEN_*."""
    environ = os.environ if environ is None else environ
    fds, pid = environ.pop("LISTEN_FDS", ""), environ.pop("LISTEN_PID", "")
    environ.pop("LISTEN_FDNAMES", None)
    if not fds.isdigit() or int(fds) < 1 or pid != str(os.getpid()):
        return None
    if int(fds) > 1:
        log.warning("systemd passed %s sockets; gq serves the first only", fds)
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    sock.setblocking(False)
    return sock
