"""The API's listening sockets: intake on api.listen (or the socket systemd passed), and
health, readiness and metrics alone on api.health_listen when set."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from gq.config import Config, is_loopback, split_listen
from gq.errors import ConfigError, GqError
from gq.intake.api import Api
from gq.intake.api_io import json_answer
from gq.intake.http_server import Connections, IntakeServer, start
from gq.observe.metrics import Metrics

log = logging.getLogger("gq.api")

HEALTH_PATHS = ("/healthz", "/readyz", "/metrics")
HEALTH_CONNECTIONS = 16     # on api.health_listen: probers and scrapers, not clients


class Listeners:
    def __init__(self, api: Api, metrics: Metrics):
        self.api, self.metrics = api, metrics
        self.servers: list[IntakeServer] = []  # intake's, then health's when api.health_listen is set

    def serve(self, config: Config, sock: socket.socket | None = None) -> IntakeServer:
        """Start serving on `sock` (from systemd) or else on api.listen, and health on
        api.health_listen when set; returns the intake's server. Raises GqError when it
        cannot listen."""
        if sock is not None:
            check_passed(sock, config)
            log.info("serving on the socket systemd passed (api.listen is not used)")
        else:
            sock = listen(config.api.listen)
        connections = Connections(config.api.max_connections, self.metrics.evicted.inc)
        self.metrics.count_greenlets("intake", connections.__len__)
        client_timeout = lambda: self.api.config.api.client_timeout  # noqa: E731 - as reloaded
        self.servers = [start(sock, self.api, connections, client_timeout,
                              lambda: self.metrics.rejected.inc("invalid"))]
        if config.api.health_listen:
            health = start(listen(config.api.health_listen), self._health_only, Connections(HEALTH_CONNECTIONS),
                           client_timeout)
            self.servers.append(health)
            log.info("health, readiness and metrics also on %s", shown_address(health.address))
        return self.servers[0]

    def _health_only(self, environ: dict, start_response: Callable) -> list[bytes]:
        """The health listener's app: the same answers, for its three paths only."""
        if environ.get("PATH_INFO") in HEALTH_PATHS:
            return self.api(environ, start_response)
        return json_answer("404 Not Found", {"error": "path: this listener serves /healthz, /readyz and /metrics"},
                           start_response)

    def stop(self, timeout: float) -> None:
        for server in self.servers:
            server.stop(timeout=timeout)


def check_passed(sock: socket.socket, config: Config) -> None:
    """A socket from systemd obeys the rule api.listen does: no token, loopback only."""
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not config.api.token:
        host = sock.getsockname()[0]
        if not is_loopback(host):
            raise ConfigError([f"{config.source or '<defaults>'}: api.token: required when "
                               f"the socket systemd passes is not on a loopback address (it is on {host})"])


def listen(listen: str) -> socket.socket:
    """A listening socket on HOST:PORT; raises GqError when it cannot listen."""
    try:
        return bound(*split_listen(listen))
    except OSError as e:
        raise GqError(f"cannot listen on {listen}: {e.strerror or e}") from None


def bound(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A socket listening on `host` and `port`; raises OSError."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def shown_address(address: str | bytes | tuple[Any, ...]) -> str:
    if isinstance(address, (str, bytes)):  # a unix socket from systemd
        return f"unix:{address.decode() if isinstance(address, bytes) else address}"
    host, port = address[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
