"""The daemon end to end: real gq process, real target, real signals."""

from __future__ import annotations

import re
import signal
import time

from support import Conn, head_bytes, wait_for


def test_requests_are_cooperative_under_monkey_patching(start_daemon, target):
    # 50 jobs against a target that answers after 1 s: cooperative sockets run them at
    # once; blocking ones would take 50 s. The bound is far from both.
    daemon = start_daemon(pool={"size": 50})
    started = time.monotonic()
    response = daemon.post([{"url": target.url(delay=1)} for _ in range(50)])
    assert response.status_code == 202
    wait_for(lambda: daemon.status()["finished"]["succeeded"] == 50, timeout=20, what="50 jobs")
    elapsed = time.monotonic() - started
    assert elapsed < 10, f"50 one-second jobs took {elapsed:.1f}s: requests is not cooperative"
    assert target.count() == 50


def test_drain_finishes_in_flight_and_queued_jobs_then_exits_0(start_daemon, target):
    daemon = start_daemon(pool={"size": 5}, shutdown={"drain_timeout": 30})
    ids = daemon.post([{"url": target.url(delay=0.5)} for _ in range(20)]).json()["ids"]
    wait_for(lambda: daemon.status()["pool_busy"] == 5, what="5 jobs in flight")
    assert daemon.status()["queue_depth"] > 0  # some are still queued when the signal comes
    daemon.signal(signal.SIGTERM)
    wait_for(lambda: daemon.get("/readyz").status_code == 503, what="/readyz 503 while draining")
    refused = daemon.post({"url": target.url()})
    assert refused.status_code == 503 and "Retry-After" in refused.headers
    assert daemon.wait() == 0
    keys = {r["key"] for r in target.received()}
    assert keys == set(ids)
    assert "nothing left in flight" in daemon.log()


def test_the_drain_summary_counts_what_waits_in_the_journal(start_daemon, target):
    daemon = start_daemon(journal={"path": "data/journal.sqlite3"}, retry={"backoff_base": 3600, "backoff_max": 3600})
    assert daemon.post([{"id": f"later-{i}", "url": target.url(), "delay": 3600} for i in range(4)]
                       + [{"id": "flaky", "url": target.url(status=503)}]).status_code == 202
    wait_for(lambda: daemon.job("flaky")["state"] == "retrying", what="a job waiting for its retry")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    assert re.search(r"drained in [\d.]+s: 0 succeeded, 0 dead since this daemon started; nothing left in "
                     r"flight; 4 scheduled, 1 retrying left in the journal for the next start\n", daemon.log()), \
        daemon.log()


def test_a_request_cut_off_by_the_stop_is_answered_503_not_500(start_daemon):
    # A request still being answered when the listeners close (here: its body still coming)
    # is ended by gq's stop: it gets a JSON 503 to ask again, not gevent's bare 500.
    daemon = start_daemon(api={"client_timeout": 30})
    conn = Conn(daemon.api, timeout=20)
    conn.send(head_bytes("POST", "/v1/jobs", [("Content-Type", "application/json"), ("Content-Length", "1000")])
              + b"[")
    wait_for(lambda: daemon.status()["pool_busy"] == 0, what="the status answered beside it")
    daemon.signal(signal.SIGTERM)
    answer = conn.answer(timeout=20)
    assert daemon.wait() == 0
    assert answer.status == 503, (answer, daemon.log()[-2000:])
    assert "stopping" in answer.json()["error"] and answer.headers.get("retry-after") == "5", answer
    assert "cut off by the stop: POST /v1/jobs" in daemon.log()


def test_second_signal_stops_at_once(start_daemon, target):
    daemon = start_daemon(pool={"size": 2}, shutdown={"drain_timeout": 60})
    daemon.post([{"url": target.url(hang=1)} for _ in range(2)])
    wait_for(lambda: daemon.status()["pool_busy"] == 2, what="2 hanging jobs in flight")
    daemon.signal(signal.SIGTERM)
    wait_for(lambda: "draining" in daemon.log(), what="drain to start")
    daemon.signal(signal.SIGINT)
    assert daemon.wait(timeout=10) == 0
    assert "2 in flight left unfinished" in daemon.log()


def test_a_late_second_signal_leaves_the_exit_status_0(start_daemon):
    # An idle daemon drains at once; the second SIGTERM then comes while it closes or exits
    # (it used to die of it, with status -15, after a clean drain).
    for delay in (0.0, 0.005, 0.01, 0.02, 0.04):
        daemon = start_daemon()
        daemon.signal(signal.SIGTERM)
        time.sleep(delay)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0, f"second SIGTERM {delay * 1000:g} ms after the first: {daemon.log()[-1500:]}"


def test_a_fatal_signal_leaves_every_threads_stack_in_the_log(start_daemon):
    # A crash in C code (SQLite under a closed connection, once) must say where it happened.
    daemon = start_daemon()
    daemon.signal(signal.SIGSEGV)
    assert daemon.wait() == -signal.SIGSEGV
    log = daemon.log()
    assert "Fatal Python error: Segmentation fault" in log and 'File "' in log, log
