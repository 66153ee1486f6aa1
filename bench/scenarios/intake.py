"""Scenario intake: 50,000 jobs POSTed to `gq run` in arrays of 100 by 8 concurrent senders,
journal on and memory-only, delivery parked behind a 60 s target."""

from __future__ import annotations

import signal
from dataclasses import asdict
from functools import partial

from harness import BENCH, PY, BenchError
from harness.context import Context, Run
from harness.gq import Daemon
from harness.proc import TARGET_CORE, CoreClock, Proc
from harness.report import fmt, status_cell, table


def intake_run(ctx: Context, label: str, jobs_count: int, batch: int, senders: int, journal: bool) -> Run:
    """POST `jobs_count` jobs in arrays of `batch` from `senders` concurrent connections
    of a load client (on the target's core), delivery parked behind a 60 s target."""
    run = Run(label, jobs_count)
    ctx.target.reset()
    daemon = Daemon(ctx, label, pool=100, maxsize=max(100000, jobs_count), url=ctx.target.job_url(60),
                    timeout=120, journal=journal)
    try:
        run.extra["waited_for_quiet_s"] = ctx.quiet()
        clock, cpu = CoreClock(ctx), daemon.cpu_seconds()
        client = Proc(ctx.name(label + "-client"),
                      [PY, str(BENCH / "baseline.py"), "--url", f"{daemon.api}/v1/jobs",
                       "--count", str(jobs_count // batch), "--batch", str(batch), "--pool", str(senders),
                       "--prefix", f"{label}-", "--max-seconds", "120"], ctx, TARGET_CORE)
        if client.wait(130) is None:
            client.stop((signal.SIGKILL,))
            raise BenchError("load client did not finish within 130s")
        daemon_cpu = daemon.cpu_seconds() - cpu
        out = client.stdout_json()
        run.seconds, run.jobs_per_s = out["seconds"], out["jobs_per_s"]
        run.cpu_us_per_job = round(daemon_cpu / jobs_count * 1e6, 1)
        run.others_pct = clock.others_pct(daemon_cpu)
        run.max_rss_mb = round(daemon.rss_mb(), 1)   # holding every job accepted
        run.extra["requests"] = out["requests"]
        run.extra["statuses"] = out["statuses"]
        if out["statuses"] != {"202": jobs_count // batch} or out["errors"]:
            run.fail(f"answers {out['statuses']}, errors {out['errors']}: not every request got 202")
        held = daemon.status()["jobs"]
        held_count = held.get("queued", 0) + held.get("running", 0)
        if held_count != jobs_count:
            run.fail(f"daemon holds {held_count} jobs (queued + running), expected {jobs_count}")
    finally:
        code = daemon.proc.stop()
    if code != 0:
        run.fail(f"daemon exit code {code} after SIGINT twice")
    if journal:
        rows = daemon.journal_rows()
        run.extra["journal_rows_after_stop"] = rows
        if rows != jobs_count:
            run.fail(f"journal holds {rows} jobs after the stop, expected {jobs_count}")
    return run


def run(ctx: Context) -> dict:
    jobs_count, batch, senders = ctx.scaled(50000), 100, 8
    runs = [ctx.least_disturbed(partial(intake_run, ctx, f"intake-{kind}", jobs_count, batch, senders,
                                        journal=kind == "journal")) for kind in ("journal", "memory")]
    return {"jobs": jobs_count, "batch": batch, "senders": senders, "runs": [asdict(r) for r in runs]}


def report(result: dict) -> str:
    title = (f"Intake: {result['jobs']:,} jobs POSTed in arrays of {result['batch']} by "
             f"{result['senders']} concurrent senders (delivery parked)")
    rows = [[r["label"], fmt(r["jobs_per_s"], ",.0f"), fmt(r["seconds"], ".2f"), fmt(r["cpu_us_per_job"], ",.0f"),
             fmt(r["max_rss_mb"], ".1f"), fmt(r["extra"].get("journal_rows_after_stop")), fmt(r["others_pct"]),
             status_cell(r)] for r in result["runs"]]
    return title + "\n" + table(["run", "accepted jobs/s", "seconds", "daemon CPU us/job",
                                 "daemon RSS MB (all held)", "journal rows", "others on core0 %", "status"], rows)
