"""The helpers the benchmark shares with the tests (tests/support/: __init__.py, redis_server.py),
imported from there rather than copied, and the one adapter they need here."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from harness import ROOT, TimedOut

# tests/ is not a package: the tests import their helpers as the package `support` (as
# pytest's rootdir-relative imports do), so its directory goes on the path, once, here.
sys.path.insert(0, str(ROOT / "tests"))

import pytest  # noqa: E402 - support's wait_for fails through it

import support  # noqa: E402
from support import Target, to_toml  # noqa: E402
from support.redis_server import RedisServer, find_redis_server  # noqa: E402

__all__ = ["RedisServer", "Target", "find_redis_server", "to_toml", "wait_for"]


def wait_for(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    """tests/support's wait_for (poll `condition` until it returns something truthy, and
    return that), raising TimedOut after `timeout` seconds. The tests' version fails through
    pytest.fail, whose exception is a BaseException: a scenario's error handling, which turns
    a BenchError into a FAILED report and goes on with the next scenario, would not catch it."""
    try:
        return support.wait_for(condition, timeout, what, every)
    except pytest.fail.Exception:
        raise TimedOut(f"{what}: not within {timeout:g}s") from None
