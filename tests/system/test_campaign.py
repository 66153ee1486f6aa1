"""The fault campaign on fixed seeds: gq under kill -9, SIGSTOP, drains, reloads, a full disk,
Redis killed and read-only, memory past its limit, a target down, slow and hostile, while a
client submits, cancels and replays; then every job answered 202 is accounted for
(tests/support/campaign/). The journal's set-up needs root (its disk is a tmpfs)."""

from __future__ import annotations

import os

import pytest

from support import unavailable
from support.campaign.campaign import Campaign
from support.redis_server import find_redis_server

SECONDS = 35   # of faults per seed; with the start and the settling, about 45 s a seed


@pytest.mark.parametrize("seed", [1, 2])
def test_a_journal_under_faults_loses_nothing(tmp_path, seed):
    if os.geteuid() != 0:
        unavailable("the journal's campaign mounts a tmpfs: it needs root")
    report = Campaign(seed, "journal", SECONDS, tmp_path).run()
    assert report.ok, report.summary() + "\n" + "\n".join(report.fault_log)


@pytest.mark.parametrize("seed", [1, 2])
def test_two_daemons_on_redis_under_faults_lose_nothing(tmp_path, seed):
    binary, why = find_redis_server()
    if binary is None:
        unavailable(why)
    report = Campaign(seed, "fleet", SECONDS, tmp_path).run()
    assert report.ok, report.summary() + "\n" + "\n".join(report.fault_log)
