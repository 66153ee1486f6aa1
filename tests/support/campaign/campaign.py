"""One campaign, start to report: the world started, the producer and the two lanes of faults run
for `duration` seconds, every fault undone, the producer stopped, then the evidence gathered and
checked. The seed is printed first; the same seed makes the same faults."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.campaign.checker import Checker, Violation
from support.campaign.evidence import FINAL, STALL, Evidence, gather
from support.campaign.faults import Injector
from support.campaign.ledger import LEDGER_CHECKS, check_ledger
from support.campaign.plan import Plan
from support.campaign.producer import Producer
from support.campaign.records import Records
from support.campaign.world import World


@dataclass
class Report:
    seed: int
    setup: str
    duration: float
    faults: Counter = field(default_factory=Counter)
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    fault_log: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        figures = ", ".join(f"{k} {v}" for k, v in self.figures.items())
        lines = [f"campaign seed={self.seed} setup={self.setup} duration={self.duration:g}s: "
                 f"{'OK' if self.ok else f'{len(self.violations)} VIOLATION(S)'}",
                 f"  faults: {faults}", f"  jobs: {figures}"]
        lines += [f"  VIOLATION {v}" for v in self.violations[:50]]
        return "\n".join(lines)


class Campaign:
    def __init__(self, seed: int, setup: str, duration: float, workdir: Path, ledger: bool = LEDGER_CHECKS,
                 disk_mb: int = 64, stall: float = STALL, kinds: dict[str, int] | None = None):
        self.seed, self.setup, self.duration, self.workdir = seed, setup, duration, workdir
        self.ledger, self.disk_mb, self.stall = ledger, disk_mb, stall
        self.plan = Plan.make(seed, setup, duration, kinds)
        self.prefix = f"c{seed}{setup[0]}"

    def run(self) -> Report:
        print(f"campaign seed={self.seed} setup={self.setup} duration={self.duration:g}s", flush=True)
        report = Report(self.seed, self.setup, self.duration)
        world = World(self.workdir, self.setup, self.disk_mb)
        producer: list[Producer] = []
        try:
            self._run(world, report, producer)
        finally:
            for p in producer:
                p.halt.set()
            world.close()
        print(report.summary(), flush=True)
        return report

    def _run(self, world: World, report: Report, started: list[Producer]) -> None:
        records = Records()
        producer = Producer(world.apis, world.target, world.hostile_base, records, self.seed, self.prefix)
        started.append(producer)
        injector = Injector(world, producer.slow)
        halt, errors = threading.Event(), []

        def lane(faults: list) -> None:
            try:
                injector.run(faults, start, halt)
            except BaseException as e:  # noqa: BLE001 - a daemon that does not start again, reported
                errors.append(f"{type(e).__name__}: {e}")

        start = time.monotonic()
        producer.start()
        lanes = [threading.Thread(target=lane, args=(faults,), daemon=True)
                 for faults in (self.plan.process, self.plan.target)]
        try:
            for thread in lanes:
                thread.start()
            halt.wait(self.duration)
        finally:  # an interrupted campaign stops its faults and its producer too
            halt.set()
            for thread in lanes:
                thread.join(120)
        world.heal()
        producer.stop()
        report.faults = injector.counts
        report.fault_log = [f"{time.strftime('%H:%M:%S', time.localtime(d.began))} {d.fault} -> {d.note}"
                            for d in injector.done]
        report.violations += [Violation("harness", "-", e) for e in errors + producer.errors]
        evidence = gather(world.apis, world.target, records, self.prefix, self.stall)
        checker = Checker(records, evidence, injector.orphaning())
        report.violations += checker.check()
        if self.ledger:
            journal = world.config_path() if self.setup == "journal" else None
            report.violations += check_ledger(world.apis, sum(1 for v in evidence.views.values() if v), journal)
        if "Traceback" in world.logs():
            report.violations.append(Violation("log", "-", "a daemon logged a Traceback"))
        report.figures = figures(records, evidence, checker)


def figures(records: Records, evidence: Evidence, checker: Checker) -> dict[str, Any]:
    states = Counter((v or {}).get("state", "lost") for v in evidence.views.values())
    return {"accepted": len(records.accepted), "delivered": states["succeeded"], "dead": states["dead"],
            "cancelled": states["cancelled"], "lost": states["lost"],
            "stuck": sum(n for s, n in states.items() if s not in (*FINAL, "lost")),
            "settled in s": None if evidence.settled is None else round(evidence.settled),
            "duplicates n": checker.duplicates, "unknown attempts m": checker.unknown,
            "cancels answered 200": len(records.cancelled), "replayed": sum(records.replayed.values()),
            "requests at the target": sum(len(a) for a in evidence.arrivals.values()),
            "answers": dict(sorted(records.answers.items()))}
