"""The benchmark's scenarios, one module each (A and B share delivery.py), and the one
registry through which bench.py finds them: name → how to run it, how to report it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from harness.context import Context
from scenarios import backlog, cores, delivery, drain, find, intake, memory, metrics, profile, redis


@dataclass(frozen=True)
class Scenario:
    run: Callable[[Context], dict]   # the scenario's figures, as JSON-ready values, with a "runs" list
    report: Callable[[dict], str]    # those figures as the report's text
    default: bool = True             # in the set run when no --scenario is given


# In the order of the command line's help and of a default run (cores reuses A's and B's runs).
REGISTRY: dict[str, Scenario] = {
    "A": Scenario(partial(delivery.run, "A"), partial(delivery.report, "A")),
    "B": Scenario(partial(delivery.run, "B"), partial(delivery.report, "B")),
    "cores": Scenario(cores.run, cores.report),
    "redis": Scenario(redis.run, redis.report),
    "intake": Scenario(intake.run, intake.report),
    "drain": Scenario(drain.run, drain.report),
    "memory": Scenario(memory.run, memory.report),
    "backlog": Scenario(backlog.run, backlog.report, default=False),
    "find": Scenario(find.run, find.report, default=False),
    "metrics": Scenario(metrics.run, metrics.report, default=False),
    "profile": Scenario(profile.run, profile.report, default=False),
}
