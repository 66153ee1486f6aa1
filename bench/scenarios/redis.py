"""Scenario redis: 20,000 jobs through 1, 2 and 4 `gq run` daemons sharing a Redis stream of a
fresh redis-server (AOF everysec): jobs/s, split, Redis commands per job; skipped when there
is no redis-server and it cannot be installed."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from functools import partial

import psutil

from harness import BenchError, Skipped
from harness.context import Context, Run
from harness.gq import Daemon, jobs
from harness.measure import ratio
from harness.proc import BOTH_CORES, CoreClock, cpu_seconds_of, let_run_on
from harness.report import fmt, status_cell, table
from harness.shared import RedisServer, find_redis_server, wait_for


class BenchRedis:
    """The tests' RedisServer (tests/support/redis_server.py), found or installed as the tests do,
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


def run(ctx: Context) -> dict:
    """1, 2 and 4 daemons on one fresh redis-server, stopped at the end."""
    jobs_count, pool, batch, senders = ctx.scaled(20000), 100, 100, 4
    server = BenchRedis(ctx)
    try:
        runs = [ctx.least_disturbed(partial(redis_run, ctx, server, count, jobs_count, pool, batch, senders))
                for count in (1, 2, 4)]
    finally:
        code = server.stop()
    for one in runs:
        one.extra["x_one_daemon"] = ratio(one.jobs_per_s, runs[0].jobs_per_s)
    if code != 0:
        runs[-1].fail(f"redis-server exit code {code} after SIGTERM")
    return {"jobs": jobs_count, "pool": pool, "batch": batch, "senders": senders,
            "redis": {"version": server.version, "appendfsync": "everysec"}, "runs": [asdict(r) for r in runs]}


def report(result: dict) -> str:
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
