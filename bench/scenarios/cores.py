"""Scenario cores: A and B with `gq batch -p 2` (journal on) and the baseline, nothing
pinned, against the 1-process gq batch of A and B (reused when A, B ran before)."""

from __future__ import annotations

from dataclasses import asdict, replace
from functools import partial

from harness.context import Context
from harness.measure import ratio, run_baseline, run_batch
from harness.proc import BOTH_CORES, MEASURED_CORE
from harness.report import fmt, status_cell, table
from scenarios import delivery


def runs_of(ctx: Context, name: str, jobs_count: int, pool: int, delay: float) -> dict:
    """Scenario `name` again with gq batch -p 2 (journal on) and with the baseline, both let
    run on both cores, the target too (it shares them); against the 1-process gq batch with
    journal (pinned, alone on core 0) of scenario `name`: reused when it ran in this invocation,
    as its pinned baseline is (shown, not measured again: what unpinning alone changes).
    jobs/s here are the target's: requests arrived per second, first to last, one clock for all."""
    url = ctx.target.job_url(delay)
    pinned_base, one = ctx.runs.get(f"{name}-baseline"), ctx.runs.get(f"{name}-gq-journal")
    reused = [run for run in (pinned_base, one) if run is not None]
    if one is None:
        one = ctx.least_disturbed(partial(run_batch, ctx, f"{name}-gq-journal", jobs_count, pool, url, True))
    base = ctx.least_disturbed(partial(run_baseline, ctx, f"{name}-baseline-unpinned", jobs_count, pool, url,
                                       cores=BOTH_CORES))
    two = ctx.least_disturbed(partial(run_batch, ctx, f"{name}-gq-p2", jobs_count, pool, url, True,
                                      processes=2, cores=BOTH_CORES))
    rows, measured = [], []
    for run in (pinned_base, base, one, two):
        if run is None:
            continue
        at_target = run.extra.get("target_jobs_per_s")
        figures = {"cores": "both" if run is base or run is two else str(MEASURED_CORE),
                   "reused_from": name if any(run is r for r in reused) else None,
                   "x_one_process_jobs_per_s": ratio(at_target, one.extra.get("target_jobs_per_s")),
                   "x_base_unpinned_jobs_per_s": ratio(at_target, base.extra.get("target_jobs_per_s")),
                   "x_one_process_cpu": ratio(run.cpu_us_per_job, one.cpu_us_per_job),
                   "x_one_process_rss": ratio(run.max_rss_mb, one.max_rss_mb)}
        if delay:
            figures["pct_of_limit"] = round(at_target / (pool / delay) * 100, 1) if at_target else None
        rows.append(asdict(replace(run, extra={**run.extra, **figures})))
        if not figures["reused_from"]:
            measured.append(rows[-1])
    result = {"jobs": jobs_count, "pool": pool, "delay_s": delay, "rows": rows, "measured": measured}
    if delay:
        result["limit_jobs_per_s"] = pool / delay
    return result


def run(ctx: Context) -> dict:
    parts = {name: runs_of(ctx, name, *delivery.sizes(ctx, name)) for name in delivery.DELIVERY}
    return {**parts, "runs": [row for part in parts.values() for row in part.pop("measured")]}


def report(result: dict) -> str:
    parts = []
    for name in delivery.DELIVERY:
        part = result[name]
        limit = part.get("limit_jobs_per_s")
        headers = ["run", "cores", "jobs/s", "x 1 proc", "x base", *(["% limit"] if limit else []),
                   "CPU us/job", "x 1 proc", "peak RSS MB", "x 1 proc", "others on its cores %",
                   "target CPU %", "status"]
        rows = []
        for r in part["rows"]:
            x = r["extra"]
            rows.append([r["label"], x["cores"] + (f", from {x['reused_from']}" if x["reused_from"] else ""),
                         fmt(x.get("target_jobs_per_s"), ",.0f"), fmt(x.get("x_one_process_jobs_per_s")),
                         fmt(x.get("x_base_unpinned_jobs_per_s")),
                         *([fmt(x.get("pct_of_limit"), ".1f")] if limit else []),
                         fmt(r["cpu_us_per_job"], ",.0f"), fmt(x.get("x_one_process_cpu")),
                         fmt(r["max_rss_mb"], ".1f"), fmt(x.get("x_one_process_rss")),
                         fmt(r["others_pct"]), fmt(r["target_cpu_pct"]), status_cell(r)])
        parts.append(f"Cores, {delivery.title(name, part)}\n" + table(headers, rows))
    return ("\n\n".join(parts) + "\n  gq-p2: `gq batch -p 2`, journal on; it and baseline-unpinned run on both "
            "cores, not pinned, and so does the target then: it shares a core with them. baseline, gq-journal: "
            "1 process alone on core 0, the target alone on core 1.\n  jobs/s: job requests arrived at the target "
            "per second, first to last, for every row; x base: to baseline-unpinned; CPU: the process and its "
            "children (gq-p2: the parent and both parts); peak RSS: its largest process.")
