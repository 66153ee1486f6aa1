"""The journal's lock, in process: who holds it, and what a runner (gq run, gq batch) does
about it. Each lock here is an open file of its own, so two of them in one process exclude
each other as two processes' would. (The same with real processes and systemd:
tests/process/test_notify.py.)"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys

import gevent
import pytest

from gq.broker.journal import JournalAdmin
from gq.broker.journal_access import UNNAMED_GRACE, Holder, JournalAccess, JournalLock
from gq.broker.journal_file import JournalError, JournalFile
from gq.errors import Stopped


@pytest.fixture
def path(tmp_path) -> str:
    return str(tmp_path / "journal.sqlite3")


def command_holding(path: str, command: str = "gq jobs replay") -> JournalLock:
    lock = JournalLock(path, command, runner=False)
    assert lock.try_acquire()
    return lock


def test_a_runner_waits_for_a_command_and_takes_the_journal_once_it_is_done(path):
    command = command_holding(path)
    told: list[Holder | None] = []
    opening = gevent.spawn(JournalAccess, path, "gq run", lambda holder: told.append(holder) or True)
    while not told:
        gevent.sleep(0.01)
    assert told[0] == Holder(os.getpid(), "gq jobs replay", False)
    assert str(told[0]) == f"gq jobs replay (pid {os.getpid()})"
    assert not opening.ready()
    command.release()
    access = opening.get(timeout=5)
    assert told[-1] is None  # no longer waiting
    assert JournalLock(path, "gq dlq list", runner=False).holder() == Holder(os.getpid(), "gq run", True)
    access.close()
    assert JournalLock(path, "gq dlq list", runner=False).holder() is None  # released: no one named


def test_a_stop_asked_for_ends_the_wait(path):
    command = command_holding(path)
    with pytest.raises(Stopped, match="stopped while waiting for gq jobs replay"):
        JournalAccess(path, "gq run", lambda holder: False)
    assert command.holder() == Holder(os.getpid(), "gq jobs replay", False)  # the command keeps it
    command.release()
    JournalAccess(path).close()  # and the stopped runner left nothing held


def test_a_runner_refuses_a_journal_another_runner_holds(path):
    batch = JournalAccess(path, "gq batch")
    with pytest.raises(JournalError, match=rf"in use by another gq process: gq batch \(pid {os.getpid()}\)"):
        JournalAccess(path)
    batch.close()


def test_a_holder_that_names_no_one_living_is_taken_for_a_runner(path):
    # A gq of an earlier version writes nothing; a holder killed leaves what it wrote, naming a
    # process gone (the kernel released its lock, but here another holds it that has not written).
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for record in (b"", json.dumps({"pid": int(gone.stdout), "command": "gq jobs cancel", "runner": False}).encode()):
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        assert JournalLock(path, "gq run", runner=True).holder() is None
        waited = gevent.spawn(JournalAccess, path)
        gevent.sleep(UNNAMED_GRACE / 2)
        assert not waited.ready()  # it may be one that has only just taken it
        with pytest.raises(JournalError, match=r"in use by another gq process$"):
            waited.get(timeout=UNNAMED_GRACE * 5)
        os.close(fd)


def test_a_command_finding_another_command_names_it(path):
    JournalFile(path).close()
    replay = command_holding(path)
    purge = JournalAdmin(path, command="gq dlq purge")
    held = rf"in use by gq jobs replay \(pid {os.getpid()}\); try again once it is done"
    with pytest.raises(JournalError, match=held):
        purge.run("purge", None)
    purge.close()
    replay.release()
