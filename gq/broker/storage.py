"""Whether the journal's storage can take jobs now: the guard in front of every 202.

Three things make a journal unable to keep what it is given, and each is an answer at
intake (503, reason `storage`) and a reason for /readyz to say not ready, never a 202:
- free space on its file system below journal.min_free_mb (a disk that fills);
- a write that failed (disk full, an I/O error, a file made read-only), until free
  space is seen again and a write is tried anew;
- its file deleted or replaced under the running daemon: what it writes then is found
  by no restart. That one lasts until gq is restarted.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger("gq.journal")

CHECK_EVERY = 0.5  # seconds between looks at the disk (a statvfs and two stats)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


class StorageGuard:
    def __init__(self, path: str, min_free_mb: int, clock: Callable[[], float] = time.monotonic):
        self.path = path
        self.directory = os.path.dirname(os.path.abspath(path))
        self.min_free_mb = min_free_mb
        self.clock = clock
        self._files = {p: _identity(p) for p in (path, path + "-wal")}  # as opened
        self._gone: str | None = None     # the file is not the one opened: for good
        self._failed: str | None = None   # the last write failed
        self._low: str | None = None      # free space below the minimum, as last seen
        self._looked = float("-inf")
        self._shown: str | None = None    # the problem last logged

    def problem(self) -> str | None:
        """Why no job can be stored now, or None. Looks at the disk at most every CHECK_EVERY
        seconds; a failed write is forgiven once free space is seen above the minimum."""
        now = self.clock()
        if now - self._looked >= CHECK_EVERY:
            self._looked = now
            self.look()
        problem = self._gone or self._failed or self._low
        if problem != self._shown:
            if problem:
                log.error("%s: refusing jobs (503) and not ready until it is mended", problem)
            else:
                log.info("journal: storage usable again: accepting jobs")
            self._shown = problem
        return problem

    def look(self) -> None:
        """Look at the disk now (also after each commit: a file deleted just before it must
        not be answered 202 for)."""
        if self._gone is None:
            for path, opened in self._files.items():
                if opened is not None and _identity(path) != opened:
                    self._gone = (f"journal: {path} was deleted or replaced under the running daemon; "
                                  f"jobs written now would be lost at a restart: restart gq")
        try:
            fs = os.statvfs(self.directory)
        except OSError as e:
            self._low = f"journal: cannot look at {self.directory}: {e.strerror or e}"
            return
        free_mb = fs.f_bavail * fs.f_frsize / 2**20
        if free_mb < self.min_free_mb:
            self._low = (f"journal: {free_mb:.0f} MB free on the journal's file system, below "
                         f"journal.min_free_mb ({self.min_free_mb})")
        else:
            self._low = None
            self._failed = None  # space again: the next add tries a write

    @property
    def gone(self) -> bool:
        return self._gone is not None

    def write_failed(self, error: Exception) -> None:
        self._failed = f"journal: write failed: {error}"

    def wrote(self) -> None:
        self._failed = None
