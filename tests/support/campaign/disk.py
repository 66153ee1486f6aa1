"""A small tmpfs for the journal, and a ballast file that fills it: a full disk, made real."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

CHUNK = 1 << 16


class DiskUnavailable(Exception):
    """A tmpfs cannot be mounted here (not root, or no mount(8))."""


class SmallDisk:
    """A tmpfs of `mb` MB mounted on `path` (root only), unmounted by `close()`."""

    def __init__(self, path: Path, mb: int):
        self.path = path
        self.ballast = path / "ballast"
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            raise DiskUnavailable("mounting a tmpfs needs root")
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mb}m", "tmpfs", str(path)],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            raise DiskUnavailable(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
        self.mounted = True

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave_bytes: int) -> int:
        """Write the ballast until `leave_bytes` are left free (0: to the last byte, until the
        file system says ENOSPC); returns the bytes written."""
        written = 0
        with open(self.ballast, "ab", buffering=0) as f:   # unbuffered: ENOSPC comes from write()
            block = b"\0" * CHUNK
            while True:
                room = self.free_bytes() - leave_bytes
                if room <= 0 and leave_bytes:
                    break
                try:
                    written += f.write(block[:max(min(CHUNK, room), 4096)] if leave_bytes else block) or 0
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
        return written

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
            self.mounted = False
