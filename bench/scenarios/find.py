"""Scenario find (only when named): GET /v1/jobs/{id} and GET /v1/jobs's lists, timed
over loopback against a `gq run` whose journal holds 1,000,000 jobs in mixed states;
its start on that file, and the upgrade of a file of the previous layout.

The journal is built in this process through gq's own JournalFile.write (a transaction
per CHUNK jobs, which share their accepted_at as a group commit's jobs do), once: it is
kept in the bench data dir ($GQ_BENCH_DATA, else ~/.cache/gq-bench), keyed by the
journal's layout (its version and a digest of its statements) and by what is built, and
every run works on a copy of it.

Delivery is parked so that the daemon does nothing but answer: the jobs' hosts are
20 loopback addresses (127.0.0.101 to .120) on SINK_PORT, where this script listens
without ever accepting, and the pool is 1: the daemon's one attempt waits on a connection
that never answers, the queued jobs wait in the file.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import BenchError, Skipped
from harness.context import Context, Run
from harness.gq import Daemon
from harness.proc import CoreClock, request
from harness.report import fmt, status_cell, table
from harness.shared import wait_for

JOBS = 1_000_000                      # jobs in the journal (--quick: 100,000)
MIX = (("succeeded", 0.70), ("dead", 0.10), ("queued", 0.10), ("scheduled", 0.05), ("cancelled", 0.05))
HOSTS = tuple(f"127.0.0.{101 + n}" for n in range(20))   # Zipf-weighted: the first host has most jobs
SINK_PORT = 47_613                    # where the jobs' hosts listen, never accepting
SPAN_S = 3600.0                       # the jobs were accepted over the hour before the build
CHUNK = 1000                          # jobs per JournalFile.write: one transaction, one accepted_at
BODY_BYTES = 200                      # each job's JSON body, about
BUILD = 1                             # the generator's own version: part of the cache key
SLOW_MS = 50.0                        # a query whose p50 is above this is marked SLOW
WALK_PAGES, WALKS = 50, 5             # deep pagination: pages followed by `next`, times over
ROUNDS, WARMUP = 10, 3                # the queries taken in turn over 10 rounds, after 3 requests each
TIMEOUT_S = 120.0                     # for one request, and for a start on an old layout's file

# The previous layout (user_version 0), as gq wrote it before hosts and ordering keys.
OLD_LAYOUT = """
CREATE TABLE jobs (
    id          TEXT PRIMARY KEY,
    spec        TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    due         REAL NOT NULL DEFAULT 0,
    accepted_at REAL NOT NULL,
    finished_at REAL,
    reason      TEXT,
    history     TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE done (id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE control (seq INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL, ids TEXT, result TEXT);
"""
OLD_INDEXES = """
CREATE INDEX jobs_state ON jobs (state, accepted_at);
CREATE INDEX jobs_due ON jobs (due) WHERE state IN ('queued', 'retrying');
CREATE INDEX jobs_expiry ON jobs (finished_at) WHERE state = 'succeeded';
"""


# -- the journal, built once

def data_dir() -> Path:
    return Path(os.environ.get("GQ_BENCH_DATA") or Path.home() / ".cache" / "gq-bench")


def cache_key(count: int) -> str:
    """The layout's version and statements, and what is built: a change to either builds anew."""
    from gq.broker import journal_startup

    layout = f"{journal_startup.VERSION}\0{journal_startup.TABLES}\0{journal_startup.INDEXES}"
    built = json.dumps([BUILD, count, MIX, HOSTS, SINK_PORT, SPAN_S, CHUNK, BODY_BYTES])
    digest = hashlib.sha256((layout + "\0" + built).encode()).hexdigest()[:12]
    return f"find-v{journal_startup.VERSION}-{count}-{digest}"


def free_mb(path: Path) -> float:
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free / 2**20


def estimated_mb(count: int) -> float:
    """The built file's size, about (measured: 0.73 KB a job with the layout of version 1)."""
    return count * 0.75 / 1024


def _state_of(draw: float) -> str:
    total = 0.0
    for state, share in MIX:
        total += share
        if draw < total:
            return state
    return MIX[-1][0]


def _attempt(started: float, status: int, snippet: str) -> list:
    return [started, 0.012, status, None, snippet]


def build_journal(path: Path, count: int) -> dict:
    """`count` jobs written through JournalFile.write, CHUNK a transaction: each chunk's
    jobs added (queued, or scheduled when their run_at is ahead) and, in the same
    transaction, the finished ones' rows changed to their final state as gq writes it."""
    from gq.broker.journal_file import JournalFile
    from gq.core.job import parse

    rng = random.Random(7)
    weights = [1 / (n + 1) for n in range(len(HOSTS))]
    made = time.time()
    first = made - SPAN_S
    scheduled_at = made + 5 * 365 * 86400.0     # far ahead: never due while the cache is used
    body = {"event": "order.created", "order": 0, "customer": 0, "total": 0.0, "currency": "EUR", "note": ""}
    pad = "x" * max(0, BODY_BYTES - len(json.dumps(body, separators=(",", ":"))) - 10)  # its numbers' digits
    started = time.monotonic()
    journal = JournalFile(str(path))
    journal.db.execute("PRAGMA synchronous=OFF")       # a file rebuilt if lost: no fsync per chunk
    journal.db.execute("PRAGMA cache_size=-262144")    # 256 MB: the id index's random inserts stay in memory
    states = dict.fromkeys((state for state, _ in MIX), 0)
    try:
        for start in range(0, count, CHUNK):
            at = first + SPAN_S * start / count
            jobs, changed = [], []
            for n in range(start, min(count, start + CHUNK)):
                state = _state_of(rng.random())
                states[state] += 1
                host = rng.choices(HOSTS, weights)[0]
                spec: dict[str, Any] = {
                    "id": f"{rng.getrandbits(128):032x}", "url": f"http://{host}:{SINK_PORT}/hooks/orders",
                    "headers": {"X-Tenant": f"tenant-{rng.randrange(500)}"},
                    "json": {"event": "order.created", "order": n, "customer": rng.randrange(10**6),
                             "total": round(rng.random() * 500, 2), "currency": "EUR", "note": pad}}
                if state == "scheduled":
                    spec["run_at"] = scheduled_at
                job = parse(spec, now=at)
                jobs.append(job)
                if state == "succeeded":
                    changed.append(("succeeded", 1, at, at + 0.05, None,
                                    json.dumps([_attempt(at + 0.03, 200, '{"ok":true}')]), None, 0, job.id))
                elif state == "dead":
                    history = [_attempt(at + 0.03 + 30 * a, 503, "upstream unavailable") for a in range(5)]
                    changed.append(("dead", 5, at + 120, at + 120.05, "attempts used up (5)",
                                    json.dumps(history), None, 0, job.id))
                elif state == "cancelled":
                    changed.append(("cancelled", 0, at, at + 10, None, "[]", None, 0, job.id))
            fates, _ = journal.write([(jobs, 0)], count, at, changed, (), (), ())
            if fates[0] is None or not all(fates[0]):
                raise BenchError(f"build: JournalFile.write refused or found duplicates in chunk {start}")
        rows = journal.db.execute("SELECT count(*) FROM jobs").fetchone()[0]
        journal.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        journal.close()
    if rows != count:
        raise BenchError(f"build: the file holds {rows} jobs, expected {count}")
    last_chunk = (count - 1) // CHUNK * CHUNK
    return {"jobs": count, "states": states, "hosts": list(HOSTS), "built_at": made,
            "first_accepted": first, "last_accepted": first + SPAN_S * last_chunk / count,
            "build_s": round(time.monotonic() - started, 1), "file_mb": round(path.stat().st_size / 2**20, 1)}


def cached_journal(count: int) -> tuple[Path, dict]:
    """The built journal from the data dir, built first when it is not there (older builds
    of this scenario are removed then, so one file at a time takes the disk)."""
    directory = data_dir()
    key = cache_key(count)
    path, meta_path = directory / f"{key}.sqlite3", directory / f"{key}.json"
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        meta["cached"] = True
        return path, meta
    for old in directory.glob("find-*"):
        old.unlink()
    need = 1.5 * estimated_mb(count)
    if free_mb(directory) < need:
        raise Skipped(f"{free_mb(directory):,.0f} MB free in {directory}, the journal needs about {need:,.0f}")
    building = directory / f"{key}.building.sqlite3"
    for leftover in directory.glob(f"{key}.building.sqlite3*"):
        leftover.unlink()
    meta = build_journal(building, count)
    building.rename(path)
    meta_path.write_text(json.dumps(meta))
    meta["cached"] = False
    return path, meta


def sample_ids(path: Path, count: int, rng: random.Random) -> list[str]:
    """Ids of `count` jobs of the file, drawn at random (rowids are 1 to its row count)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT max(rowid) FROM jobs").fetchone()[0]
        rowids = rng.sample(range(1, rows + 1), count)
        ids = []
        for start in range(0, count, 500):
            chunk = rowids[start:start + 500]
            ids += [r[0] for r in db.execute(f"SELECT id FROM jobs WHERE rowid IN ({','.join('?' * len(chunk))})",
                                             chunk)]
        rng.shuffle(ids)
        return ids
    finally:
        db.close()


def old_layout(source: Path, path: Path) -> dict:
    """A copy of `source`'s jobs in the previous layout (no host, no ordering_key, its
    indexes, user_version 0), as a journal written by the gq before them would be."""
    started = time.monotonic()
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.executescript(OLD_LAYOUT)
        db.execute("ATTACH DATABASE ? AS source", (f"file:{source}?mode=ro",))
        db.execute("BEGIN")
        db.execute("INSERT INTO jobs SELECT id, spec, state, attempts, due, accepted_at, finished_at, reason, history "
                   "FROM source.jobs ORDER BY rowid")
        db.execute("COMMIT")
        db.execute("DETACH DATABASE source")
        db.executescript(OLD_INDEXES)
        db.execute("PRAGMA journal_mode=WAL")
    finally:
        db.close()
    return {"build_s": round(time.monotonic() - started, 1), "file_mb": round(path.stat().st_size / 2**20, 1)}


# -- delivery parked

@contextmanager
def sink() -> Iterator[None]:
    """Every job host's address listening on SINK_PORT, never accepting: a connection is
    made (the kernel's backlog) and its request never answered."""
    sockets = []
    try:
        for host in HOSTS:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, SINK_PORT))
            except OSError as e:
                raise BenchError(f"cannot listen on {host}:{SINK_PORT} (the jobs' hosts): {e}") from None
            s.listen(64)
        yield
    finally:
        for s in sockets:
            s.close()


def daemon_config(ctx: Context) -> dict:
    """pool 1, one attempt that never ends, succeeded jobs kept for good (no expiry)."""
    return {"pool": 1, "maxsize": 100, "url": ctx.target.job_url(), "journal": True, "timeout": 3600.0,
            "extra": {"journal": {"keep_succeeded": 10 * 365 * 86400.0}}}


def start(ctx: Context, label: str, seed: Path | None, **config: Any) -> tuple[Daemon, float]:
    """`gq run` on a copy of `seed` (None: an empty journal); seconds from its process's
    start to /readyz 200, the interpreter's start included."""
    daemon = Daemon(ctx, label, seed=seed, start_timeout=TIMEOUT_S, **daemon_config(ctx), **config)
    wait_for(lambda: request("GET", f"{daemon.api}/readyz")[0] == 200, TIMEOUT_S, "/readyz 200", every=0.01)
    return daemon, round(time.monotonic() - daemon.proc.started, 3)


def stopped(daemon: Daemon, run: Run, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGINT)) -> None:
    """Stopped by `signals`: by default a drain, then at once (the daemon's one attempt never ends)."""
    code = daemon.proc.stop(signals)
    if code != 0:
        run.fail(f"daemon exit code {code} after {' and '.join(signal.Signals(s).name for s in signals)}")


# -- timing

class Client:
    """One keep-alive HTTP/1.1 connection to the daemon: each request timed from its
    sending to the last byte of its answer."""

    def __init__(self, api: str):
        self.host, _, port = api.removeprefix("http://").rpartition(":")
        self.port = int(port)
        self.conn: http.client.HTTPConnection | None = None
        self.reconnects = 0

    def get(self, path: str) -> tuple[int, bytes, float]:
        for again in (False, True):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)
                self.conn.connect()
            try:
                t = time.perf_counter()
                self.conn.request("GET", path)
                response = self.conn.getresponse()
                body = response.read()
                ms = (time.perf_counter() - t) * 1000
            except (http.client.RemoteDisconnected, ConnectionError, http.client.BadStatusLine):
                self.close()
                if again:
                    raise
                self.reconnects += 1
                continue
            if response.will_close:
                self.close()
            return response.status, body, ms
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"n": len(ordered), "min": round(ordered[0], 2), "p50": at(0.50), "p90": at(0.90), "p99": at(0.99),
            "max": round(ordered[-1], 2), "mean": round(statistics.fmean(ordered), 2)}


Check = Callable[[int, bytes], str | None]   # an answer's status and body: what is wrong with it, if anything


@dataclass
class Query:
    name: str
    path: Callable[[int], str]   # the i-th request's path
    count: int
    check: Check
    times: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    cpu_s: float = 0.0           # the daemon's, over this query's requests
    problems: list[str] = field(default_factory=list)

    def figures(self) -> dict:
        return {"query": self.name, **percentiles(self.times), "kb": round(statistics.fmean(self.sizes) / 1024, 1),
                "daemon_cpu_ms": round(self.cpu_s / len(self.times) * 1000, 2), "problems": self.problems}


def timed(ctx: Context, daemon: Daemon, client: Client, queries: list[Query]) -> float | None:
    """Each query's requests, the queries taken in turn over ROUNDS rounds (a tenth of each
    query's requests a round) so that a burst of another load on the machine falls on all of
    them alike, after WARMUP untimed requests each. Returns others' share of the daemon's core."""
    for q in queries:
        for i in range(WARMUP):
            client.get(q.path(-1 - i))
    ctx.quiet()
    clock, cpu = CoreClock(ctx), daemon.cpu_seconds()
    for r in range(ROUNDS):
        for q in queries:
            before = daemon.cpu_seconds()
            for i in range(r * q.count // ROUNDS, (r + 1) * q.count // ROUNDS):
                status, body, ms = client.get(q.path(i))
                q.times.append(ms)
                q.sizes.append(len(body))
                problem = q.check(status, body)
                if problem and len(q.problems) < 3:
                    q.problems.append(f"{q.path(i)}: {problem}")
            q.cpu_s += daemon.cpu_seconds() - before
    return clock.others_pct(daemon.cpu_seconds() - cpu)


def page_of(want: int | None = None, state: str | None = None, one_host: bool = False) -> Check:
    """A check of a list's answer: 200, `want` jobs (None: any), each in `state`, all to one host."""
    def check(status: int, body: bytes) -> str | None:
        if status != 200:
            return f"answered {status}"
        jobs = json.loads(body)["jobs"]
        if want is not None and len(jobs) != want:
            return f"{len(jobs)} jobs, expected {want}"
        if state and any(j["state"] != state for j in jobs):
            return f"a job not {state}"
        if one_host and len({j["request"]["url"].split("/")[2] for j in jobs}) > 1:
            return "jobs to more than one host"
        return None
    return check


def found(status: int, body: bytes) -> str | None:
    return None if status == 200 else f"answered {status}, expected 200"


def missing(status: int, body: bytes) -> str | None:
    return None if status == 404 else f"answered {status}, expected 404"


def walk(client: Client, query: str) -> tuple[list[float], str | None]:
    """The first page of `query` and WALK_PAGES - 1 more, each by the `next` of the one before."""
    times, after = [], None
    for page in range(WALK_PAGES):
        path = f"/v1/jobs?{query}" + (f"&cursor={after}" if after else "")
        status, body, ms = client.get(path)
        if status != 200:
            return times, f"page {page + 1}: answered {status}"
        times.append(ms)
        after = json.loads(body)["next"]
        if after is None:
            return times, f"no page after {page + 1}"
    return times, None


def walks(ctx: Context, daemon: Daemon, client: Client, queries: list[tuple[str, str]]) -> tuple[list[dict],
                                                                                                 float | None]:
    """WALKS walks of WALK_PAGES pages of each query, the queries in turn: each page's
    median time, and the last ten pages' median against the first ten's."""
    for _, query in queries:
        walk(client, query)   # warm-up
    ctx.quiet()
    clock, cpu = CoreClock(ctx), daemon.cpu_seconds()
    per_page: dict[str, list[list[float]]] = {name: [[] for _ in range(WALK_PAGES)] for name, _ in queries}
    problems: dict[str, list[str]] = {name: [] for name, _ in queries}
    for _ in range(WALKS):
        for name, query in queries:
            times, problem = walk(client, query)
            for page, ms in enumerate(times):
                per_page[name][page].append(ms)
            if problem and len(problems[name]) < 3:
                problems[name].append(problem)
    others = clock.others_pct(daemon.cpu_seconds() - cpu)
    out = []
    for name, _ in queries:
        medians = [round(statistics.median(t), 2) if t else None for t in per_page[name]]
        first = [m for m in medians[:10] if m is not None]
        last = [m for m in medians[-10:] if m is not None]
        out.append({"query": name, "pages": WALK_PAGES, "walks": WALKS, "page_p50_ms": medians,
                    "first10_p50": round(statistics.median(first), 2) if first else None,
                    "last10_p50": round(statistics.median(last), 2) if last else None,
                    "max": round(max((max(t) for t in per_page[name] if t), default=0), 2),
                    "problems": problems[name]})
    return out, others


def lookups(ctx: Context, daemon: Daemon, meta: dict, hits: list[str], rng: random.Random) -> dict:
    """The queries, then the walks, on one keep-alive connection."""
    client = Client(daemon.api)
    scale = 10 if ctx.quick else 1
    first, last = meta["first_accepted"], meta["last_accepted"]
    windows = [first + rng.random() * (last - first - 300) for _ in range(400)]
    misses = [f"{rng.getrandbits(128):032x}" for _ in range(300)]
    host = HOSTS[0]

    def by_index(values: list, template: str) -> Callable[[int], str]:
        return lambda i: template.format(values[i % len(values)])

    def window(i: int) -> str:
        since = windows[i % len(windows)]
        return f"/v1/jobs?since={since:.3f}&until={since + 300:.3f}&limit=100"

    queries = [Query(name, path, max(ROUNDS, count // scale), check) for name, path, count, check in (
        ("GET /v1/jobs/{id} (hit)", by_index(hits, "/v1/jobs/{}"), 1000, found),
        ("GET /v1/jobs/{id} (miss)", by_index(misses, "/v1/jobs/{}"), 300, missing),
        ("?limit=100", lambda i: "/v1/jobs?limit=100", 200, page_of(100)),
        ("?limit=1000", lambda i: "/v1/jobs?limit=1000", 30, page_of(1000)),
        ("?state=dead", lambda i: "/v1/jobs?state=dead&limit=100", 200, page_of(100, "dead")),
        ("?state=queued", lambda i: "/v1/jobs?state=queued&limit=100", 200, page_of(100, "queued")),
        ("?host=… (each of 20)", by_index(list(HOSTS), "/v1/jobs?host={}&limit=100"), 200,
         page_of(100, one_host=True)),
        ("?host=…&state=succeeded", by_index(list(HOSTS), "/v1/jobs?host={}&state=succeeded&limit=100"), 200,
         page_of(100, "succeeded", one_host=True)),
        ("?since=…&until=… (5 min)", window, 200, page_of(100)))]
    others = timed(ctx, daemon, client, queries)
    walked, walks_others = walks(ctx, daemon, client, [
        ("all (jobs_accepted)", "limit=100"), ("state=dead (jobs_state)", "state=dead&limit=100"),
        ("state=queued (3 states merged)", "state=queued&limit=100"),
        (f"host={host} (9 states merged)", f"host={host}&limit=100")])
    client.close()
    return {"queries": [q.figures() for q in queries], "queries_others_pct": others,
            "walks": walked, "walks_others_pct": walks_others, "reconnects": client.reconnects}


# -- the scenario

def run(ctx: Context) -> dict:
    from gq.broker.journal_file import JournalFile

    count = ctx.scaled(JOBS)
    rng = random.Random(11)
    seed, meta = cached_journal(count)
    need = 3 * meta["file_mb"]   # the run's copy; then the old layout's file and its upgrade's WAL
    if free_mb(ctx.workdir) < need:
        raise Skipped(f"{free_mb(ctx.workdir):,.0f} MB free in {ctx.workdir}, a run needs about {need:,.0f}")
    hits = sample_ids(seed, min(count, 1000), rng)
    runs: list[Run] = []

    empty = Run("start-empty", 0)
    with sink():
        daemon, empty.seconds = start(ctx, empty.label, None)
        # Nothing in flight: its drain may end before a second SIGINT, which would then find
        # the signal's default action back and kill it.
        stopped(daemon, empty, (signal.SIGINT,))
        runs.append(empty)

        main = Run(f"find-{count}", count)
        runs.append(main)
        ctx.target.reset()
        copied = time.monotonic()
        daemon, main.seconds = start(ctx, main.label, seed)
        main.extra["copy_s"] = round(daemon.proc.started - copied, 1)
        main.extra["rss_ready_mb"] = round(daemon.rss_mb(), 1)
        try:
            main.extra["recovered_log"] = daemon.log_has(r"\d+ unfinished job\(s\) recovered")
            timings = lookups(ctx, daemon, meta, hits, rng)
            main.max_rss_mb = round(daemon.rss_mb(), 1)
        finally:
            stopped(daemon, main)
        for q in timings["queries"] + timings["walks"]:
            for problem in q["problems"]:
                main.fail(f"{q['query']}: {problem}")
        main.others_pct = max(timings["queries_others_pct"] or 0, timings["walks_others_pct"] or 0)
        assert daemon.journal is not None
        # open + recover in this process, on the file the daemon left (its taken jobs put back)
        t = time.monotonic()
        journal = JournalFile(str(daemon.journal))
        opened = time.monotonic()
        journal.recover()
        main.extra["open_s"] = round(opened - t, 3)
        main.extra["recover_s"] = round(time.monotonic() - opened, 3)
        journal.close()
        shutil.rmtree(daemon.journal.parent)

        upgrade = Run(f"upgrade-{count}", count)
        runs.append(upgrade)
        old = ctx.workdir / "old-layout.sqlite3"
        upgrade.extra["old_file"] = old_layout(seed, old)
        daemon, upgrade.seconds = start(ctx, upgrade.label, old, move_seed=True)
        try:
            status, body = request("GET", f"{daemon.api}/v1/jobs?host={HOSTS[-1]}&limit=5")
            if status != 200 or len(body["jobs"]) != 5:
                upgrade.fail(f"after the upgrade ?host= answered {status}: {str(body)[:200]}")
        finally:
            stopped(daemon, upgrade)
        upgrade.extra["upgraded_file_mb"] = round(daemon.journal.stat().st_size / 2**20, 1)
        shutil.rmtree(daemon.journal.parent)
    return {"jobs": count, "journal": {**meta, "path": str(seed)}, **timings,
            "start_s": main.seconds, "start_empty_s": empty.seconds, "open_s": main.extra["open_s"],
            "recover_s": main.extra["recover_s"], "upgrade_start_s": upgrade.seconds,
            "slow": [q["query"] for q in timings["queries"] if q["p50"] > SLOW_MS],
            "runs": [asdict(r) for r in runs]}


def report(result: dict) -> str:
    j = result["journal"]
    mix = ", ".join(f"{share * 100:g} % {state}" for state, share in MIX)
    title = (f"Find: GET /v1/jobs on a journal of {result['jobs']:,} jobs ({mix}; {len(HOSTS)} hosts; accepted over "
             f"{SPAN_S / 3600:g} h; bodies ~{BODY_BYTES} B), gq run on core 0, pool 1 (delivery parked), "
             f"one keep-alive client on core 1")
    built = (f"journal: {j['file_mb']:,.0f} MB, " + (f"cached ({j['path']})" if j["cached"] else
                                                       f"built in {j['build_s']:g} s ({j['path']})"))
    rows = [[q["query"], str(q["n"]), fmt(q["min"], ".2f"), fmt(q["p50"], ".2f"), fmt(q["p90"], ".2f"),
             fmt(q["p99"], ".2f"), fmt(q["max"], ".2f"), fmt(q["kb"]), fmt(q["daemon_cpu_ms"], ".2f"),
             "FAILED" if q["problems"] else ("SLOW" if q["p50"] > SLOW_MS else "ok")] for q in result["queries"]]
    queries = (f"the queries in turn, {ROUNDS} rounds; others on core 0 meanwhile: "
               f"{fmt(result['queries_others_pct'])} %\n"
               + table(["query (limit 100 unless said)", "samples", "min ms", "p50 ms", "p90 ms", "p99 ms", "max ms",
                        "KB/answer", "daemon CPU ms/req", ""], rows))
    walk_rows = [[w["query"]] + [fmt(w["page_p50_ms"][p - 1], ".2f") for p in (1, 10, 25, 50)]
                 + [fmt(w["first10_p50"], ".2f"), fmt(w["last10_p50"], ".2f"), fmt(w["max"], ".2f"),
                    "FAILED" if w["problems"] else "ok"] for w in result["walks"]]
    walks_ = (f"Deep pagination: {WALK_PAGES} pages of 100 by `next`, {WALKS} walks each, in turn; p50 ms of each "
              f"page; others on core 0 meanwhile: {fmt(result['walks_others_pct'])} %\n"
              + table(["walk", "page 1", "page 10", "page 25", "page 50", "pages 1-10", "pages 41-50", "max ms", ""],
                      walk_rows))
    runs = {r["label"]: r for r in result["runs"]}
    main = runs[f"find-{result['jobs']}"]
    upgrade = runs[f"upgrade-{result['jobs']}"]
    starts = (f"start: process start to /readyz 200: {fmt(result['start_s'], '.2f')} s on the {result['jobs']:,}-job "
              f"journal, {fmt(result['start_empty_s'], '.2f')} s on an empty one; in process JournalFile() "
              f"{fmt(result['open_s'], '.3f')} s + recover() {fmt(result['recover_s'], '.3f')} s; RSS ready "
              f"{fmt(main['extra'].get('rss_ready_mb'))} MB, after the queries {fmt(main['max_rss_mb'])} MB\n"
              f"upgrade: a file of the previous layout (user_version 0, {upgrade['extra']['old_file']['file_mb']:,.0f} "
              f"MB): process start to /readyz 200 {fmt(result['upgrade_start_s'], '.2f')} s (hosts read from "
              f"every URL, new indexes built); {upgrade['extra'].get('upgraded_file_mb', 0):,.0f} MB after")
    status = "; ".join(f"{label}: {status_cell(r)}" for label, r in runs.items())
    slow = (f"\nSLOW (p50 > {SLOW_MS:g} ms): {', '.join(result['slow'])}" if result["slow"] else "")
    return "\n".join([title, built, queries, "", walks_, "", starts, status]) + slow
