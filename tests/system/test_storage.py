"""Intake pushes back, losing nothing: a backlog bound, a disk that fills, a failed write, a
journal file deleted under the daemon. Real daemon, real SQLite file, a real small tmpfs."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import requests

from support import Daemon, final_state, rejected, samples, unavailable, wait_for

JOB_BYTES = 1024


def jobs(target, count: int, tag: str = "") -> list[dict]:
    return [{"url": target.url(f"/{tag}"), "json": {"pad": "x" * JOB_BYTES}} for _ in range(count)]


def refusal(response: requests.Response, status: int, reason_text: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers.get("Retry-After", "").isdigit(), response.headers
    assert reason_text in response.json()["error"], response.json()


def delivered_all(target, ids: list[str]) -> None:
    wait_for(lambda: {r["key"] for r in target.received()} >= set(ids), timeout=60,
             what=f"{len(ids)} accepted jobs delivered")


# -- the backlog bound

@pytest.mark.parametrize("journal", ["data/journal.sqlite3", ""], ids=["journal", "memory"])
def test_past_max_backlog_intake_answers_429_and_every_202_is_delivered(start_daemon, target, journal):
    daemon = start_daemon(journal={"path": journal, "max_backlog": 20}, retry={"max_attempts": 1000})
    target.control("/_down")
    accepted = daemon.post(jobs(target, 20)).json()["ids"]
    refusal(daemon.post(jobs(target, 1)), 429, "backlog full: 20 unfinished jobs, journal.max_backlog (20)")
    assert rejected(daemon, "backlog_full") == 1
    target.control("/_up")
    delivered_all(target, accepted)
    wait_for(lambda: daemon.post(jobs(target, 1)).status_code == 202, what="room again once delivered")


# -- a disk that fills

@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 4 MB mounted on tmp_path/disk (root only); resized with .resize(MB)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        unavailable("mounting a tmpfs needs root and mount(8)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        unavailable(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")

    class Disk:
        path = disk

        @staticmethod
        def resize(mb: int) -> None:
            subprocess.run(["mount", "-o", f"remount,size={mb}m", str(disk)], check=True)

    yield Disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_disk_that_fills_turns_intake_to_503_and_it_resumes_when_space_returns(start_daemon, target, small_disk):
    daemon = start_daemon(journal={"path": str(small_disk.path / "journal.sqlite3"), "min_free_mb": 1},
                          retry={"max_attempts": 1000})
    target.control("/_down")  # every job waits in the journal: it grows until the disk is full
    accepted: list[str] = []
    for _ in range(200):
        response = daemon.post(jobs(target, 50))
        if response.status_code != 202:
            break
        accepted += response.json()["ids"]
    refusal(response, 503, "journal")
    assert "storage" in rejected_reasons(daemon)
    assert daemon.get("/readyz").status_code == 503
    print(f"\n4 MB disk: {len(accepted)} jobs of 1 KB accepted before intake turned to 503: "
          f"{response.json()['error']}")
    assert accepted, "nothing was accepted before the disk filled"

    small_disk.resize(64)
    wait_for(lambda: daemon.get("/readyz").status_code == 200, what="ready again once space returned")
    later = daemon.post(jobs(target, 10))
    assert later.status_code == 202, later.text
    target.control("/_up")
    delivered_all(target, accepted + later.json()["ids"])
    assert "Traceback" not in daemon.log()


def rejected_reasons(daemon: Daemon) -> set[str]:
    return {dict(labels)["reason"] for (name, labels), value in samples(daemon).items()
            if name == "gq_intake_rejected_total" and value}


def test_a_duplicate_is_answered_only_for_a_job_that_is_on_disk(start_daemon, target, small_disk):
    # min_free_mb 0 and a disk filled to the last byte: the guard lets adds through and the
    # commit itself fails. Four concurrent POSTs of one id: none may be told "duplicate" of
    # a job whose commit failed.
    daemon = start_daemon(journal={"path": str(small_disk.path / "journal.sqlite3"), "min_free_mb": 0})
    filler = small_disk.path / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    answers: list[requests.Response] = []
    for round_ in range(10):
        job = {"id": f"same-{round_}", "url": target.url("/dup"), "json": {"pad": "x" * 100_000}}
        threads = [threading.Thread(target=lambda job=job: answers.append(daemon.post(job))) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    statuses = sorted(a.status_code for a in answers)
    print(f"\nfull disk, 4 concurrent POSTs of each of 10 ids: answers {statuses}")
    assert 200 not in statuses, [a.text for a in answers if a.status_code == 200]
    assert set(statuses) <= {202, 503}
    accepted = {a.json()["id"] for a in answers if a.status_code == 202}
    filler.unlink()
    delivered_all(target, sorted(accepted))


def test_a_journal_deleted_under_the_daemon_is_noticed_and_nothing_is_answered_202_after(
        start_daemon, target, tmp_path):
    path = tmp_path / "data" / "journal.sqlite3"
    daemon = start_daemon(journal={"path": str(path)})
    assert daemon.post(jobs(target, 5)).status_code == 202
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        name.unlink(missing_ok=True)
    answers = [daemon.post(jobs(target, 1)).status_code for _ in range(20)]
    assert answers == [503] * 20, answers
    refusal(daemon.post(jobs(target, 1)), 503, "deleted or replaced under the running daemon")
    assert daemon.get("/readyz").status_code == 503
    assert "was deleted or replaced under the running daemon" in daemon.log()


# -- an operator's change on a full disk

def fill_to_the_last_byte(disk) -> Path:
    filler = disk.path / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    return filler


def test_on_a_full_disk_a_cancel_or_replay_of_a_job_in_the_file_is_refused_503_then_done(
        start_daemon, target, small_disk):
    daemon = start_daemon(journal={"path": str(small_disk.path / "journal.sqlite3"), "min_free_mb": 0})
    later = daemon.post({"url": target.url("/later"), "delay": 3600}).json()["id"]   # waits in the file
    gone = daemon.post({"url": target.url("/gone", status=404)}).json()["id"]
    final_state(daemon, gone)
    filler = fill_to_the_last_byte(small_disk)
    refusal(daemon.delete(f"/v1/jobs/{later}"), 503, "journal")
    refusal(daemon.session.post(f"{daemon.api}/v1/jobs/replay", json={"ids": [gone]}, timeout=30), 503, "journal")
    filler.unlink()
    assert daemon.delete(f"/v1/jobs/{later}").status_code == 200
    replayed = daemon.session.post(f"{daemon.api}/v1/jobs/replay", json={"ids": [gone]}, timeout=30)
    assert replayed.json()["ids"] == [gone], replayed.text
    assert "Traceback" not in daemon.log()


def test_an_attempt_whose_start_cannot_be_written_is_not_sent(start_daemon, target, small_disk):
    # One worker, held by the first job (a gate): the second waits in memory, queued. The disk
    # fills, the gate opens: the second's start cannot be written, so it is not sent (sent, a
    # kill -9 would send it again at the next start, never shown as of unknown outcome).
    config = {"journal": {"path": str(small_disk.path / "journal.sqlite3"), "min_free_mb": 0}, "pool": {"size": 1}}
    daemon = start_daemon(**config)
    first = daemon.post({"url": target.url("/first", gate="g")}).json()["id"]
    second = daemon.post({"url": target.url("/second")}).json()["id"]
    wait_for(lambda: target.count() == 1, what="the first job at the target")
    filler = fill_to_the_last_byte(small_disk)
    target.control("/_open?gate=g")
    wait_for(lambda: f"job {second}: the start of its attempt could not be written" in daemon.log(),
             what="the second job handed back, its start not written")
    assert [r for r in target.received() if r["path"] == "/second"] == []
    daemon.stop()   # kill -9, the disk still full
    filler.unlink()
    again = start_daemon(**config)
    for job_id in (first, second):
        wait_for(lambda: again.job(job_id)["state"] == "succeeded", what=f"{job_id} delivered after the restart")
    assert len([r for r in target.received() if r["path"] == "/second"]) == 1
    # The first's success was never written: it was sent again, and says it may have been delivered.
    assert again.job(first)["unknown_attempts"] == 1


def test_a_cancel_answered_200_on_a_full_disk_holds_after_a_kill(start_daemon, target, small_disk):
    # One worker, held by the first job (a gate): the second waits in memory, queued. Its
    # cancel is answered only once written; the disk full, the write fails: a 200 then would
    # be a promise a kill -9 breaks (the job ran at the next start).
    config = {"journal": {"path": str(small_disk.path / "journal.sqlite3"), "min_free_mb": 0}, "pool": {"size": 1}}
    daemon = start_daemon(**config)
    daemon.post({"url": target.url("/first", gate="g")})
    second = daemon.post({"url": target.url("/second")}).json()["id"]
    wait_for(lambda: target.count() == 1, what="the first job at the target")
    filler = fill_to_the_last_byte(small_disk)
    answer = daemon.delete(f"/v1/jobs/{second}")
    assert answer.status_code in (200, 503), answer.text
    daemon.stop()   # kill -9, the disk still full
    filler.unlink()
    again = start_daemon(**config)
    target.control("/_open?gate=g")
    ended = wait_for(lambda: (job := again.job(second))["state"] in ("succeeded", "dead", "cancelled") and job,
                     what="the second job to end")
    sent = [r for r in target.received() if r["path"] == "/second"]
    if answer.status_code == 200:
        assert (ended["state"], sent) == ("cancelled", []), ended
    else:
        refusal(answer, 503, "journal")
