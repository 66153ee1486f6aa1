"""The unit tier: tests in this process only (no gq, target or Redis process, no root),
each marked `unit`; they run in seconds."""

from __future__ import annotations

import pytest

from support import Clock


def pytest_itemcollected(item: pytest.Item) -> None:
    item.add_marker("unit")


@pytest.fixture
def clock() -> Clock:
    return Clock()
