"""Scenario memory: daemon RSS idle, with 500 in flight, and with 10,000 more queued."""

from __future__ import annotations

import time
from dataclasses import asdict

from harness.context import Context, Run
from harness.gq import Daemon, jobs
from harness.report import fmt, status_cell, table
from harness.shared import wait_for


def run(ctx: Context) -> dict:
    """Daemon RSS idle (after a warm-up), with 500 in flight, with 10,000 more queued."""
    in_flight, queued, delay, chunk = 500, ctx.scaled(10000), 30.0, 1000
    memory = Run("memory", in_flight + queued)
    ctx.target.reset()
    daemon = Daemon(ctx, "memory", pool=in_flight, maxsize=in_flight + queued + 100,
                    url=ctx.target.job_url(delay), timeout=delay + 30, journal=True)
    try:
        warm = 20  # the first attempts import and allocate what every later one reuses
        daemon.submit(jobs("warm-", 0, warm, url=ctx.target.job_url()))
        wait_for(lambda: daemon.status()["finished"]["succeeded"] == warm, 10, "warm-up jobs finished")
        time.sleep(0.3)
        idle = daemon.rss_mb()
        daemon.submit(jobs("flight-", 0, in_flight))
        wait_for(lambda: daemon.status()["pool_busy"] == in_flight and ctx.target.count() >= warm + in_flight, 15,
                 "500 in flight")
        busy = daemon.rss_mb()
        for first in range(0, queued, chunk):
            daemon.submit(jobs("queued-", first, min(chunk, queued - first)))
        wait_for(lambda: daemon.status()["queue_depth"] == queued, 15, f"{queued} queued")
        full = daemon.rss_mb()
    finally:
        code = daemon.proc.stop()
    if code != 0:
        memory.fail(f"daemon exit code {code} after SIGINT twice")
    memory.max_rss_mb = round(full, 1)
    memory.extra.update(
        rss_idle_mb=round(idle, 1), rss_in_flight_mb=round(busy, 1), rss_in_flight_and_queued_mb=round(full, 1),
        kb_per_in_flight_job=round((busy - idle) * 1024 / in_flight, 1),
        kb_per_queued_job=round((full - busy) * 1024 / queued, 2) if queued else None,
        in_flight=in_flight, queued=queued, exit_code=code)
    return {"in_flight": in_flight, "queued": queued, "delay_s": delay, "runs": [asdict(memory)]}


def report(result: dict) -> str:
    r = result["runs"][0]
    x = r["extra"]
    rows = [["idle, after a warm-up", fmt(x.get("rss_idle_mb")), ""],
            [f"{result['in_flight']} in flight", fmt(x.get("rss_in_flight_mb")),
             f"{fmt(x.get('kb_per_in_flight_job'))} KB per in-flight job"],
            [f"{result['in_flight']} in flight + {result['queued']:,} queued",
             fmt(x.get("rss_in_flight_and_queued_mb")),
             f"{fmt(x.get('kb_per_queued_job'))} KB per queued job"]]
    return (f"Memory: daemon RSS, pool {result['in_flight']}, journal on, target delay {result['delay_s']:g} s\n"
            + table(["daemon", "RSS MB", "estimate"], rows) + f"\n  {status_cell(r)}")
