"""Destination limits shared by a fleet on Redis (`destinations.scope = "fleet"`).

Each host's in-flight cap and rate are kept in Redis, so that N daemons send it no
more than one daemon would be allowed. An attempt takes a lease (a member of
`P:dest:HOST:leases`, scored by when it expires: the attempt's timeout and a margin)
and a token of the host's bucket (`P:dest:HOST:bucket`), in one script, on Redis's
clock; its end gives the lease back. The leases of a daemon that died expire.

A circuit opened by one daemon (its breaker's evidence) is open for all: the key
`P:dest:HOST:circuit` lives for the cooldown, and the others, looking at most every
half second, open theirs for what is left of it; after it, each daemon
probes for itself, and the first answer closes it for all. Pauses stay each
daemon's own.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

import redis

from gq.broker import FleetLink
from gq.broker.redis_link import lua_script

log = logging.getLogger("gq.destinations")

LEASE_MARGIN = 10.0  # seconds a lease outlives its attempt's timeout (a slow release, a late clock)
RECHECK = 0.05       # seconds before a job asks again for a host at its fleet-wide cap
UNREACHABLE = 1.0    # seconds a job waits when Redis cannot be asked


class FleetLimits:
    def __init__(self, link: FleetLink):
        self.redis, self.prefix, self.consumer = link.client, link.prefix, link.consumer
        self._admit = self.redis.register_script(lua_script("admit"))
        self._leases = itertools.count()
        self._failing = False

    def _keys(self, host: str) -> list[str]:
        return [f"{self.prefix}:dest:{host}:leases", f"{self.prefix}:dest:{host}:bucket"]

    def _circuit(self, host: str) -> str:
        return f"{self.prefix}:dest:{host}:circuit"

    def open_circuit(self, host: str, cooldown: float) -> None:
        """This daemon opened `host`'s circuit: it is open for the fleet for `cooldown` s."""
        self._quietly(self.redis.set, self._circuit(host), 1, px=max(1, int(cooldown * 1000)))

    def close_circuit(self, host: str) -> None:
        self._quietly(self.redis.delete, self._circuit(host))

    def circuit_open_for(self, host: str) -> float:
        """Seconds `host`'s circuit stays open for the fleet (0: it is not)."""
        left = self._quietly(self.redis.pttl, self._circuit(host))
        return left / 1000 if isinstance(left, int) and left > 0 else 0.0

    def _quietly(self, command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A command whose failure only means the fleet does not share this circuit change."""
        try:
            return command(*args, **kwargs)
        except redis.RedisError as e:
            log.warning("fleet-wide circuit: cannot ask Redis (%s)", e)
            return None

    def admit(self, host: str, max_in_flight: int, rate: float, burst: float,
              timeout: float) -> tuple[str | None, float]:
        """A lease for one attempt of `timeout` seconds to `host`, or None and the seconds
        to wait before asking again."""
        lease = f"{self.consumer}:{next(self._leases)}"
        try:
            taken, wait = self._admit(keys=self._keys(host),
                                      args=[max_in_flight, rate, burst, timeout + LEASE_MARGIN, lease])
        except redis.RedisError as e:
            if not self._failing:
                log.warning("fleet-wide limits: cannot ask Redis (%s); attempts to limited hosts wait", e)
            self._failing = True
            return None, UNREACHABLE
        self._failing = False
        if taken:
            return lease, 0.0
        wait = float(wait)
        return None, RECHECK if wait < 0 else wait

    def release(self, host: str, lease: str) -> None:
        try:
            self.redis.zrem(self._keys(host)[0], lease)
        except redis.RedisError:
            pass  # the lease expires by itself
