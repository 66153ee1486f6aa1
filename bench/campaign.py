"""The fault campaign for as long as you like: rounds of gq under random faults (one daemon on a
journal in a tmpfs, two on one Redis, in turn), each with a random seed, each checked; then the
figures of them all.

    python bench/campaign.py                          # an hour, rounds of 10 minutes
    python bench/campaign.py --duration 600 --round 120 --setup fleet
    python bench/campaign.py --seed 1234 --setup journal --round 60    # one round again, by its seed

Needs root for the journal's tmpfs (without it, only the Redis set-up runs) and a redis-server
(installed as the tests install it). Exit 1 when any round broke a rule: its seed, the rule,
the job and the evidence are printed, and the same seed makes the same faults again."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.campaign.campaign import Campaign, Report  # noqa: E402
from support.campaign.ledger import LEDGER_CHECKS  # noqa: E402

FIGURES = ("accepted", "delivered", "dead", "cancelled", "lost", "stuck", "duplicates n", "unknown attempts m")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3600, help="seconds of faults in all (default 3600)")
    parser.add_argument("--round", type=float, default=600, help="seconds of faults a round (default 600)")
    parser.add_argument("--setup", choices=("journal", "fleet", "both"), default="both")
    parser.add_argument("--seed", type=int, help="the first round's seed (the others follow it); default random")
    parser.add_argument("--ledger", action=argparse.BooleanOptionalAction, default=LEDGER_CHECKS,
                        help="check GET /v1/status's ledger and gq verify (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the work dirs (configs, logs)")
    parser.add_argument("--json", action="store_true", help="end with one line of JSON of the figures")
    return parser.parse_args()


def setups(choice: str) -> list[str]:
    if choice != "both":
        return [choice]
    if os.geteuid() != 0:
        print("not root: the journal's set-up (a tmpfs) is left out", flush=True)
        return ["fleet"]
    return ["journal", "fleet"]


def one_round(seed: int, setup: str, seconds: float, ledger: bool, keep: bool) -> Report:
    workdir = Path(tempfile.mkdtemp(prefix=f"gq-campaign-{seed}-{setup}-"))
    try:
        return Campaign(seed, setup, seconds, workdir, ledger=ledger, disk_mb=256).run()
    except BaseException as e:  # noqa: BLE001 - the tests' helpers fail through pytest: a round that broke
        if isinstance(e, KeyboardInterrupt):
            raise
        report = Report(seed, setup, seconds)
        report.figures["error"] = f"{type(e).__name__}: {e}"
        return report
    finally:
        if keep:
            print(f"  work dir kept: {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the round under way stops its processes and unmounts its disk


def main() -> int:
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)   # also when started in the background, where it is ignored
    args = parse()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**9)
    kinds = setups(args.setup)
    reports: list[Report] = []
    started, left = time.monotonic(), args.duration
    while left > 0:
        seconds = min(args.round, left)
        setup = kinds[len(reports) % len(kinds)]
        reports.append(one_round(seed + len(reports), setup, seconds, args.ledger, args.keep))
        left -= seconds
    faults: Counter = Counter()
    totals: Counter = Counter()
    for report in reports:
        faults.update(report.faults)
        totals.update({k: report.figures.get(k, 0) for k in FIGURES})
    failed = [r for r in reports if not r.ok or "error" in r.figures]
    print(f"\n{len(reports)} round(s), {args.duration:g}s of faults, {time.monotonic() - started:.0f}s in all; "
          f"first seed {seed}")
    print("faults injected: " + ", ".join(f"{k} {v}" for k, v in sorted(faults.items())))
    print("jobs: " + ", ".join(f"{k} {totals[k]}" for k in FIGURES))
    for report in failed:
        print(f"FAILED seed={report.seed} setup={report.setup}: {report.figures.get('error', '')}")
        for violation in report.violations[:20]:
            print(f"  {violation}")
    if args.json:
        print(json.dumps({"seed": seed, "rounds": len(reports), "faults": dict(faults), "jobs": dict(totals),
                          "failed": [[r.seed, r.setup] for r in failed]}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
