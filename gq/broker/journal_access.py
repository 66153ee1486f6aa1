"""One process's hold on a journal file: the lock that makes it the file's one runner, a
connection for writing and one for look-ups (so that look-ups do not wait for the
writer's commits), and calls to each in gevent's threadpool, one at a time per
connection: SQLite transactions of two threads on one connection would interleave.

The lock's holder writes who it is into the lock file: a runner (`gq run`, `gq batch`),
which runs the journal's jobs, or a command (`gq dlq`, `gq jobs`), which holds the lock only
while it changes a file no runner holds. A runner that finds another runner there refuses
to start (two runners never share a journal); one that finds a command waits for it, so
that an admin command never keeps the daemon from starting."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.lock import BoundedSemaphore

from gq.broker.journal_file import JournalFile, JournalInUse
from gq.errors import Stopped

log = logging.getLogger("gq.journal")

LOCK_POLL = 0.1        # seconds between looks at a lock a command holds (a flock that waits cannot be stopped)
WAIT_LOG_EVERY = 10.0  # seconds between log lines naming the command a runner waits for
UNNAMED_GRACE = 1.0    # seconds a holder may take to name itself (it writes just after it locks)


def _captured(function: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
    """Run in a thread of the pool: an exception comes back as a value (gevent's threadpool
    would also print it, with a traceback, as an error of its own)."""
    try:
        return True, function(*args)
    except Exception as e:  # raised again by the caller, in its greenlet
        return False, e


def _result(captured: tuple[bool, Any]) -> Any:
    ok, value = captured
    if not ok:
        raise value
    return value


@dataclass(frozen=True)
class Holder:
    """Who holds a journal's lock, as it wrote in the lock file."""
    pid: int
    command: str   # "gq run", "gq jobs replay", ...
    runner: bool   # runs the journal's jobs (gq run, gq batch), not a command that changes it

    def __str__(self) -> str:
        return f"{self.command} (pid {self.pid})"


# Told, at each look while a command holds the journal, which one (and None once the runner
# has the lock after it); returns whether to go on waiting (False: a stop was asked for).
Waiting = Callable[[Holder | None], bool]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


class JournalLock:
    """An exclusive lock on `PATH.lock`, held by the one process that runs the journal's jobs,
    or by a command that changes the file while none does. The kernel lets it go when its
    holder dies, however it dies."""

    def __init__(self, path: str, command: str, runner: bool):
        self.path = path + ".lock"
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        self.me = Holder(os.getpid(), command, runner)
        self.held = False

    def try_acquire(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self.held = True
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(dataclasses.asdict(self.me)).encode() + b"\n", 0)
        return True

    def holder(self) -> Holder | None:
        """Who holds the lock; None when that cannot be told: a holder that has not written
        yet (it just took it), one gone (what it wrote left behind), or a gq of an earlier
        version (which wrote nothing)."""
        try:
            record = json.loads(os.pread(self.fd, 4096, 0).partition(b"\n")[0])
            holder = Holder(int(record["pid"]), str(record["command"]), record["runner"] is True)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return holder if _alive(holder.pid) else None

    def release(self) -> None:
        if self.held:  # left behind, what it wrote would name a holder that is gone
            os.ftruncate(self.fd, 0)
        os.close(self.fd)


def _take(lock: JournalLock, path: str, waiting: Waiting | None) -> None:
    """Take the lock for a runner. Held by a command: wait, polled on the hub, for as long
    as the command holds it (one that hangs is named in the log every WAIT_LOG_EVERY seconds,
    for an operator to end it), unless `waiting` says stop (Stopped). Held by another runner,
    or by a holder that names no one for UNNAMED_GRACE: JournalError."""
    started = time.monotonic()
    unnamed_since: float | None = None
    logged = float("-inf")
    while not lock.try_acquire():
        now = time.monotonic()
        holder = lock.holder()
        if holder is None:
            unnamed_since = now if unnamed_since is None else unnamed_since
            if now - unnamed_since >= UNNAMED_GRACE:
                raise JournalInUse(f"journal: {path} is in use by another gq process")
        elif holder.runner:
            raise JournalInUse(f"journal: {path} is in use by another gq process: {holder}")
        else:
            unnamed_since = None
            if now - logged >= WAIT_LOG_EVERY:
                log.warning("journal %s: %s holds it; %s starts once it is done (waiting for %.0fs so far)",
                            path, holder, lock.me.command, now - started)
                logged = now
            if waiting is not None and not waiting(holder):
                raise Stopped(f"stopped while waiting for {holder} to let the journal {path} go")
        gevent.sleep(LOCK_POLL)
    if logged > float("-inf"):
        log.info("journal %s: taken after waiting %.1fs for a command to let it go", path, time.monotonic() - started)
        if waiting is not None:
            waiting(None)


class JournalAccess:
    def __init__(self, path: str, command: str = "gq run", waiting: Waiting | None = None):
        """`command`: the runner's, as others see it; `waiting`: see Waiting."""
        self.lock = JournalLock(path, command, runner=True)
        try:
            _take(self.lock, path, waiting)
        except BaseException:
            self.lock.release()
            raise
        self._threadpool = gevent.get_hub().threadpool
        # Opening brings a file of an earlier layout up to date (some 15 s per million
        # jobs): off the hub, so that the daemon can tell systemd its start goes on.
        self.file = _result(self._threadpool.apply(_captured, (JournalFile, path)))
        self.reader = JournalFile(path, reader=True)
        self._locks = {self.file: BoundedSemaphore(), self.reader: BoundedSemaphore()}

    def write(self, function: Callable[..., Any], *args: Any) -> Any:
        """`function(writer's connection, *args)` off the hub; what it raises is raised here."""
        return self._call(self.file, function, *args)

    def read(self, function: Callable[..., Any], *args: Any) -> Any:
        """`function(look-ups' connection, *args)` off the hub."""
        return self._call(self.reader, function, *args)

    def _call(self, connection: JournalFile, function: Callable[..., Any], *args: Any) -> Any:
        lock = self._locks[connection]
        lock.acquire()
        try:
            task = self._threadpool.spawn(_captured, function, connection, *args)
        except BaseException:
            lock.release()
            raise
        # Released when the thread is done, not when this greenlet is: one killed while it
        # waits (the dispatcher's, at a stop) leaves the thread still using the connection.
        task.rawlink(lambda _: lock.release())
        return _result(task.get())

    def close(self) -> None:
        """Once no thread uses either connection."""
        for lock in self._locks.values():
            lock.acquire()
        self.file.close()
        self.reader.close()
        self.lock.release()
