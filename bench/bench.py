"""gq's benchmark: gq against the bare stack it is built on, in one invocation.

    python bench/bench.py [--quick] [--scenario NAME ...]

Every figure comes from real processes talking HTTP on 127.0.0.1: the target
(tests/support/target.py) runs alone on core 1, the process measured (the baseline, gq
batch, the gq daemon) alone on core 0; this script and the intake load client
share core 1 with the target, where they cost little. Scenarios "cores" and
"redis" pin nothing: there the target shares both cores with what is measured.
Scenarios:

  A       20,000 jobs, no delay, pool 100: CPU-bound delivery
  B       10,000 jobs, target answers after 100 ms, pool 500 (limit 5,000 jobs/s)
          each of A and B: the baseline (bench/baseline.py), gq batch with its
          journal, gq batch memory-only
  cores   A and B with `gq batch -p 2` (journal on) and the baseline, nothing pinned,
          against the 1-process gq batch of A and B (reused when A, B ran before)
  redis   20,000 jobs through 1, 2 and 4 `gq run` daemons sharing a Redis stream
          (a fresh redis-server, AOF everysec): jobs/s, split, Redis commands per job;
          skipped when there is no redis-server
  intake  50,000 jobs POSTed to `gq run` in arrays of 100 by 8 concurrent senders,
          journal on and memory-only, delivery parked (see README)
  drain   500 jobs in flight against a 1 s target, then SIGTERM: time to exit
  memory  daemon RSS idle, with 500 in flight, and with 10,000 more queued
Not in the default set (name them with --scenario):
  metrics A's gq batch (journal on) with the Metrics observer as shipped, and with its
          job-path methods replaced by no-ops (bench/gq_without_metrics.py), 2 runs each
          (shipped, no-op, no-op, shipped), and those methods timed in-process
  profile A's jobs, the baseline and gq batch with its journal, each under cProfile:
          own time per job by area, and gq's top functions

--quick divides every job count by 10 (a smoke run). The report is a table per
scenario, then one line of JSON with every figure. Exit 1 if any run FAILED.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from harness import ROOT, BenchError, Skipped
from harness.context import DISTURBED_PCT, Context
from harness.proc import MEASURED_CORE, TARGET_CORE, Proc
from harness.target import BenchTarget
from scenarios import REGISTRY

SCENARIOS = tuple(name for name, scenario in REGISTRY.items() if scenario.default)
EXTRA_SCENARIOS = tuple(name for name, scenario in REGISTRY.items() if not scenario.default)
BUDGET_PER_SCENARIO, QUICK_BUDGET_PER_SCENARIO = 48, 10   # seconds of --budget's default


def report(name: str, result: dict) -> str:
    if "error" in result:
        return f"{name}: FAILED: {result['error']}"
    if "skipped" in result:
        return f"{name}: skipped: {result['skipped']}"
    return REGISTRY[name].report(result)


def source_digest() -> str:
    """A digest of gq's source files: a working tree edited during a run is measured in two versions."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "gq").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def machine(ctx: Context) -> dict:
    background = psutil.cpu_percent(interval=1.0, percpu=True)
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    versions = {}
    for package in ("gq", "gevent", "requests", "prometheus-client"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip() or None
    return {"cpu_model": model, "cores": os.cpu_count(), "pinned": ctx.pinned,
            "python": platform.python_version(), "versions": versions, "commit": commit,
            "gq_source": source_digest(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "cpu_busy_pct_per_core_before_start": background,
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1/10 of every job count: a smoke run")
    parser.add_argument("--scenario", nargs="+", metavar="NAME", choices=SCENARIOS + EXTRA_SCENARIOS,
                        help=f"run only these: {', '.join(SCENARIOS + EXTRA_SCENARIOS)} (default: "
                             f"{' '.join(SCENARIOS)}; {', '.join(EXTRA_SCENARIOS)} only when named)")
    parser.add_argument("--budget", type=float, metavar="SECONDS",
                        help="time within which a disturbed run may be measured again "
                             f"(default: {BUDGET_PER_SCENARIO} per scenario run, with --quick "
                             f"{QUICK_BUDGET_PER_SCENARIO}: {len(SCENARIOS) * BUDGET_PER_SCENARIO} and "
                             f"{len(SCENARIOS) * QUICK_BUDGET_PER_SCENARIO} for the default set)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, configs, journals)")
    args = parser.parse_args(argv)
    names = args.scenario or list(SCENARIOS)

    pinned = {TARGET_CORE, MEASURED_CORE} <= os.sched_getaffinity(0)
    if pinned:
        os.sched_setaffinity(0, {TARGET_CORE})  # this script stays off the measured core
    else:
        print("warning: fewer than 2 cores available: nothing is pinned", file=sys.stderr)
    env = {k: v for k, v in os.environ.items() if k not in ("GQ_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC")}
    workdir = Path(tempfile.mkdtemp(prefix="gq-bench-"))
    budget = args.budget if args.budget is not None else len(names) * (
        QUICK_BUDGET_PER_SCENARIO if args.quick else BUDGET_PER_SCENARIO)
    ctx = Context(workdir, args.quick, pinned, env, deadline=time.monotonic() + budget)
    info = machine(ctx)
    print(f"gq benchmark{' (--quick: 1/10 of the jobs)' if args.quick else ''}: {info['date']}")
    print(f"{info['cpu_model']}, {info['cores']} cores, "
          f"{'target on core 1, measured process on core 0' if pinned else 'not pinned'}; "
          f"Python {info['python']}, " + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
          + f"; tree {info['commit']}")
    print(f"before start: load average {info['load_average_at_start']}, "
          f"cores busy {info['cpu_busy_pct_per_core_before_start']} % (other processes)\n")
    results: dict[str, Any] = {}
    started = time.monotonic()
    try:
        try:
            ctx.target = BenchTarget(ctx)
        except BenchError as e:
            print(f"FAILED: the target did not start: {e}")
            return 1
        for name in names:
            t = time.monotonic()
            try:
                results[name] = REGISTRY[name].run(ctx)
            except Skipped as e:
                results[name] = {"skipped": str(e), "runs": []}
            except BenchError as e:
                results[name] = {"error": str(e), "runs": []}
            results[name]["wall_seconds"] = round(time.monotonic() - t, 1)
            print(report(name, results[name]) + "\n", flush=True)
    finally:
        Proc.kill_all()
        if args.keep:
            print(f"work dir kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    failed = [name for name, r in results.items() if "error" in r] + [
        run["label"] for r in results.values() for run in r["runs"] if not run["ok"]]
    disturbed = [run["label"] for r in results.values() for run in r["runs"]
                 if (run["others_pct"] or 0) > DISTURBED_PCT]
    print(f"{'FAILED: ' + ', '.join(failed) if failed else 'all runs ok'}; "
          f"{time.monotonic() - started:.0f} s in all")
    if disturbed:
        print(f"disturbed: other processes used more than {DISTURBED_PCT:g}% of the measured core(s) during "
              f"{', '.join(disturbed)}: their jobs/s are low, their CPU per job less affected")
    source_changed = source_digest() != info["gq_source"]
    if source_changed:
        print("warning: gq's source (gq/) changed during the run: its figures straddle two versions of gq")
    print(json.dumps({"machine": info, "quick": args.quick, "scenarios": results, "failed": failed,
                      "disturbed": disturbed, "gq_source_changed": source_changed}, separators=(",", ":")))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
