"""An application's integration tests, its jobs run through a real gq (gq's pytest plugin)."""

import pytest


@pytest.fixture
def gq_config():
    # Over the plugin's config (fast retries, a journal in the test's tmp dir): three attempts.
    return {"retry": {"max_attempts": 3}}


def test_a_job_reaches_the_receiver(gq_daemon, gq_receiver):
    [job_id] = gq_daemon.client.submit({"url": f"{gq_receiver.url}/hooks/order", "json": {"order": 42}})
    [request] = gq_receiver.wait(1)
    assert (request.method, request.path, request.json) == ("POST", "/hooks/order", {"order": 42})
    assert request.headers["Idempotency-Key"] == job_id
    gq_daemon.wait(job_id, "succeeded")


def test_a_failed_delivery_is_retried(gq_daemon, gq_receiver):
    gq_receiver.respond(500, times=1)  # the first request fails, the next ones get 200
    [job_id] = gq_daemon.client.submit({"url": gq_receiver.url, "json": {"order": 43}})
    first, second = gq_receiver.wait(2)
    assert (first.status, second.status) == (500, 200)
    assert gq_daemon.wait(job_id, "succeeded")["attempts"] == 2


def test_a_job_that_always_fails_is_dead_and_can_be_replayed(gq_daemon, gq_receiver):
    gq_receiver.respond(500)
    [job_id] = gq_daemon.client.submit({"url": gq_receiver.url, "json": {"order": 44}})
    gq_daemon.wait(job_id, "dead")
    assert len(gq_receiver.requests) == 3
    gq_receiver.respond(200)
    assert gq_daemon.client.replay([job_id]) == [job_id]
    gq_daemon.wait(job_id, "succeeded")


def test_the_journal_keeps_a_job_across_a_restart(gq_daemon, gq_receiver):
    [job_id] = gq_daemon.client.submit({"url": gq_receiver.url, "json": {"order": 45}, "delay": 5})
    gq_daemon.restart()
    assert gq_daemon.client.get(job_id)["state"] == "scheduled"
    gq_receiver.wait(1, timeout=15)
    gq_daemon.wait(job_id, "succeeded")
