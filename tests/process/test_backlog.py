"""The journal is the backlog: jobs wait on disk, memory stays flat, look-ups read the file."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import psutil
import requests

from gq.broker.journal_file import JournalFile
from gq.core.job import parse
from support import closed_port, start_target, wait_for

JOURNAL = {"path": "data/journal.sqlite3"}
MB = 2**20
PAD = "x" * 1000  # a job of about 1 KB


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def ready(daemon) -> bool:
    try:
        return daemon.get("/readyz").status_code == 200
    except requests.ConnectionError:
        return False


def fill_journal(path: Path, count: int, url: str) -> None:
    """`count` queued jobs of about 1 KB written straight into a journal file, through gq's
    own layout (as a long outage would have left them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    file = JournalFile(str(path))
    for start in range(0, count, 10_000):
        jobs = [parse({"id": f"b{n}", "url": url, "json": {"n": n, "pad": PAD}})
                for n in range(start, min(count, start + 10_000))]
        file.write([(jobs, 0)], count, time.time(), [], [], [], [])
    file.close()


def test_an_outage_backlog_waits_on_disk_in_constant_memory_and_is_delivered_once(start_daemon, tmp_path):
    port = closed_port()
    url = f"http://127.0.0.1:{port}/hook"
    sections = {"journal": JOURNAL, "retry": {"max_attempts": 1000, "backoff_base": 1, "backoff_max": 3}}
    daemon = start_daemon(**sections)
    wait_for(lambda: ready(daemon), what="gq ready")
    before = rss(daemon.pid)
    for start in range(0, 100_000, 500):
        response = daemon.post([{"id": f"o{n}", "url": url, "json": {"n": n, "pad": PAD}}
                                for n in range(start, start + 500)])
        assert response.status_code == 202, response.text
    flooded = rss(daemon.pid)
    print(f"\nRSS {before / MB:.0f} MB before 100,000 jobs, {flooded / MB:.0f} MB after")
    assert flooded - before < 40 * MB
    assert daemon.status()["jobs"]["queued"] + daemon.status()["jobs"]["retrying"] >= 99_000

    daemon.proc.send_signal(signal.SIGKILL)
    daemon.wait()
    restarted = start_daemon(**sections)
    wait_for(lambda: ready(restarted), what="gq ready again")
    print(f"RSS {rss(restarted.pid) / MB:.0f} MB after a restart on them")
    assert rss(restarted.pid) - before < 40 * MB

    target = start_target(port)
    try:
        wait_for(lambda: target.stats()["keys"] == 100_000, 300, "every accepted job delivered", every=0.5)
        wait_for(lambda: restarted.status()["jobs"]["queued"] == 0, what="the journal settled")
        assert target.stats()["duplicates"] == 0  # nothing was in flight to a live target at the kill
        assert rss(restarted.pid) - before < 40 * MB
    finally:
        target.stop()


def test_the_memory_guard_lets_a_long_backlog_be_delivered(start_daemon, target, tmp_path):
    # Starting is not a load of the backlog: a daemon whose memory limit is far below what
    # 100,000 jobs would take in memory starts, stays under it and delivers (a fifth of them
    # is enough to see: the other test here delivers a whole backlog).
    fill_journal(tmp_path / JOURNAL["path"], 100_000, target.url())
    daemon = start_daemon(journal=JOURNAL, memory={"max_rss_mb": 100})
    wait_for(lambda: ready(daemon), 10, "gq ready")
    wait_for(lambda: target.stats()["keys"] >= 20_000, 120, "jobs delivered", every=0.5)
    assert daemon.proc.poll() is None, daemon.log()
    assert rss(daemon.pid) < 100 * MB
    assert "memory" not in daemon.log().lower()


def spec(workdir: Path, job_id: str) -> dict | None:
    with closing(sqlite3.connect(workdir / JOURNAL["path"])) as db:
        row = db.execute("SELECT spec FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else json.loads(row[0])


def test_a_succeeded_job_is_kept_without_its_body_for_keep_succeeded(start_daemon, target, tmp_path):
    daemon = start_daemon(journal={**JOURNAL, "keep_succeeded": 2})
    assert daemon.post({"id": "k", "url": target.url(), "json": {"order": 1}}).status_code == 202
    wait_for(lambda: daemon.job("k").get("state") == "succeeded", what="k delivered")
    kept = spec(tmp_path, "k")
    assert kept is not None and "json" not in kept and kept["url"] == target.url()

    again = daemon.post({"id": "k", "url": target.url(), "json": {"order": 1}})
    assert (again.status_code, again.json()["duplicates"]) == (200, ["k"])
    wait_for(lambda: daemon.get("/v1/jobs/k").status_code == 404, 10, "k to expire")
    assert spec(tmp_path, "k") is None
    assert daemon.post({"id": "k", "url": target.url(), "json": {"order": 1}}).status_code == 202
    wait_for(lambda: target.count() == 2, what="k delivered again, as a new job")


def test_jobs_waiting_on_disk_are_looked_up_from_the_file(start_daemon, target, tmp_path):
    # One worker, a queue of 2 and a target that holds each request: most jobs wait in the
    # file, and each is found in its state.
    daemon = start_daemon(journal=JOURNAL, pool={"size": 1}, queue={"maxsize": 2})
    ids = daemon.post([{"id": f"w{n}", "url": target.url(hang=30), "timeout": 60} for n in range(50)]).json()["ids"]
    wait_for(lambda: target.count() == 1, what="the first job in flight")
    states = [daemon.job(i)["state"] for i in ids]
    assert (states.count("running"), states.count("queued")) == (1, 49)
    assert daemon.get("/v1/jobs/nope").status_code == 404


def test_a_dead_letter_is_looked_up_from_the_file_after_a_restart(start_daemon, target, tmp_path):
    daemon = start_daemon(journal=JOURNAL)
    daemon.post({"id": "gone", "url": target.url(status=404)})
    wait_for(lambda: daemon.job("gone").get("state") == "dead", what="a dead letter")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    restarted = start_daemon(journal=JOURNAL)
    job = restarted.job("gone")
    assert (job["state"], job["attempts"], job["last_status"]) == ("dead", 1, 404)
    assert [a["status"] for a in job["history"]] == [404]


def test_a_job_the_file_holds_but_cannot_read_back_is_dead_and_holds_up_nothing(start_daemon, target, tmp_path):
    # A row gq cannot make a job of again (an older gq's, a hand edit) becomes a dead letter
    # saying why; the jobs behind it run.
    fill_journal(tmp_path / JOURNAL["path"], 10, target.url())
    with closing(sqlite3.connect(tmp_path / JOURNAL["path"])) as db, db:
        db.execute("INSERT INTO jobs (id, spec, state, due, accepted_at) VALUES "
                   "('bad', '{\"id\": \"bad\", \"url\": \"ftp://x/\"}', 'queued', 0, 0)")
    daemon = start_daemon(journal=JOURNAL)
    wait_for(lambda: target.stats()["keys"] == 10, what="the readable jobs delivered")
    job = daemon.job("bad")
    assert job["state"] == "dead" and "unreadable in the journal" in job["dead_reason"], job
    assert daemon.status()["jobs"]["dead"] == 1
