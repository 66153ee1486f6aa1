"""Scenarios A and B: the baseline, gq batch with its journal, gq batch memory-only, each
alone on the measured core; A is CPU-bound, B's target answers after 100 ms."""

from __future__ import annotations

from functools import partial

from harness.context import Context
from harness.measure import against_baseline, run_baseline, run_batch
from harness.report import fmt, status_cell, table

DELIVERY = {"A": (20000, 100, 0.0), "B": (10000, 500, 0.1)}   # scenario: jobs, pool, target delay (s)


def sizes(ctx: Context, name: str) -> tuple[int, int, float]:
    """Scenario A's or B's jobs, pool and target delay."""
    jobs_count, pool, delay = DELIVERY[name]
    return ctx.scaled(jobs_count), pool, delay


def run(name: str, ctx: Context) -> dict:
    """Scenario `name` (A or B): the baseline, gq batch with journal, gq batch memory-only."""
    jobs_count, pool, delay = sizes(ctx, name)
    url = ctx.target.job_url(delay)
    runs = [ctx.least_disturbed(partial(run_baseline, ctx, f"{name}-baseline", jobs_count, pool, url)),
            *(ctx.least_disturbed(partial(run_batch, ctx, f"{name}-gq-{kind}", jobs_count, pool, url,
                                          journal=kind == "journal")) for kind in ("journal", "memory"))]
    return against_baseline(ctx, runs, jobs_count, pool, delay)


def title(name: str, result: dict) -> str:
    limit = result.get("limit_jobs_per_s")
    return (f"Scenario {name}: {result['jobs']:,} jobs, pool {result['pool']}, "
            + (f"target delay {result['delay_s'] * 1000:g} ms (limit {limit:,.0f} jobs/s)" if limit
               else "no target delay"))


def report(name: str, result: dict) -> str:
    """The table of a delivery scenario's runs against the baseline; `name` heads it."""
    limit = result.get("limit_jobs_per_s")
    headers = ["run", "jobs/s", "x base", *(["% limit"] if limit else []), "CPU us/job", "x base",
               "peak RSS MB", "x base", "others on core0 %", "target CPU %", "status"]
    rows = []
    for r in result["runs"]:
        x = r["extra"]
        rows.append([r["label"], fmt(r["jobs_per_s"], ",.0f"), fmt(x.get("x_base_jobs_per_s")),
                     *([fmt(x.get("pct_of_limit"), ".1f")] if limit else []),
                     fmt(r["cpu_us_per_job"], ",.0f"), fmt(x.get("x_base_cpu")),
                     fmt(r["max_rss_mb"], ".1f"), fmt(x.get("x_base_rss")),
                     fmt(r["others_pct"]), fmt(r["target_cpu_pct"]), status_cell(r)])
    return title(name, result) + "\n" + table(headers, rows)
