"""The faults of a campaign, drawn from its seed: the same seed, the same faults in the same order
at the same planned times."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

# Faults of gq's processes, Redis and the disk, one after another (the process lane), with how
# often each is drawn; the target's faults run beside them (the target lane).
JOURNAL_FAULTS = {"kill9": 3, "stop_cont": 2, "term_restart": 2, "hup_config": 2, "disk_full": 2, "oom_rss": 1}
FLEET_FAULTS = {"kill9": 3, "stop_cont": 3, "term_restart": 2, "hup_config": 2, "oom_rss": 1,
                "redis_kill": 2, "redis_readonly": 2}
TARGET_FAULTS = {"target_flap": 1, "target_slow": 1}
# Seconds between two faults of a lane, and how long each is held.
GAP = (1.5, 4.0)
HOLD = {"kill9": (0.2, 2.0), "stop_cont": (0.5, 5.0), "term_restart": (0.0, 1.0), "hup_config": (0.0, 0.0),
        "disk_full": (1.0, 5.0), "oom_rss": (0.0, 1.0), "redis_kill": (0.5, 3.0), "redis_readonly": (1.0, 4.0),
        "target_flap": (0.5, 4.0), "target_slow": (2.0, 8.0)}


@dataclass(frozen=True)
class Fault:
    at: float                  # seconds after the campaign's start, as planned
    kind: str
    hold: float                # seconds the fault lasts before it is undone
    node: int = 0              # the daemon it strikes, for a daemon's faults
    detail: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in self.detail.items())
        return f"t+{self.at:6.1f}s {self.kind} node={self.node} hold={self.hold:.1f}s{extra}"


def draw(rng: random.Random, kind: str, at: float, nodes: int) -> Fault:
    low, high = HOLD[kind]
    detail: dict[str, Any] = {}
    if kind == "hup_config":
        detail = {"pool_size": rng.choice([2, 4, 8, 16]), "max_attempts": rng.randint(4, 10),
                  "backoff_base": rng.choice([0.05, 0.1, 0.3])}
    elif kind == "disk_full":
        detail = {"to_the_last_byte": rng.random() < 0.5}
    elif kind == "target_slow":
        detail = {"delay": round(rng.uniform(0.3, 2.0), 2)}
    return Fault(round(at, 2), kind, round(rng.uniform(low, high), 2), rng.randrange(nodes), detail)


def lane(seed: int, name: str, kinds: dict[str, int], duration: float, nodes: int) -> list[Fault]:
    """The faults of one lane over `duration` seconds."""
    rng = random.Random(f"{seed}:{name}")
    faults, at = [], rng.uniform(*GAP)
    names, weights = list(kinds), list(kinds.values())
    while at < duration:
        fault = draw(rng, rng.choices(names, weights)[0], at, nodes)
        faults.append(fault)
        at += fault.hold + rng.uniform(*GAP)
    return faults


@dataclass(frozen=True)
class Plan:
    seed: int
    setup: str                 # "journal" or "fleet"
    process: list[Fault]
    target: list[Fault]

    @classmethod
    def make(cls, seed: int, setup: str, duration: float, kinds: dict[str, int] | None = None) -> Plan:
        """`kinds`: the process lane's faults and weights (default: the set-up's own)."""
        own = JOURNAL_FAULTS if setup == "journal" else FLEET_FAULTS
        nodes = 1 if setup == "journal" else 2
        return cls(seed, setup, lane(seed, "process", kinds or own, duration, nodes),
                   lane(seed, "target", TARGET_FAULTS, duration, nodes))
