"""Scenario metrics (only when named): A's gq batch (journal on) with the Metrics observer as
shipped, and with its job-path methods replaced by no-ops (bench/gq_without_metrics.py), 2
runs each (shipped, no-op, no-op, shipped), and those methods timed in-process."""

from __future__ import annotations

import time
from dataclasses import asdict
from functools import partial

from harness import BENCH
from harness.context import Context, Run
from harness.gq import GQ
from harness.measure import run_batch
from harness.report import fmt, status_cell, table
from scenarios import delivery

GQ_WITHOUT_METRICS = [str(BENCH / "gq_without_metrics.py")]   # as GQ, Metrics' job path made no-ops


def mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 1) if values else None


def observer_us_per_job(jobs_count: int = 200000) -> float:
    """What the Metrics observer's job-path methods cost per job, timed in this process: a
    Metrics of gq's fed what a job that succeeds feeds it (accepted in chunks of 500, as gq
    batch submits), less the same calls to no-op functions (the call itself stays in gq)."""
    from gq.core.outcome import AttemptResult, Outcome, Verdict
    from gq.observe.metrics import Metrics

    def nothing(*args) -> None:
        pass

    metrics = Metrics()
    result, outcome = AttemptResult(time.time(), 0.004, status=200), Outcome(Verdict.SUCCESS)
    cpu = []
    for accepted, dequeued, attempted in ((metrics.accepted, metrics.dequeued, metrics.attempted),
                                          (nothing, nothing, nothing)):
        started = time.process_time()
        for n in range(jobs_count):
            if n % 500 == 0:
                accepted(500)
            dequeued(0.002)
            attempted(None, result, outcome)
        cpu.append(time.process_time() - started)
    return round((cpu[0] - cpu[1]) / jobs_count * 1e6, 2)


def run(ctx: Context) -> dict:
    """A's gq batch (journal on), as shipped and with the Metrics observer's job-path methods
    made no-ops (bench/gq_without_metrics.py), `pairs` times each, in the order shipped,
    no-op, no-op, shipped...: a drift of the machine over the runs cancels out of the means."""
    jobs_count, pool, delay = delivery.sizes(ctx, "A")
    url, pairs = ctx.target.job_url(delay), 2
    launchers = [("shipped", GQ), ("no-op", GQ_WITHOUT_METRICS)]
    runs: dict[str, list[Run]] = {kind: [] for kind, _ in launchers}
    in_order = []
    for i in range(1, pairs + 1):
        for kind, launcher in launchers if i % 2 else launchers[::-1]:
            measured = ctx.least_disturbed(partial(run_batch, ctx, f"metrics-{kind}-{i}", jobs_count, pool, url,
                                                   True, launcher=launcher))
            runs[kind].append(measured)
            in_order.append(measured)
    means = {kind: {key: mean([getattr(r, key) for r in kind_runs if r.ok])
                    for key in ("jobs_per_s", "cpu_us_per_job")} for kind, kind_runs in runs.items()}
    cpu = {kind: [r.cpu_us_per_job for r in kind_runs if r.ok] for kind, kind_runs in runs.items()}
    difference = (means["shipped"]["cpu_us_per_job"] - means["no-op"]["cpu_us_per_job"]
                  if None not in (means["shipped"]["cpu_us_per_job"], means["no-op"]["cpu_us_per_job"]) else None)
    return {"jobs": jobs_count, "pool": pool, "pairs": pairs, "means": means,
            "metrics_cpu_us_per_job": round(difference, 1) if difference is not None else None,
            "observer_us_per_job_in_process": observer_us_per_job(),
            "spread_cpu_us_per_job": max((round(max(v) - min(v), 1) for v in cpu.values() if v), default=None),
            "runs": [asdict(r) for r in in_order]}


def report(result: dict) -> str:
    rows = [[r["label"], fmt(r["jobs_per_s"], ",.0f"), fmt(r["cpu_us_per_job"], ",.0f"), fmt(r["max_rss_mb"], ".1f"),
             fmt(r["others_pct"]), status_cell(r)] for r in result["runs"]]
    means = result["means"]
    return (f"Metrics: scenario A's {result['jobs']:,} jobs, gq batch with journal, the Metrics observer as shipped "
            f"and with accepted/dequeued/attempted made no-ops (bench/gq_without_metrics.py), in this order\n"
            + table(["run", "jobs/s", "CPU us/job", "peak RSS MB", "others on core0 %", "status"], rows)
            + "\n  mean of " + str(result["pairs"]) + " runs each: "
            + "; ".join(f"{kind} {fmt(m['jobs_per_s'], ',.0f')} jobs/s, {fmt(m['cpu_us_per_job'], ',.0f')} us/job"
                        for kind, m in means.items())
            + f"\n  metrics on the job path: {fmt(result['metrics_cpu_us_per_job'], '+.1f')} us of CPU per job "
              f"(the runs of one kind differ by up to {fmt(result['spread_cpu_us_per_job'])} us/job); "
              f"the observer's methods timed in-process: {fmt(result['observer_us_per_job_in_process'])} us per job")
