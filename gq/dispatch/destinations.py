"""Per-destination protections, each off until configured: an in-flight cap, a rate limit,
a circuit breaker, and a host-wide pause on Retry-After.

With the defaults none applies, and a job's retries follow [retry] alone, job by
job: no job waits for another job's outcome. `admit(host)` answers at once, never
blocking: start now (the slot and token are taken), wait so many seconds (the
dispatcher parks the job meanwhile, off the queue and off the pool, so jobs for
other hosts go on), or fail at once because the host's circuit is open.

The circuit breaker (`breaker_failures` > 0) opens on evidence that the host is
down: it has answered no attempt for `breaker_window` seconds, and at least
`breaker_failures` attempts failed within that window (connection errors,
timeouts, 5xx). A run of concurrent failures of a host that still answers other
attempts does not open it. While open, an attempt fails at once without a
request ("circuit open: ..."), spending one of its job's attempts at the job's
own backoff pace: a job's retry budget is the same with the breaker as without,
and a job whose host stays down is dead after `max_attempts`. After
`breaker_cooldown` seconds the circuit is half-open: up to PROBES attempts go
through at once; the first that reaches the host closes it, PROBES failures
open it for another cooldown.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gq.core.hosts import HostPatterns
from gq.core.outcome import AttemptResult, Outcome
from gq.core.settings import Invalid, Table, boolean, choice, did_you_mean, integer, number, seconds, setting

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from gq.broker.fleet_limits import FleetLimits

log = logging.getLogger("gq.destinations")

CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"
CIRCUIT_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}  # gq_destination_circuit_state
PROBES = 3          # attempts a half-open circuit lets through at once
FLEET_RECHECK = 0.05  # fleet-wide limits: seconds before a parked job asks Redis again
CIRCUIT_LOOK = 0.5    # fleet-wide circuits: seconds between looks at a host's, per daemon
OTHER = "other"
MAX_HOSTS = 10000   # host states kept; past it, idle ones are forgotten


@dataclass(frozen=True)
class Limits:
    """One host's limits: the keys of [destinations] (its defaults) and of each of its
    destinations.overrides, declared here once."""

    max_in_flight: int = setting(0, integer(0), "attempts in flight to one host, at most; 0 = no cap")
    rate: float = setting(0.0, number, "attempts per second to one host, at most; 0 = no limit")
    burst: int = setting(0, integer(0), "attempts a host may get at once within its rate; 0 = max(1, rate)")
    breaker_failures: int = setting(0, integer(0), "failures within breaker_window that, with no answer "
                                    "for that long, open a host's circuit; 0 = no breaker")
    breaker_window: float = setting(10.0, seconds(0, above=True),
                                    "seconds a host must have answered nothing before its circuit opens")
    breaker_cooldown: float = setting(10.0, seconds(0, above=True),
                                      "seconds an open circuit fails attempts at once, before probes")
    pause_on_retry_after: bool = setting(False, boolean, "true: a Retry-After pauses every job to its "
                                         "host, not just its own")


LIMIT_CHECKS = {f.name: f.metadata["check"] for f in dataclasses.fields(Limits)}


def destination_overrides(value: Any) -> Table:
    """destinations.overrides: each host pattern's limits, checked by Limits' declarations."""
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise Invalid('must be a table of "host pattern" = { key = value, ... }')
    out = []
    for pattern, limits in value.items():
        try:
            HostPatterns.parse([pattern])
        except ValueError as e:
            raise Invalid(f"{pattern}: {e}") from None
        checked = []
        for key, v in limits.items():
            if key not in LIMIT_CHECKS:
                raise Invalid(f"{pattern}: {key}: unknown key{did_you_mean(key, list(LIMIT_CHECKS))}")
            try:
                checked.append((key, LIMIT_CHECKS[key](v)))
            except Invalid as e:
                raise Invalid(f"{pattern}: {key}: {e}") from None
        out.append((pattern, Table(checked)))
    return Table(out)


@dataclass(frozen=True)
class DestinationsConfig(Limits):
    """The limits of every host (Limits' keys, declared there), and how they apply."""

    scope: str = setting("daemon", choice("daemon", "fleet"), '"fleet" (Redis broker): max_in_flight, rate and '
                         "the circuit are shared by every daemon of the fleet", live=False)
    metrics_hosts: int = setting(50, integer(0), 'hosts with their own metric labels; the rest are "other"')
    overrides: Table = setting(Table(), destination_overrides,
                               'per host pattern: { "api.example.com" = { max_in_flight = 10 } }')

    def limits(self) -> tuple[Limits, list[tuple[HostPatterns, Limits]]]:
        """The default limits, and (patterns, limits) for each override, in order."""
        defaults = Limits(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Limits)})
        return defaults, [(HostPatterns.parse([p]), dataclasses.replace(defaults, **dict(v)))
                          for p, v in self.overrides]


@dataclass
class Destination:
    """One host's state."""

    limits: Limits
    label: str                       # its metric label: the host, or "other"
    in_flight: int = 0
    tokens: float = 0.0
    refilled: float = 0.0
    circuit: str = CLOSED
    silent_since: float | None = None    # the first failure since the host last answered
    failed_at: deque[float] = field(default_factory=deque)  # latest failures, at most breaker_failures
    reopen_at: float = 0.0           # when an open circuit lets probes through
    probe_failures: int = 0          # failures while half-open
    paused_until: float = 0.0        # a Retry-After asked for a pause (pause_on_retry_after)
    leases: list[str] = field(default_factory=list)  # fleet-wide limits: one per attempt in flight
    fleet_looked: float = float("-inf")  # when its fleet-wide circuit was last looked at

    def idle(self, now: float) -> bool:
        """Nothing would be lost by forgetting it: nothing in flight, no pause, no failures,
        its circuit closed and its token bucket full again (a host whose jobs wait for it
        is never all of these)."""
        limits = self.limits
        refilled = self.tokens + (now - self.refilled) * limits.rate
        return (not self.in_flight and self.circuit == CLOSED and self.paused_until <= now
                and self.silent_since is None
                and (not limits.rate or refilled >= Destinations.burst(limits)))


class Destinations:
    def __init__(self, defaults: Limits, overrides: list[tuple[HostPatterns, Limits]],
                 max_labels: int, clock: Callable[[], float] = time.monotonic, fleet: FleetLimits | None = None):
        """`fleet`: the in-flight caps and rates are the fleet's, kept in Redis."""
        self.defaults, self.overrides = defaults, overrides
        self.fleet = fleet
        self.max_labels = max_labels
        self.clock = clock
        self.hosts: dict[str, Destination] = {}
        self._labels: set[str] = set()
        self.attempts: dict[str, dict[str, int]] = {}     # label → result → count
        self.transitions: dict[str, dict[str, int]] = {}  # label → circuit state entered → count

    @classmethod
    def from_config(cls, section: DestinationsConfig, fleet: FleetLimits | None = None) -> Destinations:
        """The destinations [destinations] limits; `fleet`: see __init__."""
        defaults, overrides = section.limits()
        return cls(defaults, overrides, section.metrics_hosts, fleet=fleet)

    def configure(self, defaults: Limits, overrides: list[tuple[HostPatterns, Limits]]) -> None:
        """New limits (a reload); each host keeps its counts and circuit (a circuit whose
        breaker was turned off closes)."""
        self.defaults, self.overrides = defaults, overrides
        for host, d in self.hosts.items():
            d.limits = self._limits(host)
            if not d.limits.breaker_failures and d.circuit != CLOSED:
                self._enter(host, d, CLOSED, "the breaker is off")

    def _limits(self, host: str) -> Limits:
        for patterns, limits in self.overrides:
            if patterns.match_name(host):
                return limits
        return self.defaults

    def get(self, host: str) -> Destination:
        d = self.hosts.get(host)
        if d is None:
            if len(self.hosts) >= MAX_HOSTS:
                self._forget_idle()
            label = host if host in self._labels or len(self._labels) < self.max_labels else OTHER
            self._labels.add(label)
            limits = self._limits(host)
            d = self.hosts[host] = Destination(limits, label, tokens=self.burst(limits),
                                               refilled=self.clock())
        return d

    def _forget_idle(self) -> None:
        """Drop the state of hosts with nothing going on (their counts live on, by label)."""
        now = self.clock()
        for host in [h for h, d in self.hosts.items() if d.idle(now)]:
            del self.hosts[host]

    @staticmethod
    def burst(limits: Limits) -> float:
        return float(limits.burst or max(1, int(limits.rate)))

    # -- admission

    def allowance(self, host: str) -> tuple[int, float]:
        """(attempts that may be dispatched now, seconds until more may): nothing is taken.
        The wait is float('inf') when only an attempt ending can make room. Behind an open
        circuit any number may: `admit` fails them at once."""
        d, now = self.get(host), self.clock()
        limits = d.limits
        if d.paused_until > now:
            return 0, d.paused_until - now
        if self.fleet and limits.breaker_failures and d.circuit == CLOSED and now - d.fleet_looked >= CIRCUIT_LOOK:
            d.fleet_looked = now
            left = self.fleet.circuit_open_for(host)
            if left:
                d.reopen_at = now + left
                self._enter(host, d, OPEN, f"another daemon of the fleet opened it; its attempts fail at "
                                           f"once for {left:.1f}s, then probes")
        if d.circuit == OPEN and now >= d.reopen_at:
            self._enter(host, d, HALF_OPEN, f"letting up to {PROBES} probes through")
        if d.circuit == OPEN:
            return 1 << 30, float("inf")
        if d.circuit == HALF_OPEN:
            return max(0, PROBES - d.in_flight), float("inf")
        if self.fleet and (limits.max_in_flight or limits.rate):  # Redis decides, at admit
            return 1, FLEET_RECHECK
        allowed, wait = 1 << 30, float("inf")
        if limits.max_in_flight:
            allowed = max(0, limits.max_in_flight - d.in_flight)
        if limits.rate:
            d.tokens = min(self.burst(limits), d.tokens + (now - d.refilled) * limits.rate)
            d.refilled = now
            allowed = min(allowed, int(d.tokens))
            wait = (1.0 - d.tokens % 1.0) / limits.rate
        return allowed, wait

    def admit(self, host: str, timeout: float = 0.0) -> float | str:
        """What an attempt to `host` (of `timeout` seconds) does now: 0.0 start (its slot
        and token are taken); seconds to wait first (float('inf'): until one of the host's
        attempts ends); or, while the host's circuit is open, the error the attempt fails
        with at once, without a request."""
        allowed, wait = self.allowance(host)
        d = self.hosts[host]
        limits = d.limits
        if d.circuit == OPEN:
            return (f"circuit open: {host} answered no attempt for {limits.breaker_window:g}s; "
                    f"next probe in {max(0.0, d.reopen_at - self.clock()):.1f}s")
        if not allowed:
            return wait
        if self.fleet and (limits.max_in_flight or limits.rate) and d.circuit == CLOSED:
            lease, wait = self.fleet.admit(host, limits.max_in_flight, limits.rate, self.burst(limits), timeout)
            if lease is None:
                return wait
            d.leases.append(lease)
        elif limits.rate and d.circuit == CLOSED:
            d.tokens -= 1.0
        d.in_flight += 1
        return 0.0

    # -- outcomes

    def release(self, host: str, result: AttemptResult | None, outcome: Outcome | None) -> None:
        """An attempt admitted by `admit` ended with `result`, which `outcome` (gq/core/outcome.py)
        says what it means for the host; both None: it was cancelled."""
        d, now = self.get(host), self.clock()
        d.in_flight -= 1
        if d.leases and self.fleet:
            self.fleet.release(host, d.leases.pop())
        if result is None or outcome is None:
            return
        if outcome.retry_after is not None and d.limits.pause_on_retry_after:
            d.paused_until = max(d.paused_until, now + outcome.retry_after)
        if outcome.answered is None:
            return
        if outcome.answered:
            d.silent_since = None
            d.failed_at.clear()
            if d.circuit != CLOSED:
                self._enter(host, d, CLOSED, f"{host} answered ({result.status})")
                if self.fleet:
                    self.fleet.close_circuit(host)
            return
        self._failed(host, d, now, result)

    def _failed(self, host: str, d: Destination, now: float, result: AttemptResult) -> None:
        limits = d.limits
        if not limits.breaker_failures:
            return
        if d.silent_since is None:
            d.silent_since = now
        d.failed_at.append(now)
        while len(d.failed_at) > limits.breaker_failures:
            d.failed_at.popleft()
        cause = result.error or f"status {result.status}"
        if d.circuit == HALF_OPEN:
            d.probe_failures += 1
            if d.probe_failures >= PROBES:
                self._open(host, d, now, f"{PROBES} probes failed ({cause})")
        elif (d.circuit == CLOSED and len(d.failed_at) >= limits.breaker_failures
              and now - d.failed_at[0] < limits.breaker_window
              and now - d.silent_since >= limits.breaker_window):
            self._open(host, d, now, f"no answer for {now - d.silent_since:.1f}s, "
                                     f"{limits.breaker_failures}+ failures ({cause})")

    def _open(self, host: str, d: Destination, now: float, why: str) -> None:
        d.reopen_at = now + d.limits.breaker_cooldown
        if self.fleet:
            self.fleet.open_circuit(host, d.limits.breaker_cooldown)
        self._enter(host, d, OPEN, f"{why}; its attempts fail at once for "
                                   f"{d.limits.breaker_cooldown:g}s, then probes")

    def _enter(self, host: str, d: Destination, state: str, why: str) -> None:
        """Every change of a circuit: logged once, counted for the metrics."""
        d.circuit, d.probe_failures = state, 0
        counts = self.transitions.setdefault(d.label, {})
        counts[state] = counts.get(state, 0) + 1
        shown = state.replace("_", "-")
        if state == OPEN:
            log.warning("destination %s: circuit open: %s", host, why)
        else:
            log.info("destination %s: circuit %s: %s", host, shown, why)

    def by_label(self) -> dict[str, list[str]]:
        """The hosts known, grouped by their metric label."""
        hosts: dict[str, list[str]] = {}
        for host, d in self.hosts.items():
            hosts.setdefault(d.label, []).append(host)
        return hosts

    def count(self, host: str, result_label: str) -> None:
        counts = self.attempts.setdefault(self.get(host).label, {})
        counts[result_label] = counts.get(result_label, 0) + 1


class DestinationsCollector:
    """The destinations' Prometheus families, per host label (hosts past metrics_hosts summed
    as "other"), read from Destinations at scrape time."""

    def __init__(self, destinations: Destinations):
        self.destinations = destinations

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        known = self.destinations
        in_flight = GaugeMetricFamily("gq_destination_in_flight", "Attempts in flight", labels=["host"])
        circuit = GaugeMetricFamily("gq_destination_circuit_state", "Circuit: 0 closed, 1 half-open, "
                                    "2 open (the worst of the hosts in a label)", labels=["host"])
        changes = CounterMetricFamily("gq_destination_circuit_changes", "Circuit state changes, by the "
                                      "state entered", labels=["host", "state"])
        attempts = CounterMetricFamily("gq_destination_attempts", "Attempts by result", labels=["host", "result"])
        for label, hosts in sorted(known.by_label().items()):
            group = [known.hosts[host] for host in hosts]
            in_flight.add_metric([label], sum(d.in_flight for d in group))
            circuit.add_metric([label], max(CIRCUIT_VALUE[d.circuit] for d in group))
        for label, by_state in sorted(known.transitions.items()):
            for state in (OPEN, HALF_OPEN, CLOSED):
                changes.add_metric([label, state], by_state.get(state, 0))
        for label, counts in sorted(known.attempts.items()):
            for result in ("success", "retry", "fail"):
                attempts.add_metric([label, result], counts.get(result, 0))
        yield from (in_flight, circuit, changes, attempts)
