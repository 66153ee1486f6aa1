"""Measuring one delivery process (the baseline, gq batch) against a freshly reset target,
and the figures of a set of runs as ratios to the baseline's."""

from __future__ import annotations

import resource
import signal
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from harness import BENCH, PY, BenchError
from harness.context import Context, Run
from harness.gq import GQ, batch_argv
from harness.proc import MEASURED_CORE, CoreClock, Cores, Proc


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(ctx: Context, label: str, argv: list[str], jobs_count: int,
            read: Callable[[Proc, Run], None], slowdown: float = 1.0, cores: Cores = MEASURED_CORE) -> Run:
    """Run one delivery process on the measured core (or on both, beside the target) against a
    freshly reset target; `read` fills the figures in from the exited process; then check the
    target got every job, and note the span from its first request to its last."""
    run = Run(label, jobs_count)
    ctx.target.reset()
    run.extra["waited_for_quiet_s"] = ctx.quiet()
    with ctx.target.beside(ctx, cores):
        clock, target_cpu, children_cpu = CoreClock(ctx, cores), ctx.target.cpu_seconds(), children_cpu_seconds()
        proc = Proc(ctx.name(label), argv, ctx, cores)
        bound = ctx.run_bound(jobs_count) * slowdown
        if proc.wait(bound) is None:
            run.fail(f"did not finish within {bound:g}s")
            try:
                proc.stop((signal.SIGTERM,), timeout=10)
            except BenchError as e:
                run.fail(str(e))
        wall = time.monotonic() - proc.started
        target_used = ctx.target.cpu_seconds() - target_cpu
        # On both cores the target's CPU is on the clock's cores too: not another load.
        run.others_pct = clock.others_pct(proc.cpu_seconds + (target_used if len(clock.cores) > 1 else 0))
    run.extra["process_wall_s"] = round(wall, 2)   # the interpreter's start and the input's parsing included
    run.extra["cpu_s_rusage_children"] = round(children_cpu_seconds() - children_cpu, 3)  # = the wait4 figure
    run.target_cpu_pct = round(target_used / wall * 100, 1)
    try:
        read(proc, run)
    except BenchError as e:
        run.fail(str(e))
    for problem in ctx.target.check(jobs_count):
        run.fail(problem)
    arrived = ctx.target.received_times()
    if len(arrived) > 1:
        span = arrived[-1] - arrived[0]
        run.extra.update(target_span_s=round(span, 3), target_jobs_per_s=round((len(arrived) - 1) / span, 1))
    return run


def run_baseline(ctx: Context, label: str, jobs_count: int, pool: int, url: str,
                 cores: Cores = MEASURED_CORE) -> Run:
    def read(proc: Proc, run: Run) -> None:
        out = proc.stdout_json()
        run.jobs_per_s, run.cpu_us_per_job, run.max_rss_mb = (
            out["jobs_per_s"], out["cpu_us_per_job"], out["max_rss_mb"])
        run.seconds = out["seconds"]
        if out["statuses"] != {"200": jobs_count} or out["errors"]:
            run.fail(f"answers {out['statuses']}, errors {out['errors']}")

    argv = [PY, str(BENCH / "baseline.py"), "--url", url, "--count", str(jobs_count), "--pool", str(pool),
            "--prefix", f"{label}-", "--max-seconds", str(ctx.run_bound(jobs_count) - 10)]
    return measure(ctx, label, argv, jobs_count, read, cores=cores)


def run_batch(ctx: Context, label: str, jobs_count: int, pool: int, url: str, journal: bool,
              processes: int = 1, cores: Cores = MEASURED_CORE, launcher: list[str] = GQ,
              seed: Path | None = None) -> Run:
    """gq batch, measured; with processes > 1 the figures are of the parent and its children
    together (CPU summed, peak RSS the largest process's), see Proc."""
    def read(proc: Proc, run: Run) -> None:
        summary = proc.stdout_json()
        run.seconds = summary["seconds"]
        run.jobs_per_s = round(jobs_count / summary["seconds"], 1)
        run.cpu_us_per_job = round(proc.cpu_seconds / jobs_count * 1e6, 1)
        run.max_rss_mb = round(proc.max_rss_mb, 1)
        if proc.code != 0 or summary["succeeded"] != jobs_count:
            run.fail(f"exit {proc.code}, summary {summary}")

    argv = [PY] + batch_argv(ctx, label, jobs_count, pool, url, journal, processes, launcher, seed)
    return measure(ctx, label, argv, jobs_count, read, cores=cores)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def against_baseline(ctx: Context, runs: list[Run], jobs_count: int, pool: int, delay: float) -> dict:
    """The figures of delivery `runs` as ratios to the first one's, the baseline's."""
    base = runs[0]
    for run in runs:
        ctx.runs[run.label] = run
        run.extra["x_base_jobs_per_s"] = ratio(run.jobs_per_s, base.jobs_per_s)
        run.extra["x_base_cpu"] = ratio(run.cpu_us_per_job, base.cpu_us_per_job)
        run.extra["x_base_rss"] = ratio(run.max_rss_mb, base.max_rss_mb)
        if delay:
            run.extra["pct_of_limit"] = round(run.jobs_per_s / (pool / delay) * 100, 1) if run.jobs_per_s else None
    result = {"jobs": jobs_count, "pool": pool, "delay_s": delay, "runs": [asdict(r) for r in runs]}
    if delay:
        result["limit_jobs_per_s"] = pool / delay
    return result
