"""Scenario backlog (only when named): `gq run` started on journals where 0, 100,000 and
1,000,000 jobs wait, and A's gq batch beside 1,000,000 jobs waiting for a retry."""

from __future__ import annotations

import json
import sqlite3
import statistics
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

from gq.core import hosts
from harness.context import Context, Run
from harness.gq import Daemon
from harness.measure import against_baseline, run_baseline, run_batch
from harness.proc import request
from harness.report import fmt, status_cell, table
from harness.shared import wait_for
from scenarios import delivery

BACKLOGS = (0, 100_000, 1_000_000)   # jobs waiting in the journal at a start (scaled by --quick)
BACKLOG_RUNNING_S = 10.0             # seconds the daemon delivers from the backlog before its RSS is read again
BACKLOG_ROUNDS = 2                   # rounds of A's three runs (baseline, empty journal, long backlog)


def build_journal(path: Path, count: int, url: str, state: str = "queued", due: float = 0.0,
                  pad: int = 1000) -> dict:
    """A journal of `count` jobs of about `pad` bytes in `state` until `due`, written straight
    into SQLite in gq's own layout (the file is created by gq's JournalFile)."""
    from gq.broker.journal_file import JournalFile

    started = time.monotonic()
    path.parent.mkdir(parents=True, exist_ok=True)
    JournalFile(str(path)).close()
    db = sqlite3.connect(path)
    now, chunk, host = time.time(), 50_000, hosts.destination(url)
    with db:
        for first in range(0, count, chunk):
            db.executemany(
                "INSERT INTO jobs (id, spec, state, due, accepted_at, host) VALUES (?, ?, ?, ?, ?, ?)",
                ((f"w{n}", json.dumps({"id": f"w{n}", "method": "POST", "url": url,
                                       "json": {"n": n, "pad": "x" * pad}}), state, due or now, now, host)
                 for n in range(first, min(count, first + chunk))))
    db.close()
    return {"jobs": count, "build_s": round(time.monotonic() - started, 1),
            "file_mb": round(path.stat().st_size / 2**20, 1)}


def backlog_start(ctx: Context, waiting: int) -> Run:
    """`gq run` started on a journal where `waiting` jobs wait: seconds until /readyz
    answers 200, RSS then, and RSS after BACKLOG_RUNNING_S of delivering them at full speed."""
    start = Run(f"start-{waiting}", waiting)
    ctx.target.reset()
    seed = ctx.workdir / f"backlog-{waiting}.sqlite3"
    start.extra["journal"] = build_journal(seed, waiting, ctx.target.job_url())
    daemon = Daemon(ctx, start.label, pool=100, maxsize=1000, url=ctx.target.job_url(), journal=True, seed=seed)
    try:
        wait_for(lambda: request("GET", f"{daemon.api}/readyz")[0] == 200, 30, "/readyz 200", every=0.01)
        start.seconds = round(time.monotonic() - daemon.proc.started, 3)  # the interpreter's start included
        start.extra["rss_ready_mb"] = round(daemon.rss_mb(), 1)
        time.sleep(BACKLOG_RUNNING_S)
        start.max_rss_mb = round(daemon.rss_mb(), 1)
        start.extra["delivered_meanwhile"] = daemon.succeeded()
    finally:
        code = daemon.proc.stop()
    if code != 0:
        start.fail(f"daemon exit code {code} after SIGINT twice")
    seed.unlink()
    return start


def run(ctx: Context) -> dict:
    """Starts on 0, 100,000 and 1,000,000 waiting jobs; then A's jobs through gq batch on an
    empty journal and on one where 1,000,000 jobs wait for a retry due tomorrow."""
    starts = [backlog_start(ctx, ctx.scaled(n)) for n in BACKLOGS]
    jobs_count, pool, delay = delivery.sizes(ctx, "A")
    waiting = ctx.scaled(BACKLOGS[-1])
    seed = ctx.workdir / "backlog-retrying.sqlite3"
    built = build_journal(seed, waiting, ctx.target.job_url(), state="retrying", due=time.time() + 86400)
    url = ctx.target.job_url(delay)
    rounds = []
    for n in range(1, BACKLOG_ROUNDS + 1):  # rounds in turn: a drift of the machine's speed hits all three
        runs = [ctx.least_disturbed(partial(run_baseline, ctx, f"A-baseline-{n}", jobs_count, pool, url)),
                ctx.least_disturbed(partial(run_batch, ctx, f"A-gq-journal-empty-{n}", jobs_count, pool, url,
                                            journal=True)),
                ctx.least_disturbed(partial(run_batch, ctx, f"A-gq-journal-{waiting}-waiting-{n}", jobs_count,
                                            pool, url, journal=True, seed=seed))]
        rounds.append(against_baseline(ctx, runs, jobs_count, pool, delay))
    seed.unlink()
    means = [round(statistics.fmean(r["runs"][i]["extra"]["x_base_jobs_per_s"] or 0 for r in rounds), 3)
             for i in range(3)]
    return {"starts": [asdict(r) for r in starts], "waiting": waiting, "waiting_journal": built,
            "jobs": jobs_count, "pool": pool, "delay_s": delay, "mean_x_base_jobs_per_s": means,
            "backlog_cost_pct": round((1 - means[2] / means[1]) * 100, 1) if means[1] and means[2] else None,
            "runs": [asdict(r) for r in starts] + [run for r in rounds for run in r["runs"]]}


def report(result: dict) -> str:
    rows = [[f"{r['jobs']:,}", fmt(r["extra"]["journal"]["file_mb"], ",.0f"), fmt(r["seconds"], ".2f"),
             fmt(r["extra"].get("rss_ready_mb")), fmt(r["max_rss_mb"]), fmt(r["extra"].get("delivered_meanwhile")),
             status_cell(r)] for r in result["starts"]]
    starts = ("Backlog: gq run started on a journal of N waiting jobs of about 1 KB (pool 100, queue 1000)\n"
              + table(["waiting", "file MB", "start to /readyz s", "RSS ready MB",
                       f"RSS after {BACKLOG_RUNNING_S:g} s MB", "delivered then", "status"], rows))
    runs = {**result, "runs": result["runs"][len(result["starts"]):]}
    _, empty, waiting = result["mean_x_base_jobs_per_s"]
    return (starts + "\n\n"
            + delivery.report(f"A, {result['waiting']:,} other jobs waiting for a retry due tomorrow", runs)
            + f"\n  mean jobs/s x base over {BACKLOG_ROUNDS} rounds: empty journal {fmt(empty)}, "
              f"{result['waiting']:,} waiting {fmt(waiting)}: the backlog costs {fmt(result['backlog_cost_pct'])} %")
