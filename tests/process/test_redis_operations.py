"""The Redis broker's index of jobs (gq/broker/redis_operations.py): pages that cross chunks
of members accepted at one time, and the trim of members whose status expired."""

from __future__ import annotations

import pytest

import gq.broker.redis_operations as ops
from gq.broker import Filter
from gq.core.job import Job
from support.broker_harness import Harness, Options, storage


@pytest.fixture
def h(module_redis, tmp_path):
    harness = Harness(storage("redis", tmp_path, module_redis.url, Options()))
    yield harness
    harness.close()


def _jobs(prefix: str, n: int) -> list[Job]:
    return [Job(f"{prefix}{i:03d}", "POST", "http://example.com/hook", {}) for i in range(n)]


def test_pages_cross_chunks_of_jobs_accepted_at_one_time(h, monkeypatch):
    monkeypatch.setattr(ops, "FIND_CHUNK", 7)
    h.add(*_jobs("a", 30))      # one request: one acceptance time for all
    h.add(*_jobs("b", 12))
    newest_first = [j.id for j in _jobs("b", 12)][::-1] + [j.id for j in _jobs("a", 30)][::-1]
    assert [e.job.id for e, _ in h.broker.find(Filter(), 1000)] == newest_first
    pages, where = [], Filter()
    while page := list(h.broker.find(where, 5)):
        pages += [e.job.id for e, _ in page]
        where = Filter(after=page[-1][1])
    assert pages == newest_first
    at = h.get("a010").accepted_at
    assert [e.job.id for e, _ in h.broker.find(Filter(since=at), 1000)] == newest_first


def test_members_whose_status_expired_leave_the_index(h, monkeypatch):
    monkeypatch.setattr(ops, "FIND_CHUNK", 7)
    h.add(*_jobs("x", 20))
    broker = h.broker
    index = broker.operations.index
    gone = [f"x{i:03d}" for i in range(0, 20, 3)]
    for job_id in gone:  # as status_ttl would
        broker.redis.delete(broker.keys.status(job_id))
    monkeypatch.setattr(broker.operations, "ttl", -60)  # every member is past status_ttl
    while broker.operations.trim() >= ops.FIND_CHUNK:
        pass
    assert broker.redis.zcard(index) == 20 - len(gone)
    listed = [e.job.id for e, _ in broker.find(Filter(), 100)]
    assert listed == [f"x{i:03d}" for i in range(19, -1, -1) if f"x{i:03d}" not in gone]
    # An id accepted again (its id key expired too): its old member is stale, the new one listed.
    broker.redis.delete(f"{broker.keys.prefix}:id:x001")
    broker.redis.delete(broker.keys.status("x001"))
    h.add(*_jobs("x", 2)[1:])
    assert [e.job.id for e, _ in broker.find(Filter(), 100)].count("x001") == 1
    assert broker.redis.zcard(index) == 20 - len(gone)  # the stale member went as find passed it
