"""The console's pages, and the API they stand beside, timed against `gq run` on a journal of
1,000,000 jobs.

    python bench/console.py                      # build the journal once (cached), then measure
    python bench/console.py --requests 200 --json

The journal is written in this process through gq's own JournalFile.write, CHUNK jobs a
transaction, each chunk's finished jobs changed in the same transaction to the rows
`state_row` makes (what gq itself writes when a job ends): so gq opens it as its own. It is
kept at --journal (default: $GQ_BENCH_DATA, else ~/.cache/gq-bench, under a name keyed by the
journal's layout and by what is built) and reused; each run works on a copy. No job ever
becomes due: the jobs are succeeded, dead, cancelled, or scheduled years ahead, so the daemon
does nothing but answer. A page the daemon does not serve (the console before it lands)
answers 404: its status is printed like any other's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import requests

JOBS = 1_000_000
CHUNK = 5000                 # jobs per JournalFile.write: one transaction
SPAN_S = 7 * 86400.0         # the jobs were accepted over the week before the build
DEAD = 0.005                 # of the jobs: 5,000 of 1,000,000, each with five attempts
SCHEDULED = 0.01             # run_at five years ahead: never due
CANCELLED = 0.002
KEYED = 0.10                 # of the finished jobs: an ordering key of one of KEYS
KEYS = 2000
WITH_BODY = 0.30             # jobs with a JSON body of about BODY_BYTES (the others have none)
BODY_BYTES = 400
HOSTS = ("orders.shop.example", "billing.example", "crm.example", "mail.example", "search.example",
         "ledger.example")
WEIGHTS = (40, 25, 15, 10, 7, 3)
CLOSED_PORT = 9              # discard: nothing listens there on loopback, and no job runs anyway
BUILD = 1                    # this generator's own version: part of the cache key
READY_TIMEOUT_S = 120.0


# -- the journal, built once

def layout_key(count: int) -> str:
    """A change to the journal's layout or to what is built here names another file."""
    from gq.broker import journal_startup

    what = [journal_startup.VERSION, journal_startup.TABLES, journal_startup.INDEXES, BUILD, count, CHUNK, SPAN_S, DEAD,
            SCHEDULED, CANCELLED, KEYED, KEYS, WITH_BODY, BODY_BYTES, HOSTS, WEIGHTS]
    return f"console-v{journal_startup.VERSION}-{count}-{hashlib.sha256(repr(what).encode()).hexdigest()[:12]}"


def _spec(rng: random.Random, n: int, state: str, far: float) -> dict[str, Any]:
    host = rng.choices(HOSTS, WEIGHTS)[0]
    spec: dict[str, Any] = {"id": f"{rng.getrandbits(64):016x}-{n:07d}",
                            "url": f"http://{host}:{CLOSED_PORT}/hooks/{rng.choice(('order', 'invoice', 'user'))}",
                            "headers": {"X-Tenant": f"tenant-{rng.randrange(300)}"}}
    if rng.random() < WITH_BODY:
        note = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz ", k=BODY_BYTES - 120))
        spec["json"] = {"event": "order.created", "order": n, "customer": rng.randrange(10**6),
                        "total": round(rng.random() * 500, 2), "currency": "EUR", "note": note}
    if state == "scheduled":
        spec["run_at"] = far + rng.random() * 86400
    elif state in ("succeeded", "dead") and rng.random() < KEYED:
        spec["ordering_key"] = f"customer-{rng.randrange(KEYS)}"
    return spec


def _finished(job, state: str, at: float, rng: random.Random) -> tuple:
    """The row gq writes when `job`, accepted `at`, ends in `state`, with its attempts' history."""
    from gq.broker import Entry
    from gq.broker.journal_file import state_row
    from gq.core.lifecycle import State
    from gq.core.outcome import AttemptResult

    if state == "dead":
        history = [AttemptResult(at + 2 ** a, 0.05 + rng.random() / 10, 503, snippet='{"error":"unavailable"}')
                   for a in range(5)]
        entry = Entry(job, State.DEAD, 5, accepted_at=at, history=history, reason="attempts used up (5)")
    elif state == "succeeded":
        entry = Entry(job, State.SUCCEEDED, 1, accepted_at=at,
                      history=[AttemptResult(at + 0.01, 0.02 + rng.random() / 20, 200, snippet='{"ok":true}')])
    else:
        entry = Entry(job, State.CANCELLED, 0, accepted_at=at)
    row = list(state_row(entry))
    row[3] = (entry.history[-1].started + entry.history[-1].duration) if entry.history else at + 60  # finished_at
    return tuple(row)


def build_journal(path: Path, count: int) -> dict:
    """`count` jobs in a new journal file at `path`; what was built."""
    from gq.broker.journal_file import JournalFile
    from gq.core.job import parse

    rng = random.Random(11)
    made = time.time()
    first, far = made - SPAN_S, made + 5 * 365 * 86400.0
    started = time.monotonic()
    states = {"succeeded": 0, "dead": 0, "scheduled": 0, "cancelled": 0}
    journal = JournalFile(str(path))
    journal.db.execute("PRAGMA synchronous=OFF")      # a file built again if lost: no fsync per chunk
    journal.db.execute("PRAGMA cache_size=-262144")   # 256 MB: the id index's random inserts stay in memory
    try:
        for start in range(0, count, CHUNK):
            at = first + SPAN_S * start / count
            jobs, changed = [], []
            for n in range(start, min(count, start + CHUNK)):
                draw = rng.random()
                state = ("dead" if draw < DEAD else "scheduled" if draw < DEAD + SCHEDULED
                         else "cancelled" if draw < DEAD + SCHEDULED + CANCELLED else "succeeded")
                states[state] += 1
                job = parse(_spec(rng, n, state, far), now=at)
                jobs.append(job)
                if state != "scheduled":
                    changed.append(_finished(job, state, at, rng))
            fates, _ = journal.write([(jobs, 0)], count, at, changed, (), (), ())
            if fates[0] is None or not all(fates[0]):
                raise SystemExit(f"build: JournalFile.write refused or found duplicates in chunk {start}")
        rows = dict(journal.db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
        journal.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        journal.close()
    if rows != {s: c for s, c in states.items() if c}:
        raise SystemExit(f"build: the file holds {rows}, expected {states}")
    return {"jobs": count, "states": states, "build_s": round(time.monotonic() - started, 1),
            "file_mb": round(path.stat().st_size / 2**20, 1)}


def cached_journal(path: Path | None, count: int) -> tuple[Path, dict]:
    """The journal at `path` (default: in the bench data dir), built first if it is not there."""
    if path is None:
        directory = Path(os.environ.get("GQ_BENCH_DATA") or Path.home() / ".cache" / "gq-bench")
        path = directory / f"{layout_key(count)}.sqlite3"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        return path, {**json.loads(meta_path.read_text()), "cached": True}
    path.parent.mkdir(parents=True, exist_ok=True)
    building = path.with_suffix(".building")
    for leftover in path.parent.glob(building.name + "*"):
        leftover.unlink()
    print(f"building {count:,} jobs into {path} ...", file=sys.stderr, flush=True)
    meta = build_journal(building, count)
    building.rename(path)
    meta_path.write_text(json.dumps(meta))
    return path, {**meta, "cached": False}


def samples(path: Path) -> dict[str, str]:
    """Real values from the file for the pages' URLs: a dead job's id, an id prefix, a key, a host."""
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        dead_id, accepted = db.execute(  # the middle one of the dead jobs
            "SELECT id, accepted_at FROM jobs WHERE state = 'dead' ORDER BY accepted_at DESC "
            "LIMIT 1 OFFSET (SELECT count(*) / 2 FROM jobs WHERE state = 'dead')").fetchone()
        key = db.execute("SELECT ordering_key FROM jobs WHERE ordering_key IS NOT NULL LIMIT 1").fetchone()[0]
        host = db.execute("SELECT host FROM jobs WHERE host LIKE ? LIMIT 1", (HOSTS[1] + "%",)).fetchone()[0]
    finally:
        db.close()
    return {"id": dead_id, "prefix": dead_id[:6], "key": key, "host": host,
            "since": str(int(accepted - 3600)), "until": str(int(accepted))}


# -- the daemon

@dataclass
class Daemon:
    proc: subprocess.Popen
    api: str
    log: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


def start_daemon(journal: Path, workdir: Path) -> Daemon:
    """`gq run` on `journal`, once /readyz answers 200."""
    config = workdir / "gq.toml"
    config.write_text(f'[api]\nlisten = "127.0.0.1:0"\n[pool]\nsize = 4\n'
                      f'[journal]\npath = "{journal}"\nmin_free_mb = 16\nkeep_succeeded = {10 * 365 * 86400.0}\n')
    log = workdir / "gq.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gq", "run", "-c", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, cwd=workdir)
    deadline = time.monotonic() + READY_TIMEOUT_S
    api = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gq exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if api is None and (m := re.search(r"listening on (http://\S+)", log.read_text())):
            api = m.group(1)
        if api is not None:
            try:
                if requests.get(f"{api}/readyz", timeout=5).status_code == 200:
                    return Daemon(proc, api, log)
            except requests.RequestException:
                pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"gq not ready within {READY_TIMEOUT_S:g}s:\n{log.read_text()[-3000:]}")


# -- timing

def pages(s: dict[str, str]) -> list[tuple[str, str]]:
    """(name, path) of each page timed: the console's, then the API's baselines."""
    job = quote(s["id"], safe="")
    return [
        ("overview", "/ui/"),
        ("jobs", "/ui/jobs"),
        ("jobs: dead", "/ui/jobs?state=dead"),
        ("jobs: id prefix", "/ui/jobs?" + urlencode({"id": s["prefix"]})),
        ("jobs: ordering key", "/ui/jobs?" + urlencode({"key": s["key"]})),
        ("jobs: host", "/ui/jobs?" + urlencode({"host": s["host"]})),
        ("jobs: succeeded, 1 h", "/ui/jobs?" + urlencode({"state": "succeeded", "since": s["since"],
                                                         "until": s["until"]})),
        ("job (dead, 5 attempts)", f"/ui/jobs/{job}"),
        ("dead letters", "/ui/dead"),
        ("scheduled", "/ui/scheduled"),
        ("destinations", "/ui/destinations"),
        ("audit", "/ui/audit"),
        ("confirm: replay every dead job", "/ui/confirm?action=replay&state=dead"),
        ("confirm: cancel every scheduled job", "/ui/confirm?action=cancel&state=scheduled"),
        ("sign-in", "/ui/sign-in"),
        ("API: GET /v1/jobs", "/v1/jobs"),
        ("API: GET /v1/jobs?state=dead", "/v1/jobs?state=dead"),
        ("API: GET /v1/jobs?host=", "/v1/jobs?" + urlencode({"host": s["host"]})),
        ("API: GET /v1/jobs/{id}", f"/v1/jobs/{job}"),
        ("API: GET /v1/status", "/v1/status"),
    ]


def next_page(html: str) -> str | None:
    """The path of the next page a jobs list links to (a `cursor=` link), if it has one."""
    m = re.search(r'href="(/ui/jobs\?[^"]*cursor=[^"]+)"', html)
    return m.group(1).replace("&amp;", "&") if m else None


def time_page(session: requests.Session, api: str, path: str, n: int) -> dict:
    """`n` GETs of `path` on the session's one keep-alive connection, each timed from its
    sending to the last byte of its answer."""
    ms, sizes, statuses = [], [], []
    body = b""
    for _ in range(n):
        t = time.perf_counter()
        r = session.get(api + path, timeout=60)
        body = r.content
        ms.append((time.perf_counter() - t) * 1000)
        sizes.append(len(body))
        statuses.append(r.status_code)
    ms.sort()
    return {"path": path, "status": statuses[-1], "statuses": sorted(set(statuses)), "bytes": sizes[-1],
            "p50_ms": round(statistics.median(ms), 2), "p95_ms": round(ms[min(n - 1, int(0.95 * n))], 2),
            "max_ms": round(ms[-1], 2), "n": n, "body": body}


def measure(api: str, values: dict[str, str], n: int) -> list[dict]:
    results = []
    with requests.Session() as session:
        for name, path in pages(values):
            result = time_page(session, api, path, n)
            results.append({"page": name, **result})
            if name == "jobs" and result["status"] == 200 and (following := next_page(result["body"].decode())):
                results.append({"page": "jobs: next page", **time_page(session, api, following, n)})
    for r in results:
        del r["body"]
    return results


def table(results: list[dict]) -> str:
    head = ("page", "status", "bytes", "p50 ms", "p95 ms")
    rows = [(r["page"], "/".join(map(str, r["statuses"])), f"{r['bytes']:,}", f"{r['p50_ms']:.2f}",
             f"{r['p95_ms']:.2f}") for r in results]
    widths = [max(len(str(x)) for x in column) for column in zip(head, *rows)]
    lines = [head, tuple("-" * w for w in widths), *rows]
    return "\n".join("  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w) for i, (x, w)
                               in enumerate(zip(line, widths))) for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journal", type=Path, help="the built journal, built there first when missing "
                        "(default: $GQ_BENCH_DATA or ~/.cache/gq-bench, named by its layout)")
    parser.add_argument("--jobs", type=int, default=JOBS, help="jobs in the journal (default %(default)s)")
    parser.add_argument("--requests", type=int, default=50, help="GETs of each page (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    parser.add_argument("--in-place", action="store_true", help="run gq on the cached file, not on a copy")
    args = parser.parse_args(argv)
    path, meta = cached_journal(args.journal, args.jobs)
    values = samples(path)
    with tempfile.TemporaryDirectory(prefix="gq-console-bench-") as work:
        workdir = Path(work)
        journal = path
        if not args.in_place:
            journal = workdir / "journal.sqlite3"
            shutil.copyfile(path, journal)
        started = time.monotonic()
        daemon = start_daemon(journal, workdir)
        ready_s = round(time.monotonic() - started, 2)
        try:
            results = measure(daemon.api, values, args.requests)
        finally:
            code = daemon.stop()
        # gq took the file as its own, and answered without an error: else the figures mean little
        problems = [line for line in daemon.log.read_text().splitlines() if re.match(r"(ERROR|CRITICAL) ", line)]
    for line in problems:
        print(f"gq logged: {line}", file=sys.stderr)
    report = {"journal": {**meta, "path": str(path)}, "ready_s": ready_s, "requests": args.requests,
              "exit_code": code, "errors_logged": len(problems), "pages": results}
    if args.json:
        print(json.dumps(report))
    else:
        built = f"cached ({path})" if meta["cached"] else f"built in {meta['build_s']:g} s ({path})"
        print(f"journal: {meta['jobs']:,} jobs {meta['states']}, {meta['file_mb']:,.0f} MB, {built}")
        print(f"gq run: /readyz 200 after {ready_s:g} s; {args.requests} GETs a page on one keep-alive connection")
        print(table(results))
    return 0 if code == 0 and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
