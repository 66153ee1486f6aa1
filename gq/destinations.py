"""Per-destination fairness: one slow or failing host cannot take the whole pool.

For each target host: a cap on attempts in flight, a token-bucket rate limit,
and a circuit breaker. `admit(host)` answers at once, never blocking: 0 when an
attempt may start now (its slot and token are taken), else how many seconds
until it might. The dispatcher parks the job meanwhile, off the queue and
off the pool, so jobs for other hosts go on (no head-of-line blocking).

Circuit breaker: `breaker_failures` failures in a row (connection errors,
timeouts, 5xx) open the circuit; its jobs wait, attempts unspent, for
`breaker_cooldown` seconds; then one probe goes through (half-open): success
closes the circuit, failure opens it again for twice as long (up to 16x).
A 429 or a Retry-After does not count as a failure: it pauses the host as long
as the job's own retry waits (the Retry-After, up to retry.backoff_max).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from gq.hosts import HostPatterns
from gq.outcome import AttemptResult

log = logging.getLogger("gq.destinations")

CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"
CIRCUIT_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}  # gq_destination_circuit_state
MAX_COOLDOWN_FACTOR = 16
OTHER = "other"
MAX_HOSTS = 10000  # host states kept; past it, idle ones are forgotten


@dataclass(frozen=True)
class Limits:
    max_in_flight: int = 0          # 0 = no cap
    rate: float = 0.0               # attempts per second; 0 = no limit
    burst: int = 0                  # tokens the bucket holds; 0 = max(1, rate)
    breaker_failures: int = 5       # failures in a row that open the circuit; 0 = no breaker
    breaker_cooldown: float = 10.0  # seconds the circuit stays open before a probe


@dataclass
class Destination:
    """One host's state."""

    limits: Limits
    label: str                       # its metric label: the host, or "other"
    in_flight: int = 0
    waiting: int = 0                 # jobs parked for it
    tokens: float = 0.0
    refilled: float = 0.0
    circuit: str = CLOSED
    failures: int = 0                # in a row
    reopen_at: float = 0.0           # when an open circuit lets a probe through
    cooldown: float = 0.0
    paused_until: float = 0.0        # a 429 / Retry-After asked for a pause
    probe_in_flight: bool = False

    def idle(self, now: float) -> bool:
        return (not self.in_flight and not self.waiting and self.circuit == CLOSED
                and self.paused_until <= now and not self.failures)


class Destinations:
    def __init__(self, defaults: Limits, overrides: list[tuple[HostPatterns, Limits]],
                 max_labels: int, clock: Callable[[], float] = time.monotonic):
        self.defaults, self.overrides = defaults, overrides
        self.max_labels = max_labels
        self.clock = clock
        self.hosts: dict[str, Destination] = {}
        self._labels: set[str] = set()
        self.attempts: dict[str, dict[str, int]] = {}  # label → result → count

    def configure(self, defaults: Limits, overrides: list[tuple[HostPatterns, Limits]]) -> None:
        """New limits (a reload); each host keeps its counts and circuit."""
        self.defaults, self.overrides = defaults, overrides
        for host, d in self.hosts.items():
            d.limits = self._limits(host)

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
            d = self.hosts[host] = Destination(limits, label, tokens=self._burst(limits),
                                               refilled=self.clock())
        return d

    def _forget_idle(self) -> None:
        """Drop the state of hosts with nothing going on (their counts live on, by label)."""
        now = self.clock()
        for host in [h for h, d in self.hosts.items() if d.idle(now)]:
            del self.hosts[host]

    @staticmethod
    def _burst(limits: Limits) -> float:
        return float(limits.burst or max(1, int(limits.rate)))

    def allowance(self, host: str) -> tuple[int, float]:
        """(attempts that may start now, seconds until more may): nothing is taken.
        The wait is float('inf') when only an attempt ending can make room."""
        d, now = self.get(host), self.clock()
        limits = d.limits
        if d.paused_until > now:
            return 0, d.paused_until - now
        if d.circuit == OPEN:
            if now < d.reopen_at:
                return 0, d.reopen_at - now
            d.circuit = HALF_OPEN
            log.info("destination %s: circuit half-open, sending one probe", host)
        if d.circuit == HALF_OPEN:
            return (0, float("inf")) if d.probe_in_flight else (1, float("inf"))
        allowed, wait = 1 << 30, float("inf")
        if limits.max_in_flight:
            allowed = max(0, limits.max_in_flight - d.in_flight)
        if limits.rate:
            d.tokens = min(self._burst(limits), d.tokens + (now - d.refilled) * limits.rate)
            d.refilled = now
            allowed = min(allowed, int(d.tokens))
            wait = (1.0 - d.tokens % 1.0) / limits.rate
        return allowed, wait

    def admit(self, host: str) -> float:
        """0: an attempt to `host` starts now (its slot and token taken); else seconds to
        wait (float('inf'): until one of its attempts in flight ends)."""
        allowed, wait = self.allowance(host)
        if not allowed:
            return wait
        d = self.hosts[host]
        if d.limits.rate:
            d.tokens -= 1.0
        d.in_flight += 1
        d.probe_in_flight = d.circuit == HALF_OPEN
        return 0.0

    def release(self, host: str, result: AttemptResult | None, retry_after: float | None) -> None:
        """An attempt admitted by `admit` ended (result None: cancelled)."""
        d, now = self.get(host), self.clock()
        d.in_flight -= 1
        probe, d.probe_in_flight = d.probe_in_flight, False
        if result is None:
            return
        if result.status == 429 or retry_after:
            d.paused_until = max(d.paused_until, now + (retry_after or 1.0))
            return
        failed = result.status is None and not result.refused or (result.status or 0) >= 500
        if not failed:
            if d.circuit != CLOSED:
                log.info("destination %s: probe succeeded, circuit closed", host)
            d.circuit, d.failures, d.cooldown = CLOSED, 0, 0.0
            return
        d.failures += 1
        limits = d.limits
        if probe or (limits.breaker_failures and d.failures >= limits.breaker_failures
                     and d.circuit == CLOSED):
            base = limits.breaker_cooldown
            d.cooldown = min(base * MAX_COOLDOWN_FACTOR, d.cooldown * 2) if probe and d.cooldown else base
            d.circuit, d.reopen_at = OPEN, now + d.cooldown
            log.warning("destination %s: circuit open for %gs after %d failure(s) in a row (%s); "
                        "its jobs wait, attempts unspent", host, d.cooldown, d.failures,
                        result.error or result.status)

    def collect(self):
        """Prometheus families per host label (hosts past metrics_hosts summed as "other")."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        in_flight = GaugeMetricFamily("gq_destination_in_flight", "Attempts in flight", labels=["host"])
        waiting = GaugeMetricFamily("gq_destination_waiting", "Jobs parked until their host may take "
                                    "them", labels=["host"])
        circuit = GaugeMetricFamily("gq_destination_circuit_state", "Circuit: 0 closed, 1 half-open, "
                                    "2 open (the worst of the hosts in a label)", labels=["host"])
        attempts = CounterMetricFamily("gq_destination_attempts", "Attempts by result", labels=["host", "result"])
        by_label: dict[str, list[Destination]] = {}
        for d in self.hosts.values():
            by_label.setdefault(d.label, []).append(d)
        for label, group in sorted(by_label.items()):
            in_flight.add_metric([label], sum(d.in_flight for d in group))
            waiting.add_metric([label], sum(d.waiting for d in group))
            circuit.add_metric([label], max(CIRCUIT_VALUE[d.circuit] for d in group))
        for label, counts in sorted(self.attempts.items()):
            for result in ("success", "retry", "fail"):
                attempts.add_metric([label, result], counts.get(result, 0))
        yield from (in_flight, waiting, circuit, attempts)

    def count(self, host: str, result_label: str) -> None:
        counts = self.attempts.setdefault(self.get(host).label, {})
        counts[result_label] = counts.get(result_label, 0) + 1
