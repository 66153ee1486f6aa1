"""What every tier shares: the tiers are folders (unit/, process/, system/), whose own
conftest.py marks each of their tests (pytest -m unit runs the in-process tests alone);
helpers are in support/; here, the fixtures of more than one tier: gq itself and an HTTP
target, real processes on loopback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from support import Daemon, daemon_config, start_target


@pytest.fixture
def target():
    t = start_target()
    yield t
    t.stop()


@pytest.fixture
def start_daemon(tmp_path):
    """start_daemon(**sections) → a running Daemon; every one started is killed at the end."""
    started: list[Daemon] = []

    def start(env: dict | None = None, workdir: Path | None = None, **sections: dict[str, Any]) -> Daemon:
        daemon = Daemon(workdir or tmp_path, daemon_config(**sections),
                        env={**os.environ, **(env or {})})
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
