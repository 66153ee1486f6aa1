"""Programs some tests need and a machine may lack (redis-server, prometheus, systemd-nspawn),
installed from Debian's packages with apt-get when they are missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import cast

# Where Debian's packages put programs: looked in too when PATH leaves them out.
DEBIAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
APT_TIMEOUT = 900   # seconds one apt-get command may take
LOCK_TIMEOUT = 300  # seconds apt-get waits for another apt or dpkg to release the lock


class PackageError(Exception):
    """A program cannot be had on this machine; the message says why."""


def find(program: str) -> str | None:
    """The path of `program`, on PATH or in Debian's directories; None if neither has it."""
    return shutil.which(program) or shutil.which(program, path=DEBIAN_PATH)


def provide(*programs: str, packages: Sequence[str]) -> list[str]:
    """The paths of `programs`; when one of them is missing, `install(*packages)` first.

    Raises PackageError when a program cannot be had: no apt-get, not root, apt-get failed,
    or the packages installed without it."""
    paths = [find(program) for program in programs]
    if None in paths:
        try:
            install(*packages)
        except PackageError as e:
            raise PackageError(f"{'/'.join(programs)} not found, and {e}") from None
        paths = [find(program) for program in programs]
    missing = [program for program, path in zip(programs, paths) if path is None]
    if missing:
        raise PackageError(f"{' '.join(packages)} installed, but {'/'.join(missing)} still not found")
    return cast(list[str], paths)


def install(*packages: str) -> None:
    """apt-get install the Debian `packages` ("NAME" or "NAME=VERSION"); if that fails, update
    the package lists and try again (a fresh machine has none; an old list names versions
    gone). Blocks while apt-get runs: up to LOCK_TIMEOUT for the dpkg lock and APT_TIMEOUT
    per command.

    Raises PackageError: no apt-get, not root, or apt-get's own error."""
    names = " ".join(packages)
    if not find("apt-get"):
        raise PackageError(f"there is no apt-get to install {names}")
    if os.geteuid() != 0:
        raise PackageError(f"installing {names} needs root")
    command = ("install", "-y", "-q", "--no-install-recommends", *packages)
    try:
        _apt_get(*command)
    except PackageError:
        _apt_get("update", "-qq")
        _apt_get(*command)


def _apt_get(*args: str) -> None:
    command = ["apt-get", "-o", f"DPkg::Lock::Timeout={LOCK_TIMEOUT}", *args]
    try:
        done = subprocess.run(command, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=APT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise PackageError(f"`{' '.join(command)}` took over {APT_TIMEOUT}s") from None
    if done.returncode != 0:
        raise PackageError(f"`{' '.join(command)}` exited {done.returncode}: {done.stderr.strip()[-2000:]}")
