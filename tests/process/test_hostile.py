"""A hostile target cannot freeze gq: each of its modes (tests/support/hostile.py) against a real daemon.

For every mode: the attempts end within their timeout (plus a margin), the error names
what the target did, and meanwhile /healthz answers promptly and the event loop's lag
stays low (a greenlet reading an answer that never ends must still let others run).
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time

import gevent
import psutil
import pytest
import requests

from gq.delivery.response_limits import YIELD_EVERY, BoundedReader
from support import HERE, Daemon, wait_for

TIMEOUT = 2.0          # target.timeout
ATTEMPTS = 2
JOBS = 5
PROMPT = 0.5           # seconds /healthz (with /metrics) may take during an attack


@pytest.fixture(scope="module")
def hostile():
    proc = subprocess.Popen([sys.executable, str(HERE / "hostile.py"), "--seconds", "10"],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening "):
        proc.kill()
        raise RuntimeError(f"hostile target did not start: {line!r}")
    yield f"http://127.0.0.1:{int(line.split()[1])}"
    proc.kill()
    proc.wait()


def lag(daemon: Daemon, session: requests.Session) -> float:
    text = session.get(f"{daemon.api}/metrics", timeout=30).text
    return float(re.search(r"^gq_event_loop_lag_seconds (\S+)", text, re.M).group(1))


def attack(daemon: Daemon, url: str) -> tuple[list[dict], float, float, float]:
    """JOBS jobs to `url`, watched until all are finished: (jobs, seconds, worst /healthz
    and /metrics latency, worst event-loop lag)."""
    session = requests.Session()
    started = time.monotonic()
    ids = daemon.post([{"url": url} for _ in range(JOBS)]).json()["ids"]
    worst = time.monotonic() - started
    worst_lag = 0.0
    deadline = started + ATTEMPTS * (TIMEOUT + 1) + 5
    while True:
        asked = time.monotonic()
        assert session.get(f"{daemon.api}/healthz", timeout=30).status_code == 200
        worst_lag = max(worst_lag, lag(daemon, session))
        done = daemon.status()["finished"]
        worst = max(worst, time.monotonic() - asked)
        if done["succeeded"] + done["dead"] == JOBS:
            break
        assert time.monotonic() < deadline, f"attempts to {url} did not end in time: {daemon.status()}"
        time.sleep(0.02)
    return [daemon.job(i) for i in ids], time.monotonic() - started, worst, worst_lag


# mode → (final state, what the last attempt says: an error's start or a status)
MODES = {
    "continue": ("dead", "protocol: more than 10 interim (1xx) responses"),
    "trailers": ("dead", "protocol: trailers over 16384 bytes"),
    "headers": ("dead", "protocol: got more than 100 headers"),
    "status": ("dead", "protocol: status line over 8192 bytes"),
    "drip": ("dead", f"timeout: no answer within {TIMEOUT:g}s"),
    "reset": ("dead", "request: [Errno 104] Connection reset by peer"),
    "redirect": ("dead", 302),
    "body": ("succeeded", 200),  # the first 64 KiB are read; the rest is not waited for
    "gzip": ("succeeded", 200),  # not inflated: Accept-Encoding: identity, and read as sent
}


@pytest.mark.parametrize("mode", list(MODES))
def test_a_hostile_target_cannot_freeze_gq(start_daemon, hostile, mode):
    daemon = start_daemon(target={"timeout": TIMEOUT}, retry={"max_attempts": ATTEMPTS})
    jobs, seconds, worst, worst_lag = attack(daemon, f"{hostile}/{mode}")
    rss = psutil.Process(daemon.pid).memory_info().rss / 2**20
    print(f"\n{mode}: {JOBS} jobs finished in {seconds:.2f}s; /healthz and /metrics at worst "
          f"{worst * 1000:.0f} ms; event loop lag at worst {worst_lag:.3f}s; RSS {rss:.0f} MB; "
          f"last error {jobs[0]['last_error']!r}")
    state, last = MODES[mode]
    assert [j["state"] for j in jobs] == [state] * JOBS, jobs[0]
    for job in jobs:
        if isinstance(last, int):
            assert job["last_status"] == last, job
        else:
            assert job["last_error"] == last, job
        for attempt in job["history"]:
            assert attempt["duration"] <= TIMEOUT + 0.5, attempt
    assert worst < PROMPT, f"/healthz took {worst:.2f}s during the attack"
    assert worst_lag < PROMPT, f"the event loop lagged {worst_lag:.2f}s during the attack"
    assert rss < 150, f"RSS {rss:.0f} MB after the attack"
    if mode == "redirect":
        assert all(j["dead_reason"] == "permanent status 302" for j in jobs)
    if mode == "gzip":  # the snippet is inflated, to 512 bytes at most
        assert jobs[0]["history"][-1]["response"] == "\x00" * 512
    assert "Traceback" not in daemon.log()


def test_a_failed_name_lookup_is_a_failed_attempt_never_an_unchecked_connection(start_daemon):
    # No such name: the attempt fails at its look-up (before, urllib3 was let to resolve
    # again and connect with no check of the address).
    daemon = start_daemon(retry={"max_attempts": 1})
    job_id = daemon.post({"url": "http://no-such-host.invalid/hook"}).json()["id"]
    job = wait_for(lambda: (j := daemon.job(job_id))["state"] == "dead" and j, what="the job to die")
    assert job["last_error"].startswith("connect: "), job
    assert "Failed to resolve" in job["last_error"] or "Name or service" in job["last_error"], job


def test_the_reader_of_an_answer_lets_other_greenlets_run_while_data_is_ready():
    # In process: 1,000 header lines that are all there at once, read through BoundedReader;
    # another greenlet must get turns meanwhile (it would not with the bare reader).
    turns = []
    watcher = gevent.spawn(lambda: [turns.append(gevent.sleep(0)) for _ in range(10000)])
    gevent.sleep(0)
    reader = BoundedReader(io.BufferedReader(io.BytesIO(b"X-Header: y\r\n" * 1000)))
    reader.limit("header block", 1 << 20)
    before = len(turns)
    for _ in range(1000):
        reader.readline(65537)
    watcher.kill()
    assert len(turns) - before >= 1000 // YIELD_EVERY - 1
