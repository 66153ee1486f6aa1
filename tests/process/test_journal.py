"""Durability: a 202 survives kill -9 and drain timeouts; dead letters can be replayed and purged."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing

from gq.core.lifecycle import LEDGER
from support import NOT_KEPT, earlier_journal, fetch, metric, records, run_gq, wait_for

JOURNAL = {"path": "data/journal.sqlite3"}


def journal_query(workdir, sql: str) -> list[tuple]:
    """Rows from the journal, on a connection closed at once (an open one would keep the
    daemon's write-ahead log from being folded back when it closes)."""
    with closing(sqlite3.connect(workdir / JOURNAL["path"])) as db:
        return db.execute(sql).fetchall()


def journal_states(workdir) -> dict[str, int]:
    return dict(journal_query(workdir, "SELECT state, count(*) FROM jobs GROUP BY state"))


def test_kill_9_loses_no_accepted_job(start_daemon, target, tmp_path):
    daemon = start_daemon(journal=JOURNAL, pool={"size": 50}, queue={"maxsize": 5000})
    accepted = []
    for _ in range(0, 3000, 100):
        response = daemon.post([{"url": target.url(delay=0.2)} for _ in range(100)])
        assert response.status_code == 202
        accepted += response.json()["ids"]
    wait_for(lambda: target.count() >= 300, what="some deliveries before the crash")
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.wait()
    delivered_before = target.count()
    assert delivered_before < len(accepted), "the crash came too late to test anything"

    restarted = start_daemon(journal=JOURNAL, pool={"size": 50}, queue={"maxsize": 5000})
    assert "unfinished job(s) recovered" in restarted.log()
    keys = lambda: {r["key"] for r in target.received()}  # noqa: E731
    wait_for(lambda: keys() >= set(accepted), timeout=60, what="every accepted job delivered")
    stats = target.stats()
    print(f"\n{len(accepted)} accepted, {delivered_before} delivered before kill -9, "
          f"{stats['duplicates']} delivered twice")
    wait_for(lambda: journal_states(tmp_path).get("queued", 0) == 0, what="journal settled")
    # Every job accepted is accounted for, once: by the daemon, and by the file itself.
    wait_for(lambda: restarted.status()["ledger"]["succeeded"] == len(accepted), what="the ledger to settle")
    assert restarted.status()["ledger"] == {**dict.fromkeys(LEDGER, 0), "accepted": len(accepted),
                                            "succeeded": len(accepted)}
    verified = run_gq("verify", "-c", str(restarted.config_path), cwd=tmp_path)
    assert verified.returncode == 0 and f"accepted {len(accepted)} = " in verified.stdout, verified.stderr


def test_a_job_that_kills_gq_during_its_attempts_uses_them_up_and_dies(start_daemon, target, tmp_path):
    # A poison job: gq dies (kill -9, as a crash or a watchdog would) during each of its
    # attempts. Each attempt is on record before it starts, so after max_attempts of them
    # the job is dead, not run again at every start.
    sections = {"journal": JOURNAL, "retry": {"max_attempts": 2}}
    daemon = start_daemon(**sections)
    job_id = daemon.post({"url": target.url(hang=1), "timeout": 60}).json()["id"]
    for attempt in (1, 2):
        wait_for(lambda: target.count() == attempt, what=f"attempt {attempt} in flight")
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.wait()
        assert journal_query(tmp_path, "SELECT state, attempts FROM jobs") == [("running", attempt)]
        daemon = start_daemon(**sections)
    job = wait_for(lambda: (j := daemon.job(job_id))["state"] == "dead" and j, what="the poison job to die")
    print(f"\npoison job after two kills: {job['state']}, {job['attempts']} attempts, {job['last_error']!r}")
    assert job["attempts"] == 2 and job["dead_reason"] == "attempts used up (2)", job
    assert [a["error"][:36] for a in job["history"]] == ["died: gq stopped during attempt 1 (a",
                                                         "died: gq stopped during attempt 2 (a"]
    assert [a["outcome"] for a in job["history"]] == ["unknown", "unknown"]  # each may have reached the target
    assert job["unknown_attempts"] == 2
    assert metric(daemon, "gq_attempts_unknown_total") == 1  # this daemon settled attempt 2 only
    assert target.count() == 2, "the dead job was sent again"
    assert "gq stopped during its attempt 2, which counts as failed" in daemon.log()


def test_an_attempt_gq_died_during_is_shown_as_one_that_may_have_been_delivered(start_daemon, target, tmp_path):
    # gq is killed while the target holds an attempt: the target has the request, gq never
    # has its answer. Restarted, gq settles that attempt as of unknown outcome and sends the
    # job again, so the target gets it twice; the job's view, `gq jobs show`, the console
    # and /metrics say it may have been delivered.
    sections = {"journal": JOURNAL, "retry": {"backoff_base": 0.1, "backoff_max": 0.1}}
    daemon = start_daemon(**sections)
    job_id = daemon.post({"url": target.url(gate="held"), "timeout": 60}).json()["id"]
    wait_for(lambda: target.count() == 1, what="the attempt in flight")
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.wait()
    target.control("/_open?gate=held")  # the next attempt is answered at once
    daemon = start_daemon(**sections)
    job = wait_for(lambda: (j := daemon.job(job_id))["state"] == "succeeded" and j, what="the job delivered again")
    assert len(records(target, job_id)) == 2
    assert [a["outcome"] for a in job["history"]] == ["unknown", "success"] and job["unknown_attempts"] == 1
    [listed] = daemon.get("/v1/jobs", params={"id_prefix": job_id}).json()["jobs"]
    assert listed["unknown_attempts"] == 1
    assert metric(daemon, "gq_attempts_unknown_total") == 1

    for source in (["-c", "gq.toml"], ["--api", daemon.api]):
        shown = run_gq("jobs", "show", job_id, *source, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert "may have been delivered: 1 attempt(s) of unknown outcome (gq stopped during them)" in \
            shown.stdout.splitlines(), shown.stdout
        marked = [line for line in shown.stdout.splitlines() if "(may have been delivered)" in line]
        assert len(marked) == 1 and "unknown (may have been delivered)  died: " in marked[0], shown.stdout

    page = fetch(daemon, f"/ui/jobs/{job_id}")
    assert page.status_code == 200
    assert "<h2 id=\"maybe\">May have been delivered</h2>" in page.text
    assert "<strong>1 attempt of unknown outcome</strong>" in page.text
    assert page.text.count("may have been delivered</span>") == 1  # the attempt gq died during, marked
    listing = fetch(daemon, "/ui/jobs")
    assert listing.status_code == 200 and ">1 unknown</span>" in listing.text


def test_drain_timeout_leaves_the_rest_for_the_next_start(start_daemon, target, tmp_path):
    daemon = start_daemon(journal=JOURNAL, pool={"size": 4}, shutdown={"drain_timeout": 0.5})
    ids = daemon.post([{"url": target.url(delay=0.3)} for _ in range(200)]).json()["ids"]
    wait_for(lambda: daemon.status()["pool_busy"] == 4, what="workers busy")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    # A job's timeout (10 s) outlasts the drain: no queued job is started, none is cut off.
    assert "nothing left in flight" in daemon.log() and "queued left in the journal for the next start" in daemon.log()
    left = journal_states(tmp_path)
    assert left.get("queued", 0) > 100, left

    start_daemon(journal=JOURNAL, pool={"size": 50})
    wait_for(lambda: {r["key"] for r in target.received()} >= set(ids), what="leftovers delivered")


def test_retries_are_recorded_and_shown(start_daemon, target):
    daemon = start_daemon(journal=JOURNAL)
    daemon.post({"id": "flaky", "url": target.url(fail=2, retry_after=0)})
    job = wait_for(lambda: (j := daemon.job("flaky"))["state"] == "succeeded" and j, what="flaky job")
    assert job["attempts"] == 3
    assert [a["status"] for a in job["history"]] == [503, 503, 200]


def test_the_start_of_each_answer_is_kept_in_the_file(start_daemon, target, tmp_path):
    # A dead letter lives in the file only: what GET /v1/jobs/{id} and gq dlq list show of
    # its attempts is read back from there.
    daemon = start_daemon(journal=JOURNAL)
    daemon.post({"id": "gone", "url": target.url(status=404, size=12)})
    wait_for(lambda: daemon.job("gone")["state"] == "dead", what="a dead letter")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    [letter] = map(json.loads, dlq(tmp_path, "list", "--json").stdout.splitlines())
    assert [(a["status"], a["response"]) for a in letter["history"]] == [(404, "x" * 12)]


def dlq(tmp_path, *args):
    return run_gq("dlq", *args, "-c", "gq.toml", cwd=tmp_path)


def test_dead_letters_listed_replayed_and_purged_with_the_daemon_up_and_down(
        start_daemon, target, tmp_path):
    daemon = start_daemon(journal=JOURNAL)
    daemon.post([{"id": "gone", "url": target.url(status=404)},
                 {"id": "flaky", "url": target.url(status=410, fail=1, fail_status=410)}])
    wait_for(lambda: daemon.status()["jobs"]["dead"] == 2, what="two dead letters")

    listed = dlq(tmp_path, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    letters = {d["id"]: d for d in map(json.loads, listed.stdout.splitlines())}
    assert set(letters) == {"gone", "flaky"}
    assert letters["gone"]["last_status"] == 404 and "404" in letters["gone"]["reason"]

    # Up: a replayed job runs again within seconds; a purged one leaves the list.
    before = target.count()
    replayed = dlq(tmp_path, "replay", "gone")
    assert (replayed.returncode, replayed.stdout.split()) == (0, ["gone"]), replayed.stderr + daemon.log()
    wait_for(lambda: target.count() == before + 1, what="the replayed job to run")
    wait_for(lambda: daemon.job("gone")["state"] == "dead", what="it to die again")
    purged = dlq(tmp_path, "purge", "flaky")
    assert (purged.returncode, purged.stdout.split()) == (0, ["flaky"])
    assert daemon.get("/v1/jobs/flaky").status_code == 404

    # Down: replay waits for the next start; purge --all empties the list.
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert dlq(tmp_path, "replay", "--all").stdout.split() == ["gone"]
    assert dlq(tmp_path, "list").stdout == ""
    missing = dlq(tmp_path, "purge", "nope")
    assert missing.returncode == 1 and "nope: no such dead letter" in missing.stderr
    before = target.count()
    daemon = start_daemon(journal=JOURNAL)
    wait_for(lambda: target.count() == before + 1, what="the replayed job to run at start")
    wait_for(lambda: daemon.status()["jobs"]["dead"] == 1, what="it to die again")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert dlq(tmp_path, "purge", "--all", "--yes").stdout.split() == ["gone"]
    assert dlq(tmp_path, "list").stdout == ""


def test_dead_letters_named_together_are_each_replayed_and_purged(start_daemon, target, tmp_path):
    daemon = start_daemon(journal=JOURNAL)
    ids = ["one", "two", "three"]
    daemon.post([{"id": i, "url": target.url(status=404)} for i in ids])
    wait_for(lambda: daemon.status()["jobs"]["dead"] == 3, what="three dead letters")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    replayed = dlq(tmp_path, "replay", "two", "one")
    assert (replayed.returncode, replayed.stdout.split()) == (0, ["one", "two"]), replayed.stderr
    purged = dlq(tmp_path, "purge", "three", "one")
    assert (purged.returncode, purged.stdout.split()) == (1, ["three"]), purged.stderr
    assert journal_states(tmp_path) == {"queued": 2}
    # Each id that is not a dead letter is said once, as a terminal shows it.
    again = dlq(tmp_path, "replay", "one", "\x1b[2Jx", "one", "\x1b[2Jx")
    assert (again.returncode, again.stdout) == (1, ""), again.stderr
    assert again.stderr.splitlines() == ["gq: dlq replay: one: no such dead letter",
                                         "gq: dlq replay: \\x1b[2Jx: no such dead letter"]


def test_a_journal_runs_in_one_process_only_and_is_its_owners(start_daemon, tmp_path):
    first = start_daemon(journal=JOURNAL)
    assert (tmp_path / JOURNAL["path"]).stat().st_mode & 0o077 == 0, "jobs carry secrets"
    second = run_gq("run", "-c", "gq.toml", cwd=tmp_path)
    assert second.returncode == 1
    assert (f"gq: journal: {JOURNAL['path']} is in use by another gq process: gq run (pid {first.pid})\n"
            in second.stderr), second.stderr


def test_batch_resumes_on_its_journal(target, tmp_path):
    (tmp_path / "gq.toml").write_text(
        f'[journal]\npath = "{JOURNAL["path"]}"\n[shutdown]\ndrain_timeout = 0.2\n[pool]\nsize = 5\n')
    jobs = "".join(json.dumps({"url": target.url(delay=0.2), "json": {"n": n}}) + "\n" for n in range(100))
    (tmp_path / "jobs.jsonl").write_text(jobs)
    first = subprocess_batch(tmp_path)
    wait_for(lambda: target.count() >= 10, what="a few deliveries")
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=30)
    summary = json.loads(out.splitlines()[-1])
    assert first.returncode == 1 and summary["remaining"] > 0, summary

    second = run_gq("batch", "-c", "gq.toml", "jobs.jsonl", cwd=tmp_path)
    summary = json.loads(second.stdout.splitlines()[-1])
    assert second.returncode == 0, second.stderr
    assert summary == {**summary, "total": 100, "succeeded": 100, "dead": 0, "remaining": 0}
    assert target.stats()["keys"] == 100


def subprocess_batch(cwd):
    return subprocess.Popen([sys.executable, "-m", "gq", "batch", "-c", "gq.toml", "jobs.jsonl"],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)



def test_journal_size_stays_bounded(start_daemon, target, tmp_path):
    """A daemon keeps succeeded jobs for journal.keep_succeeded seconds: 24,000 more jobs
    through the file leave it far smaller than keeping them would (each takes some 490 bytes
    as a succeeded row with its index entries: 11.8 MB for these). What is left are the jobs
    of the last second or two before the stop, as many as the delivery rate makes them.

    The file does grow to hold the most rows there ever were at once, and SQLite does not
    give that space back: the backlog (kept under 2,000 jobs here) and the succeeded jobs of
    the last keep_succeeded + 1 s, as many as the delivery rate and any stall of the machine
    make them. That high-water mark varies from run to run (0.2 to 3.3 MB of growth seen), so
    the bound is half of what keeping the jobs costs."""
    def run_daemon_on(first: int, count: int) -> int:
        daemon = start_daemon(journal={**JOURNAL, "keep_succeeded": 1}, pool={"size": 200},
                              queue={"maxsize": 2_000})
        for start in range(first, first + count, 500):
            wait_for(lambda: target.stats()["keys"] >= start - 1_500, 60, "the backlog to shrink")
            response = daemon.post([{"id": f"j{n}", "url": target.url(), "json": {"n": n, "pad": "x" * 200}}
                                    for n in range(start, start + 500)])
            assert response.status_code == 202, response.text
        wait_for(lambda: target.stats()["keys"] == first + count, 120, "every job delivered")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
        return sum(f.stat().st_size for f in (tmp_path / "data").glob("journal.sqlite3*"))

    after_12k = run_daemon_on(0, 12_000)
    after_36k = run_daemon_on(12_000, 24_000)
    print(f"\njournal: {after_12k / 1e6:.1f} MB after 12,000 jobs, {after_36k / 1e6:.1f} MB after 36,000")
    assert after_36k - after_12k < 24_000 * 245, "the file grew as if it kept the succeeded jobs"
    states = journal_states(tmp_path)  # those of the last second or so (or none), nothing else
    assert set(states) <= {"succeeded"} and states.get("succeeded", 0) < 12_000, states
    assert target.stats()["duplicates"] == 0


def done_ids(workdir) -> set[str]:
    return {row[0] for row in journal_query(workdir, "SELECT id FROM done")}


def test_a_long_batch_resumes_without_sending_any_succeeded_job_again(target, tmp_path):
    # More jobs than a daemon keeps succeeded (10,000): the batch keeps every id it finished.
    (tmp_path / "gq.toml").write_text(f'[journal]\npath = "{JOURNAL["path"]}"\n[pool]\nsize = 100\n')

    def write_jobs(prefix: str) -> set[str]:
        ids = [f"{prefix}{n}" for n in range(12_000)]
        (tmp_path / "jobs.jsonl").write_text("".join(
            json.dumps({"id": i, "url": target.url(), "json": {"pad": "x" * 200}}) + "\n" for i in ids))
        return set(ids)

    first_ids = write_jobs("a")
    first = subprocess_batch(tmp_path)
    wait_for(lambda: target.count() >= 10_500, 120, "over 10,000 deliveries")
    first.send_signal(signal.SIGTERM)
    out, _ = first.communicate(timeout=60)
    summary = json.loads(out.splitlines()[-1])
    assert first.returncode == 1 and 10_500 <= summary["succeeded"] < 12_000, summary
    assert len(done_ids(tmp_path)) == summary["succeeded"]
    assert "succeeded" not in journal_states(tmp_path), "a batch keeps ids, not jobs"
    recorded = done_ids(tmp_path)
    # An empty batch (say, from a failed pipe) forgets nothing; it runs the jobs left over.
    empty = run_gq("batch", "-c", "gq.toml", "-", input="", cwd=tmp_path, timeout=120)
    assert empty.returncode == 0 and json.loads(empty.stdout.splitlines()[-1])["total"] == 0
    assert done_ids(tmp_path) >= recorded, "only a batch that completes forgets other batches"

    resumed = run_gq("batch", "-c", "gq.toml", "jobs.jsonl", cwd=tmp_path, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.splitlines()[-1])["succeeded"] == 12_000
    stats = target.stats()
    assert stats["keys"] == 12_000 and stats["count"] == 12_000, stats  # each once, none again
    assert done_ids(tmp_path) == first_ids

    # Run again once complete: nothing is sent, all count as succeeded.
    again = run_gq("batch", "-c", "gq.toml", "jobs.jsonl", cwd=tmp_path, timeout=120)
    assert again.returncode == 0 and json.loads(again.stdout.splitlines()[-1])["succeeded"] == 12_000
    assert target.count() == 12_000

    # Other files on the same journal: once one completes, the record holds its ids only,
    # and the file stops growing.
    def complete_batch(prefix: str) -> int:
        ids = write_jobs(prefix)
        done = run_gq("batch", "-c", "gq.toml", "jobs.jsonl", cwd=tmp_path, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done_ids(tmp_path) == ids
        return sum(f.stat().st_size for f in (tmp_path / "data").glob("journal.sqlite3*"))

    after_second = complete_batch("b")
    assert complete_batch("c") < 1.25 * after_second


def test_a_batch_sends_a_repeated_id_once(target, tmp_path):
    (tmp_path / "gq.toml").write_text(f'[journal]\npath = "{JOURNAL["path"]}"\n[pool]\nsize = 2\n')
    lines = [{"id": f"r{n % 3}", "url": target.url(), "json": {"n": n}} for n in range(9)]
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = run_gq("batch", "-c", "gq.toml", "jobs.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["total"] == 3
    assert target.stats()["count"] == 3


def test_a_batch_leaves_a_daemons_finished_jobs_alone(start_daemon, target, tmp_path):
    daemon = start_daemon(journal=JOURNAL)
    assert daemon.post([{"id": f"d{n}", "url": target.url()} for n in range(50)]).status_code == 202
    wait_for(lambda: journal_states(tmp_path).get("succeeded") == 50, what="the daemon's jobs finished")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    (tmp_path / "gq.toml").write_text(f'[journal]\npath = "{JOURNAL["path"]}"\n')
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps({"id": i, "url": target.url()}) + "\n"
                                                 for i in ("d0", "d1", "b0")))
    batch = run_gq("batch", "-c", "gq.toml", "jobs.jsonl", cwd=tmp_path)
    assert batch.returncode == 0 and json.loads(batch.stdout.splitlines()[-1])["succeeded"] == 3
    assert target.count() == 51, "d0 and d1 had succeeded: not sent again"
    assert journal_states(tmp_path) == {"succeeded": 50}, "the daemon's status window is kept"
    again = start_daemon(journal=JOURNAL)
    assert again.post({"id": "d7", "url": target.url()}).status_code == 200  # still a duplicate


def test_dlq_commands_while_jobs_pour_in_leave_every_write_whole(start_daemon, target, tmp_path):
    # A replay is carried out by the daemon between its own writes to the file, never during
    # one: two transactions on one SQLite connection would interleave.
    daemon = start_daemon(journal=JOURNAL, pool={"size": 50}, queue={"maxsize": 5000})
    replays = threading.Thread(target=lambda: [dlq(tmp_path, "replay", "--all") for _ in range(15)])
    replays.start()
    accepted = set()
    for start in range(0, 3000, 100):
        jobs = [{"id": f"p{n}", "url": target.url(status=404 if n % 10 == 0 else 200)}
                for n in range(start, start + 100)]
        response = daemon.post(jobs)
        assert response.status_code == 202, response.text
        accepted |= set(response.json()["ids"])
    replays.join(120)
    wait_for(lambda: target.stats()["keys"] == 3000, 60, "every job delivered")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert "write failed" not in daemon.log() and "cannot read dlq" not in daemon.log(), daemon.log()[-3000:]
    rows = dict(journal_query(tmp_path, "SELECT id, state FROM jobs"))
    assert accepted <= set(rows) and {rows[f"p{n}"] for n in range(0, 3000, 10)} == {"dead"}


def test_a_journal_of_the_earlier_layout_is_upgraded_and_runs_its_jobs(start_daemon, target, tmp_path):
    path = tmp_path / JOURNAL["path"]
    path.parent.mkdir()
    now = time.time()
    earlier_journal.write(str(path), [
        ("waiting", target.url("/waiting"), "queued", now - 10, None, None),
        ("gone", target.url("/gone"), "dead", now - 10, now - 5, "permanent status 404"),
        ("done", target.url("/done"), "succeeded", now - 10, now - 5, None)])
    daemon = start_daemon(journal=JOURNAL)
    assert "upgrading the file's layout for about 3 job(s)" in daemon.log()
    wait_for(lambda: records(target, "waiting"), what="the queued job delivered")
    assert journal_query(tmp_path, "PRAGMA user_version") == [(1,)]
    # Every job has its host now: found by it.
    found = daemon.get("/v1/jobs?host=127.0.0.1&state=dead").json()
    assert [j["id"] for j in found["jobs"]] == ["gone"], found
    # A job that succeeded before had its body dropped: replayed, it is skipped, never sent bare.
    answer = daemon.session.post(f"{daemon.api}/v1/jobs/replay", json={"ids": ["gone", "done"]}, timeout=10).json()
    assert answer["ids"] == ["gone"] and answer["skipped"] == [{"id": "done", "reason": NOT_KEPT}], answer
    wait_for(lambda: records(target, "gone"), what="the dead job replayed")
    assert records(target, "done") == []
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    # Opened again, nothing is upgraded twice.
    again = start_daemon(journal=JOURNAL, workdir=tmp_path)
    assert "upgrading" not in again.log()


def test_gq_verify_checks_the_journals_integrity_and_ledger_daemon_running_or_not(start_daemon, target, tmp_path):
    daemon = start_daemon(journal={**JOURNAL, "keep_succeeded": 0}, retry={"max_attempts": 1})
    config = str(daemon.config_path)
    daemon.post([{"id": "done", "url": target.url()}, {"id": "gone", "url": target.url(status=404)},
                 {"id": "later", "url": target.url(), "delay": 3600}])
    wait_for(lambda: daemon.status()["ledger"]["forgotten"] == 1 and daemon.status()["ledger"]["dead"] == 1,
             what="one job forgotten (keep_succeeded 0), one dead")
    assert daemon.status()["ledger"] == {**dict.fromkeys(LEDGER, 0), "accepted": 3, "scheduled": 1, "dead": 1,
                                         "forgotten": 1}
    running = run_gq("verify", "-c", config, cwd=tmp_path)
    assert running.returncode == 0, running.stderr
    assert running.stdout.strip().endswith("integrity ok; the ledger adds up: accepted 3 = queued 0 + scheduled 1 "
                                           "+ running 0 + retrying 0 + succeeded 0 + dead 1 + cancelled 0 "
                                           "+ forgotten 1"), running.stdout
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert run_gq("verify", "-c", config, cwd=tmp_path).returncode == 0

    # A row deleted behind gq's back: the file's ledger says one job is missing.
    journal_query(tmp_path, "SELECT 1")  # the daemon is gone: the file is ours
    with closing(sqlite3.connect(tmp_path / JOURNAL["path"])) as db, db:
        db.execute("DELETE FROM jobs WHERE id = 'later'")
    unbalanced = run_gq("verify", "-c", config, cwd=tmp_path)
    assert unbalanced.returncode == 1, unbalanced.stdout
    assert "ledger: accepted 3 != queued 0 + scheduled 0" in unbalanced.stderr, unbalanced.stderr

    # A file whose pages are damaged: SQLite's integrity check names it.
    with closing(sqlite3.connect(tmp_path / JOURNAL["path"])) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file itself
        page = db.execute("PRAGMA page_size").fetchone()[0]
    path = tmp_path / JOURNAL["path"]
    data = bytearray(path.read_bytes())
    for start in range(page, len(data), page):     # each page's header but the first's
        data[start:start + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    damaged = run_gq("verify", "-c", config, cwd=tmp_path)
    assert damaged.returncode == 1, damaged.stdout
    assert re.search(r"gq: verify: data/journal.sqlite3: (integrity|cannot read the file)", damaged.stderr), (
        damaged.stderr)
    assert "Traceback" not in damaged.stderr

    missing = run_gq("verify", "-c", config, cwd=tmp_path / "data")  # journal.path is relative: not there
    assert missing.returncode == 1 and "does not exist" in missing.stderr, missing.stderr
    (tmp_path / "memory.toml").write_text('[journal]\npath = ""\n')
    nothing = run_gq("verify", "-c", "memory.toml", cwd=tmp_path)
    assert nothing.returncode == 2 and "journal.path is empty" in nothing.stderr, nothing.stderr


def test_a_succeeded_job_keeps_the_attempt_of_unknown_outcome_in_its_short_history(start_daemon, target, tmp_path):
    # A succeeded job keeps the first and the last two attempts; the attempt gq died during
    # (the target got it: it may have been delivered twice) must stay shown all the same.
    config = {"journal": JOURNAL, "retry": {"backoff_base": 0.05, "backoff_max": 0.1}}
    daemon = start_daemon(**config)
    job = daemon.post({"url": target.url("/flaky", delay=1, fail=3)}).json()["id"]
    wait_for(lambda: target.count() == 2, what="its second attempt at the target")   # the first got 503
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.wait()
    again = start_daemon(**config)
    wait_for(lambda: again.job(job)["state"] == "succeeded", what="the job to succeed")
    outcomes = [a["outcome"] for a in again.job(job)["history"]]
    assert "unknown" in outcomes, outcomes
