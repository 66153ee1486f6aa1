"""The system tier: tests that need root's kit (systemd in a systemd-nspawn container,
tmpfs mounts), each marked `system`."""

from __future__ import annotations

import pytest


def pytest_itemcollected(item: pytest.Item) -> None:
    item.add_marker("system")
