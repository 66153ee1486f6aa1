"""Scenario profile (only when named): A's jobs, the baseline and gq batch with its journal,
each under cProfile: own time per job by area, and gq's top functions."""

from __future__ import annotations

import pstats
import sysconfig
from dataclasses import asdict
from functools import partial
from pathlib import Path

from harness import BENCH, PY, ROOT, BenchError
from harness.context import Context, Run
from harness.gq import batch_argv
from harness.measure import measure
from harness.proc import Proc
from harness.report import fmt, table
from scenarios import delivery

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def area(filename: str) -> str:
    """What a profiled function belongs to: gq, a package, a stdlib module, or C code."""
    if filename == "~":
        return "C functions (builtins, sockets, sqlite3)"
    if filename.startswith("<frozen "):
        return "stdlib " + filename[len("<frozen "):].rstrip(">").split(".")[0]
    path = Path(filename)
    if ROOT / "gq" in path.parents:
        return "gq"
    if BENCH in path.parents:
        return "bench (baseline)"
    if "site-packages" in path.parts:
        return path.parts[path.parts.index("site-packages") + 1].removesuffix(".py")
    if STDLIB in path.parents:
        return "stdlib " + path.relative_to(STDLIB).parts[0].removesuffix(".py")
    return str(path)


def run_profiled(ctx: Context, label: str, argv: list[str], jobs_count: int) -> Run:
    """Run `argv` (a python command line, without the interpreter) under cProfile, as measure() runs."""
    out = ctx.workdir / f"{ctx.name(label)}.prof"

    def read(proc: Proc, run: Run) -> None:
        if proc.code != 0:
            run.fail(f"exit {proc.code}: {proc.tail()}")
        run.extra["profile"] = str(out)

    return measure(ctx, label, [PY, "-m", "cProfile", "-o", str(out)] + argv, jobs_count, read, slowdown=4)


def run(ctx: Context) -> dict:
    """The baseline and gq batch (journal on) on scenario A's jobs, under cProfile: own time
    per job by area (gq, requests, urllib3, gevent, stdlib modules, C), and gq's top functions.
    cProfile slows everything several times over, and its clock is the wall clock: compare
    the rows of one report, of runs little disturbed, not the totals with A's."""
    jobs_count, pool, delay = delivery.sizes(ctx, "A")
    url = ctx.target.job_url(delay)
    baseline = [str(BENCH / "baseline.py"), "--url", url, "--count", str(jobs_count), "--pool", str(pool),
                "--prefix", "profile-base-", "--max-seconds", str(ctx.run_bound(jobs_count) * 3)]
    runs = {"baseline": ctx.least_disturbed(partial(run_profiled, ctx, "profile-baseline", baseline, jobs_count)),
            "gq": ctx.least_disturbed(lambda: run_profiled(
                ctx, "profile-gq", batch_argv(ctx, "profile-gq", jobs_count, pool, url, True), jobs_count))}
    failed = [f"{r.label}: {'; '.join(r.problems)}" for r in runs.values() if not r.ok]
    if failed:
        raise BenchError(" / ".join(failed))
    stats = {name: pstats.Stats(r.extra["profile"]) for name, r in runs.items()}
    by_area: dict[str, dict[str, float]] = {}
    for name, profiled in stats.items():
        for (filename, _, _), (_, _, tottime, _, _) in profiled.stats.items():
            cell = by_area.setdefault(area(filename), {"baseline": 0.0, "gq": 0.0})
            cell[name] += tottime / jobs_count * 1e6
    areas = sorted(({"area": name, "baseline_us_per_job": round(v["baseline"], 1), "gq_us_per_job": round(v["gq"], 1),
                     "gq_minus_baseline": round(v["gq"] - v["baseline"], 1)} for name, v in by_area.items()),
                   key=lambda a: -max(a["gq_us_per_job"], a["baseline_us_per_job"]))
    top = sorted(stats["gq"].stats.items(), key=lambda kv: kv[1][2], reverse=True)[:20]
    functions = [{"function": f"{Path(f).name}:{line}({name})", "area": area(f), "calls": nc,
                  "us_per_job": round(tt / jobs_count * 1e6, 1)}
                 for (f, line, name), (_, nc, tt, _, _) in top]
    totals = {name: round(profiled.total_tt / jobs_count * 1e6, 1) for name, profiled in stats.items()}
    return {"jobs": jobs_count, "profiled_us_per_job": totals, "by_area": areas[:16], "gq_top_functions": functions,
            "runs": [asdict(r) for r in runs.values()]}


def report(result: dict) -> str:
    totals = result["profiled_us_per_job"]
    others = ", ".join(f"{r['label']} {fmt(r['others_pct'])}%" for r in result["runs"])
    areas = [[a["area"], f"{a['baseline_us_per_job']:,.1f}", f"{a['gq_us_per_job']:,.1f}",
              f"{a['gq_minus_baseline']:+,.1f}"] for a in result["by_area"]]
    functions = [[f["function"], f["area"], str(f["calls"]), f"{f['us_per_job']:.1f}"]
                 for f in result["gq_top_functions"]]
    return (f"Profile: scenario A's {result['jobs']:,} jobs under cProfile, baseline vs gq batch with journal "
            f"(profiled own time per job: baseline {totals['baseline']:,.0f} us, gq {totals['gq']:,.0f} us; "
            f"others on core 0: {others})\n"
            + table(["own time per job, by area", "baseline us", "gq us", "gq - base"], areas)
            + "\n\n" + table(["gq's top functions by own time", "area", "calls", "us/job"], functions))
