"""One process's hold on a journal file: the lock that makes it the file's one runner, a
connection for writing and one for look-ups (so that look-ups do not wait for the
writer's commits), and calls to each in gevent's threadpool, one at a time per
connection: SQLite transactions of two threads on one connection would interleave."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from typing import Any

import gevent
from gevent.lock import BoundedSemaphore

from gq.broker.journal_file import JournalError, JournalFile


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


class JournalLock:
    """An exclusive lock on `PATH.lock`: held by the one process that runs the journal's jobs."""

    def __init__(self, path: str):
        self.path = path + ".lock"
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def try_acquire(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        os.close(self.fd)


class JournalAccess:
    def __init__(self, path: str):
        self.lock = JournalLock(path)
        if not self.lock.try_acquire():
            self.lock.release()
            raise JournalError(f"journal: {path} is in use by another gq process")
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
