"""gq's benchmark: gq against the bare stack it is built on, in one invocation.

    python bench/bench.py [--quick] [--scenario NAME ...]

Every figure comes from real processes talking HTTP on 127.0.0.1: the target
(tests/target.py) runs alone on core 1, the process measured (the baseline, gq
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
import pstats
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

import psutil

from harness import BENCH, PY, ROOT, BenchError, Skipped
from harness.context import DISTURBED_PCT, Context, Run
from harness.gq import GQ, Daemon, batch_argv, jobs
from harness.measure import against_baseline, measure, ratio, run_baseline, run_batch
from harness.proc import BOTH_CORES, MEASURED_CORE, TARGET_CORE, CoreClock, Proc, cpu_seconds_of, let_run_on, request
from harness.report import fmt, status_cell, table
from harness.shared import RedisServer, find_redis_server, wait_for
from harness.target import BenchTarget

SCENARIOS = ("A", "B", "cores", "redis", "intake", "drain", "memory")
EXTRA_SCENARIOS = ("backlog", "metrics", "profile")
BUDGET_PER_SCENARIO, QUICK_BUDGET_PER_SCENARIO = 48, 10   # seconds of --budget's default
GQ_WITHOUT_METRICS = [str(BENCH / "gq_without_metrics.py")]   # the same, Metrics' job path made no-ops
STDLIB = Path(sysconfig.get_paths()["stdlib"])
DELIVERY = {"A": (20000, 100, 0.0), "B": (10000, 500, 0.1)}   # scenario: jobs, pool, target delay (s)


# -- delivery: the baseline and gq batch ------------------------------------------------

def delivery(ctx: Context, name: str, jobs_count: int, pool: int, delay: float) -> dict:
    """One delivery scenario: the baseline, gq batch with journal, gq batch memory-only."""
    url = ctx.target.job_url(delay)
    runs = [ctx.least_disturbed(partial(run_baseline, ctx, f"{name}-baseline", jobs_count, pool, url)),
            *(ctx.least_disturbed(partial(run_batch, ctx, f"{name}-gq-{kind}", jobs_count, pool, url,
                                          journal=kind == "journal")) for kind in ("journal", "memory"))]
    return against_baseline(ctx, runs, jobs_count, pool, delay)


def sizes(ctx: Context, name: str) -> tuple[int, int, float]:
    """Scenario A's or B's jobs, pool and target delay."""
    jobs_count, pool, delay = DELIVERY[name]
    return ctx.scaled(jobs_count), pool, delay


def scenario_a(ctx: Context) -> dict:
    return delivery(ctx, "A", *sizes(ctx, "A"))


def scenario_b(ctx: Context) -> dict:
    return delivery(ctx, "B", *sizes(ctx, "B"))


# -- both cores: gq batch -p 2 ---------------------------------------------------------

def cores_runs(ctx: Context, name: str, jobs_count: int, pool: int, delay: float) -> dict:
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


def scenario_cores(ctx: Context) -> dict:
    parts = {name: cores_runs(ctx, name, *sizes(ctx, name)) for name in DELIVERY}
    return {**parts, "runs": [row for part in parts.values() for row in part.pop("measured")]}


# -- the daemon ------------------------------------------------------------------------

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


def scenario_intake(ctx: Context) -> dict:
    jobs_count, batch, senders = ctx.scaled(50000), 100, 8
    runs = [ctx.least_disturbed(partial(intake_run, ctx, f"intake-{kind}", jobs_count, batch, senders,
                                        journal=kind == "journal")) for kind in ("journal", "memory")]
    return {"jobs": jobs_count, "batch": batch, "senders": senders, "runs": [asdict(r) for r in runs]}


def scenario_drain(ctx: Context) -> dict:
    """500 jobs in flight against a 1 s target; SIGTERM once the pool is full of them."""
    in_flight, delay = 500, 1.0
    run = Run("drain", in_flight)
    ctx.target.reset()
    daemon = Daemon(ctx, "drain", pool=in_flight, maxsize=2 * in_flight, url=ctx.target.job_url(delay),
                    timeout=10, journal=True)
    try:
        daemon.submit(jobs("drain-", 0, in_flight))
        wait_for(lambda: daemon.status()["pool_busy"] == in_flight and ctx.target.count() == in_flight, 15,
                 "500 in flight")
        at_signal = ctx.target.count()
        sent = time.monotonic()
        daemon.proc.send(signal.SIGTERM)
        code = daemon.proc.wait(45)
        run.seconds = round(time.monotonic() - sent, 3)
    except BaseException:
        daemon.proc.stop((signal.SIGKILL,))
        raise
    if code is None:
        daemon.proc.stop((signal.SIGKILL,))
        run.fail("daemon did not exit within 45s of SIGTERM")
    elif code != 0:
        run.fail(f"exit code {code}, expected 0")
    run.extra.update(exit_code=code, target_count_at_sigterm=at_signal,
                     log=daemon.log_has(r"drained in [^\n]*") or daemon.log_has(r"stopped after [^\n]*"))
    for problem in ctx.target.check(in_flight):
        run.fail(problem)
    return {"in_flight": in_flight, "delay_s": delay, "runs": [asdict(run)]}


def scenario_memory(ctx: Context) -> dict:
    """Daemon RSS idle (after a warm-up), with 500 in flight, with 10,000 more queued."""
    in_flight, queued, delay, chunk = 500, ctx.scaled(10000), 30.0, 1000
    run = Run("memory", in_flight + queued)
    ctx.target.reset()
    daemon = Daemon(ctx, "memory", pool=in_flight, maxsize=in_flight + queued + 100, url=ctx.target.job_url(delay),
                    timeout=delay + 30, journal=True)
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
        run.fail(f"daemon exit code {code} after SIGINT twice")
    run.max_rss_mb = round(full, 1)
    run.extra.update(
        rss_idle_mb=round(idle, 1), rss_in_flight_mb=round(busy, 1), rss_in_flight_and_queued_mb=round(full, 1),
        kb_per_in_flight_job=round((busy - idle) * 1024 / in_flight, 1),
        kb_per_queued_job=round((full - busy) * 1024 / queued, 2) if queued else None,
        in_flight=in_flight, queued=queued, exit_code=code)
    return {"in_flight": in_flight, "queued": queued, "delay_s": delay, "runs": [asdict(run)]}


# -- the backlog: jobs waiting in the journal ----------------------------------------------

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
    now, chunk = time.time(), 50_000
    with db:
        for first in range(0, count, chunk):
            db.executemany(
                "INSERT INTO jobs (id, spec, state, due, accepted_at) VALUES (?, ?, ?, ?, ?)",
                ((f"w{n}", json.dumps({"id": f"w{n}", "method": "POST", "url": url,
                                       "json": {"n": n, "pad": "x" * pad}}), state, due or now, now)
                 for n in range(first, min(count, first + chunk))))
    db.close()
    return {"jobs": count, "build_s": round(time.monotonic() - started, 1),
            "file_mb": round(path.stat().st_size / 2**20, 1)}


def backlog_start(ctx: Context, waiting: int) -> Run:
    """`gq run` started on a journal where `waiting` jobs wait: seconds until /readyz
    answers 200, RSS then, and RSS after BACKLOG_RUNNING_S of delivering them at full speed."""
    run = Run(f"start-{waiting}", waiting)
    ctx.target.reset()
    seed = ctx.workdir / f"backlog-{waiting}.sqlite3"
    run.extra["journal"] = build_journal(seed, waiting, ctx.target.job_url())
    daemon = Daemon(ctx, run.label, pool=100, maxsize=1000, url=ctx.target.job_url(), journal=True, seed=seed)
    try:
        wait_for(lambda: request("GET", f"{daemon.api}/readyz")[0] == 200, 30, "/readyz 200", every=0.01)
        run.seconds = round(time.monotonic() - daemon.proc.started, 3)  # the interpreter's start included
        run.extra["rss_ready_mb"] = round(daemon.rss_mb(), 1)
        time.sleep(BACKLOG_RUNNING_S)
        run.max_rss_mb = round(daemon.rss_mb(), 1)
        run.extra["delivered_meanwhile"] = daemon.succeeded()
    finally:
        code = daemon.proc.stop()
    if code != 0:
        run.fail(f"daemon exit code {code} after SIGINT twice")
    seed.unlink()
    return run


def scenario_backlog(ctx: Context) -> dict:
    """Starts on 0, 100,000 and 1,000,000 waiting jobs; then A's jobs through gq batch on an
    empty journal and on one where 1,000,000 jobs wait for a retry due tomorrow."""
    starts = [backlog_start(ctx, ctx.scaled(n)) for n in BACKLOGS]
    jobs_count, pool, delay = sizes(ctx, "A")
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


# -- Redis: daemons sharing one stream ---------------------------------------------------

class BenchRedis:
    """The tests' RedisServer (tests/redis_server.py), found or installed as the tests do,
    its data in the work dir, with what a run needs besides: appendfsync everysec and no
    automatic AOF rewrite (a fork at a random moment of a run), both cores to run on,
    the server's command counters and its CPU."""

    def __init__(self, ctx: Context):
        binary, why = find_redis_server()
        if binary is None:
            raise Skipped(why)
        self.server = RedisServer(binary, ctx.workdir / ctx.name("redis-server"), appendfsync="everysec",
                                  args=("--auto-aof-rewrite-percentage", "0"))
        try:
            self.server.start()
        except RuntimeError:
            raise BenchError(f"redis-server did not start: {self.server.log().strip()[-300:]}") from None
        try:
            if ctx.pinned:
                let_run_on(self.server.proc.pid, BOTH_CORES)
            self.url = self.server.url
            self.client = self.server.client()
            self.own_requests = 0   # this script's INFO requests: each one a read and a write on the server
            self.ps = psutil.Process(self.server.proc.pid)
            self.version = self.client.info("server")["redis_version"]
        except BaseException:
            self.server.kill()
            raise

    def counters(self) -> dict:
        """Commands executed, by name (those run by scripts and inside MULTI/EXEC included),
        and the read and write events on client sockets (at least one each per round trip)."""
        self.own_requests += 1
        info = self.client.info("stats", "commandstats")
        return {"commands": {k.removeprefix("cmdstat_"): v["calls"] for k, v in info.items()
                             if k.startswith("cmdstat_")},
                "reads": info["total_reads_processed"], "writes": info["total_writes_processed"],
                "own_requests": self.own_requests}

    def cpu_seconds(self) -> float:
        return cpu_seconds_of(self.ps)

    def stop(self) -> int | None:
        """SIGTERM: the AOF flushed, then exit 0; its exit code."""
        self.client.close()
        try:
            return self.server.stop(signal.SIGTERM, timeout=30)
        except RuntimeError as e:
            raise BenchError(str(e)) from None


def redis_usage(before: dict, after: dict, jobs_count: int) -> dict:
    """What the server did between two counters() per job: commands by name (this script's
    INFO left out), transactions (EXEC), and round trips at most: the fewer of the read and
    write events, each round trip taking at least one of each (a large request or reply more)."""
    own = after["own_requests"] - before["own_requests"]
    commands = {name: n - before["commands"].get(name, 0) for name, n in after["commands"].items()
                if name != "info" and n > before["commands"].get(name, 0)}
    reads, writes = after["reads"] - before["reads"] - own, after["writes"] - before["writes"] - own
    per_job = lambda n: round(n / jobs_count, 4)  # noqa: E731
    return {"redis_commands_per_job": {name: per_job(n) for name, n in sorted(commands.items(), key=lambda kv: -kv[1])},
            "redis_commands_total_per_job": per_job(sum(commands.values())),
            "redis_transactions_per_job": per_job(commands.get("exec", 0)),
            "redis_reads_per_job": per_job(reads), "redis_writes_per_job": per_job(writes),
            "redis_round_trips_per_job_at_most": per_job(min(reads, writes))}


def settled(server: BenchRedis, before: dict, jobs_count: int) -> dict | None:
    """The server's counters once every job is settled (its XDEL, in its settlement's
    transaction, has run), else None."""
    now = server.counters()
    return now if now["commands"].get("xdel", 0) - before["commands"].get("xdel", 0) >= jobs_count else None


def spread_submit(daemons: list[Daemon], prefix: str, jobs_count: int, batch: int, senders: int) -> None:
    """POST the jobs in arrays of `batch`, the arrays dealt round the daemons, from `senders`
    threads of this script at once."""
    chunks = [(daemons[i % len(daemons)], first) for i, first in enumerate(range(0, jobs_count, batch))]

    def send(mine: list[tuple[Daemon, int]]) -> None:
        for daemon, first in mine:
            daemon.submit(jobs(prefix, first, min(batch, jobs_count - first)))

    with ThreadPoolExecutor(senders) as executor:
        for sent in [executor.submit(send, chunks[i::senders]) for i in range(senders)]:
            sent.result()


def stop_daemons(daemons: list[Daemon]) -> list[int | None]:
    """SIGTERM each (a drain, quick when idle); every one is stopped even if another fails."""
    codes = []
    for daemon in daemons:
        try:
            codes.append(daemon.proc.stop((signal.SIGTERM,)))
        except BenchError:
            codes.append(None)
    return codes


def redis_run(ctx: Context, server: BenchRedis, count: int, jobs_count: int, pool: int, batch: int,
              senders: int) -> Run:
    """`count` gq daemons (journal off, pool `pool`) on a fresh stream (a prefix of its own) of
    `server`, all on both cores with Redis and the target. The jobs are POSTed through the
    daemons' intake; timed from the first POST to the target's receiving the last job."""
    label = f"redis-{count}-daemon{'s' if count > 1 else ''}"
    run = Run(label, jobs_count)
    prefix = f"bench-{ctx.name(label)}-{os.urandom(3).hex()}"
    broker = {"kind": "redis", "url": server.url, "prefix": prefix}
    ctx.target.reset()
    daemons: list[Daemon] = []
    try:
        for i in range(count):
            daemons.append(Daemon(ctx, f"{label}-{i + 1}", cores=BOTH_CORES, pool=pool, maxsize=max(1000, 2 * pool),
                                  url=ctx.target.job_url(), journal=False, broker=broker))
        run.extra["waited_for_quiet_s"] = ctx.quiet()
        cpu = lambda: ([d.cpu_seconds() for d in daemons], server.cpu_seconds(), ctx.target.cpu_seconds())  # noqa: E731
        with ctx.target.beside(ctx, BOTH_CORES):
            before, clock, (gq0, redis0, target0) = server.counters(), CoreClock(ctx, BOTH_CORES), cpu()
            started = time.time()
            spread_submit(daemons, f"{label}-", jobs_count, batch, senders)
            run.extra["intake_s"] = round(time.time() - started, 2)
            wait_for(lambda: ctx.target.count() >= jobs_count, ctx.run_bound(jobs_count),
                     "the target receiving every job", every=0.05)
            run.seconds = round(ctx.target.received_times(jobs_count - 1)[0] - started, 3)
            after = wait_for(partial(settled, server, before, jobs_count), 30, "every job settled in Redis",
                             every=0.05)
            gq1, redis1, target1 = cpu()
            wall = time.time() - started
            gq_cpu = sum(gq1) - sum(gq0)
            run.others_pct = clock.others_pct(gq_cpu + (redis1 - redis0) + (target1 - target0))
        split = [d.succeeded() for d in daemons]
    finally:
        codes = stop_daemons(daemons)
    run.jobs_per_s = round(jobs_count / run.seconds, 1)
    run.cpu_us_per_job = round(gq_cpu / jobs_count * 1e6, 1)
    run.max_rss_mb = max((round(d.proc.max_rss_mb, 1) for d in daemons if d.proc.rusage), default=None)
    run.target_cpu_pct = round((target1 - target0) / wall * 100, 1)
    run.extra.update(daemons=count, prefix=prefix, split=split, exit_codes=codes,
                     redis_cpu_us_per_job=round((redis1 - redis0) / jobs_count * 1e6, 1),
                     **redis_usage(before, after, jobs_count))
    if sum(split) != jobs_count:
        run.fail(f"the daemons' /metrics count {sum(split)} succeeded, expected {jobs_count}")
    if codes != [0] * count:
        run.fail(f"daemon exit codes {codes} after SIGTERM")
    for problem in ctx.target.check(jobs_count):
        run.fail(problem)
    return run


def scenario_redis(ctx: Context) -> dict:
    """1, 2 and 4 daemons on one fresh redis-server, stopped at the end."""
    jobs_count, pool, batch, senders = ctx.scaled(20000), 100, 100, 4
    server = BenchRedis(ctx)
    try:
        runs = [ctx.least_disturbed(partial(redis_run, ctx, server, count, jobs_count, pool, batch, senders))
                for count in (1, 2, 4)]
    finally:
        code = server.stop()
    for run in runs:
        run.extra["x_one_daemon"] = ratio(run.jobs_per_s, runs[0].jobs_per_s)
    if code != 0:
        runs[-1].fail(f"redis-server exit code {code} after SIGTERM")
    return {"jobs": jobs_count, "pool": pool, "batch": batch, "senders": senders,
            "redis": {"version": server.version, "appendfsync": "everysec"}, "runs": [asdict(r) for r in runs]}


# -- the cost of metrics on the job path ----------------------------------------------------

def mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 1) if values else None


def observer_us_per_job(jobs_count: int = 200000) -> float:
    """What the Metrics observer's job-path methods cost per job, timed in this process: a
    Metrics of gq's fed what a job that succeeds feeds it (accepted in chunks of 500, as gq
    batch submits), less the same calls to no-op functions (the call itself stays in gq)."""
    from gq.metrics import Metrics
    from gq.outcome import AttemptResult, Outcome, Verdict

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


def scenario_metrics(ctx: Context) -> dict:
    """A's gq batch (journal on), as shipped and with the Metrics observer's job-path methods
    made no-ops (bench/gq_without_metrics.py), `pairs` times each, in the order shipped,
    no-op, no-op, shipped...: a drift of the machine over the runs cancels out of the means."""
    jobs_count, pool, delay = sizes(ctx, "A")
    url, pairs = ctx.target.job_url(delay), 2
    launchers = [("shipped", GQ), ("no-op", GQ_WITHOUT_METRICS)]
    runs: dict[str, list[Run]] = {kind: [] for kind, _ in launchers}
    in_order = []
    for i in range(1, pairs + 1):
        for kind, launcher in launchers if i % 2 else launchers[::-1]:
            run = ctx.least_disturbed(partial(run_batch, ctx, f"metrics-{kind}-{i}", jobs_count, pool, url, True,
                                              launcher=launcher))
            runs[kind].append(run)
            in_order.append(run)
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


def scenario_profile(ctx: Context) -> dict:
    """The baseline and gq batch (journal on) on scenario A's jobs, under cProfile: own time
    per job by area (gq, requests, urllib3, gevent, stdlib modules, C), and gq's top functions.
    cProfile slows everything several times over, and its clock is the wall clock: compare
    the rows of one report, of runs little disturbed, not the totals with A's."""
    jobs_count, pool, delay = sizes(ctx, "A")
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


RUNNERS: dict[str, Callable[[Context], dict]] = {
    "A": scenario_a, "B": scenario_b, "intake": scenario_intake, "drain": scenario_drain,
    "memory": scenario_memory, "cores": scenario_cores, "redis": scenario_redis, "metrics": scenario_metrics,
    "profile": scenario_profile, "backlog": scenario_backlog,
}


# -- the report ------------------------------------------------------------------------

def delivery_title(name: str, result: dict) -> str:
    limit = result.get("limit_jobs_per_s")
    return (f"Scenario {name}: {result['jobs']:,} jobs, pool {result['pool']}, "
            + (f"target delay {result['delay_s'] * 1000:g} ms (limit {limit:,.0f} jobs/s)" if limit
               else "no target delay"))


def report_delivery(name: str, result: dict) -> str:
    limit = result.get("limit_jobs_per_s")
    title = delivery_title(name, result)
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
    return title + "\n" + table(headers, rows)


def report_cores(result: dict) -> str:
    parts = []
    for name in DELIVERY:
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
        parts.append(f"Cores, {delivery_title(name, part)}\n" + table(headers, rows))
    return ("\n\n".join(parts) + "\n  gq-p2: `gq batch -p 2`, journal on; it and baseline-unpinned run on both "
            "cores, not pinned, and so does the target then: it shares a core with them. baseline, gq-journal: "
            "1 process alone on core 0, the target alone on core 1.\n  jobs/s: job requests arrived at the target "
            "per second, first to last, for every row; x base: to baseline-unpinned; CPU: the process and its "
            "children (gq-p2: the parent and both parts); peak RSS: its largest process.")


def report_redis(result: dict) -> str:
    runs = result["runs"]
    title = (f"Redis: {result['jobs']:,} jobs through 1, 2 and 4 `gq run` daemons (journal off, pool "
             f"{result['pool']} each) sharing one stream of a fresh redis-server {result['redis']['version']} "
             f"(AOF, appendfsync {result['redis']['appendfsync']}); POSTed in arrays of {result['batch']} by "
             f"{result['senders']} senders dealt round the daemons;\n  jobs/s: from the first POST to the "
             f"target's receiving the last job. Nothing pinned: the daemons, Redis and the target share both cores")
    rows = [[r["label"], fmt(r["jobs_per_s"], ",.0f"), fmt(r["extra"].get("x_one_daemon")),
             fmt(r["extra"].get("intake_s")), " / ".join(f"{n:,}" for n in r["extra"].get("split", [])) or "-",
             fmt(r["cpu_us_per_job"], ",.0f"), fmt(r["extra"].get("redis_cpu_us_per_job"), ",.0f"),
             fmt(r["max_rss_mb"], ".1f"), fmt(r["extra"].get("redis_round_trips_per_job_at_most"), ".3f"),
             fmt(r["extra"].get("redis_transactions_per_job"), ".3f"), fmt(r["others_pct"]),
             fmt(r["target_cpu_pct"]), status_cell(r)] for r in runs]
    main = table(["run", "jobs/s", "x 1 daemon", "intake s", "succeeded, per daemon", "gq CPU us/job",
                  "Redis CPU us/job", "peak RSS MB", "round trips/job (at most)", "transactions/job",
                  "others on both cores %", "target CPU %", "status"], rows)
    per_run = [r["extra"].get("redis_commands_per_job", {}) for r in runs]
    names = sorted({n for commands in per_run for n, v in commands.items() if v >= 0.0005},
                   key=lambda n: -max(c.get(n, 0) for c in per_run))
    commands = [[name] + [f"{c.get(name, 0):.3f}" for c in per_run] for name in names]
    commands.append(["all commands"] + [fmt(r["extra"].get("redis_commands_total_per_job"), ".3f") for r in runs])
    return (title + "\n" + main + "\n\n"
            + table(["Redis commands per job (scripts' and transactions' own included)"]
                    + [r["label"] for r in runs], commands))


def report_metrics(result: dict) -> str:
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


def report_intake(result: dict) -> str:
    title = (f"Intake: {result['jobs']:,} jobs POSTed in arrays of {result['batch']} by "
             f"{result['senders']} concurrent senders (delivery parked)")
    rows = [[r["label"], fmt(r["jobs_per_s"], ",.0f"), fmt(r["seconds"], ".2f"), fmt(r["cpu_us_per_job"], ",.0f"),
             fmt(r["max_rss_mb"], ".1f"), fmt(r["extra"].get("journal_rows_after_stop")), fmt(r["others_pct"]),
             status_cell(r)] for r in result["runs"]]
    return title + "\n" + table(["run", "accepted jobs/s", "seconds", "daemon CPU us/job",
                                 "daemon RSS MB (all held)", "journal rows", "others on core0 %", "status"], rows)


def report_drain(result: dict) -> str:
    r = result["runs"][0]
    x = r["extra"]
    return (f"Drain: {result['in_flight']} jobs in flight against a {result['delay_s']:g} s target, then SIGTERM\n"
            f"  SIGTERM to exit: {fmt(r['seconds'], '.3f')} s, exit code {fmt(x.get('exit_code'))}, "
            f"target had {fmt(x.get('target_count_at_sigterm'))} at SIGTERM; log: {fmt(x.get('log'))}\n"
            f"  {status_cell(r)}")


def report_memory(result: dict) -> str:
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


def report_backlog(result: dict) -> str:
    rows = [[f"{r['jobs']:,}", fmt(r["extra"]["journal"]["file_mb"], ",.0f"), fmt(r["seconds"], ".2f"),
             fmt(r["extra"].get("rss_ready_mb")), fmt(r["max_rss_mb"]), fmt(r["extra"].get("delivered_meanwhile")),
             status_cell(r)] for r in result["starts"]]
    starts = ("Backlog: gq run started on a journal of N waiting jobs of about 1 KB (pool 100, queue 1000)\n"
              + table(["waiting", "file MB", "start to /readyz s", "RSS ready MB",
                       f"RSS after {BACKLOG_RUNNING_S:g} s MB", "delivered then", "status"], rows))
    runs = {**result, "runs": result["runs"][len(result["starts"]):]}
    _, empty, waiting = result["mean_x_base_jobs_per_s"]
    return (starts + "\n\n" + report_delivery(f"A, {result['waiting']:,} other jobs waiting for a retry due tomorrow",
                                               runs)
            + f"\n  mean jobs/s x base over {BACKLOG_ROUNDS} rounds: empty journal {fmt(empty)}, "
              f"{result['waiting']:,} waiting {fmt(waiting)}: the backlog costs {fmt(result['backlog_cost_pct'])} %")


def report_profile(result: dict) -> str:
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


def report(name: str, result: dict) -> str:
    if "error" in result:
        return f"{name}: FAILED: {result['error']}"
    if "skipped" in result:
        return f"{name}: skipped: {result['skipped']}"
    if name in ("A", "B"):
        return report_delivery(name, result)
    return {"intake": report_intake, "drain": report_drain, "memory": report_memory, "cores": report_cores,
            "redis": report_redis, "metrics": report_metrics, "profile": report_profile,
            "backlog": report_backlog}[name](result)


# -- main ------------------------------------------------------------------------------

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
                results[name] = RUNNERS[name](ctx)
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
