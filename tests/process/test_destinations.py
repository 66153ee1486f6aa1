"""Per-destination protections against real processes: in-flight cap, rate limit, circuit
breaker, host pause; each off by default.

Two real targets: tests/support/target.py on 127.0.0.1 and a second one on 127.0.0.2 (Linux routes
all of 127.0.0.0/8 to the loopback interface), so gq sees two distinct hosts. Assertions
are on counts within deadlines; measured figures are printed (run with -s to see them).
"""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gq.dispatch.destinations import PROBES
from support import Daemon, Target, assert_clean_log, daemon_config, run_gq, spawn_target, to_toml, wait_for

OTHER_HOST = "127.0.0.2"


# -- helpers

def start_target_on(host: str) -> Target:
    """tests/support/target.py listening on `host` (any free port); its job URLs name that host."""
    target = spawn_target("--host", host)
    target.base = f"http://{host}:{target.port}"
    return target


@pytest.fixture
def second_target():
    """A target on 127.0.0.2: a second destination host for gq."""
    t = start_target_on(OTHER_HOST)
    yield t
    t.stop()


def destination_metrics(daemon: Daemon) -> dict[str, dict[tuple, float]]:
    """gq_destination_* samples from /metrics: sample name → {(host[, result | state]): value}."""
    response = daemon.get("/metrics")
    response.raise_for_status()
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name.startswith("gq_destination_"):
                key = (sample.labels["host"],) + tuple(sample.labels[k] for k in ("result", "state")
                                                       if k in sample.labels)
                out.setdefault(sample.name, {})[key] = sample.value
    return out


def circuit_state(daemon: Daemon, host: str) -> float | None:
    return destination_metrics(daemon).get("gq_destination_circuit_state", {}).get((host,))


def states(daemon: Daemon, ids: list[str]) -> list[dict]:
    return [daemon.job(i) for i in ids]


# -- 1. a bad neighbour, with the in-flight cap on and off

POOL = 20
WINDOW = 3.0           # seconds of healthy stream whose deliveries are counted
TICK = 0.1             # seconds between healthy submissions
HEALTHY_PER_TICK = 15  # → 150 healthy jobs/s offered
BAD_JOBS = 200
BAD_TIMEOUT = 2.0


def _healthy_run(start_daemon, healthy: Target, bad: Target | None, cap: int) -> tuple[int, int]:
    """A daemon (pool 20, in-flight cap `cap`); if `bad`, 200 hanging jobs to it first; then a
    steady healthy stream for WINDOW seconds. Returns (healthy delivered in the window, offered)."""
    daemon = start_daemon(pool={"size": POOL}, queue={"maxsize": 5000},
                          destinations={"max_in_flight": cap})
    try:
        if bad is not None:
            bad_before = bad.count()
            response = daemon.post([{"url": bad.url("/bad", hang=1), "timeout": BAD_TIMEOUT,
                                     "max_attempts": 1} for _ in range(BAD_JOBS)])
            assert response.status_code == 202, response.text
            hung = min(cap or POOL, POOL)
            wait_for(lambda: bad.count() - bad_before >= hung, timeout=10,
                     what=f"{hung} bad attempts in flight")
        before = healthy.count()
        offered = 0
        t0 = time.time()
        for tick in range(int(WINDOW / TICK)):
            time.sleep(max(0.0, t0 + tick * TICK - time.time()))
            response = daemon.post([{"url": healthy.url("/healthy")} for _ in range(HEALTHY_PER_TICK)])
            assert response.status_code == 202, f"healthy submission refused: {response.status_code} {response.text}"
            offered += HEALTHY_PER_TICK
        time.sleep(max(0.0, t0 + WINDOW - time.time()) + 0.2)  # records of the window's end are in
        delivered = sum(1 for r in healthy.received(since=before) if t0 <= r["t"] < t0 + WINDOW)
        assert_clean_log(daemon)
        return delivered, offered
    finally:
        daemon.stop()


def test_bad_neighbour_cannot_starve_a_healthy_host_with_the_cap_on(start_daemon, target, second_target):
    healthy, bad = target, second_target

    solo, offered = _healthy_run(start_daemon, healthy, None, cap=5)
    capped, _ = _healthy_run(start_daemon, healthy, bad, cap=5)
    uncapped, _ = _healthy_run(start_daemon, healthy, bad, cap=0)

    ratio_capped = capped / solo if solo else 0.0
    ratio_uncapped = uncapped / capped if capped else 0.0
    print(f"\nhealthy host, {WINDOW:g}s window, {offered} offered ({offered / WINDOW:.0f}/s):"
          f"\n  solo                         {solo:4d} delivered = {solo / WINDOW:6.1f} jobs/s"
          f"\n  bad neighbour, cap 5         {capped:4d} delivered = {capped / WINDOW:6.1f} jobs/s"
          f"  ({ratio_capped:.0%} of solo)"
          f"\n  bad neighbour, cap off       {uncapped:4d} delivered = {uncapped / WINDOW:6.1f} jobs/s"
          f"  ({ratio_uncapped:.0%} of capped, {uncapped / solo if solo else 0:.0%} of solo)")

    assert solo >= offered * 0.5, f"solo run delivered only {solo} of {offered}: the baseline is broken"
    assert capped >= 0.5 * solo, (
        f"with max_in_flight = 5 the healthy host got {capped} deliveries vs {solo} solo "
        f"({ratio_capped:.0%}): the bad neighbour starves it")
    assert uncapped < 0.3 * capped, (
        f"with the cap off the healthy host still got {uncapped} deliveries vs {capped} capped: "
        f"the scenario does not show starvation")


# -- 2. the circuit breaker (off by default)

JOBS_DOWN = 30
BREAKER = {"breaker_failures": 3, "breaker_window": 1, "breaker_cooldown": 1}


def test_circuit_opens_while_the_host_is_down_and_closes_once_it_answers(start_daemon, target):
    # A retry budget longer than the outage: the breaker spends attempts, locally, at the
    # backoff pace (about 0.25 s each here), so 100 of them last well past it.
    daemon = start_daemon(destinations=BREAKER, retry={"max_attempts": 100})
    target.control("/_down")
    response = daemon.post([{"url": target.url()} for _ in range(JOBS_DOWN)])
    assert response.status_code == 202
    ids = response.json()["ids"]
    seen_states: set[float | None] = set()

    def sample() -> float | None:
        state = circuit_state(daemon, "127.0.0.1")
        seen_states.add(state)
        return state

    wait_for(lambda: sample() == 2, timeout=10, what="circuit_state 2 (open)")
    at_open = target.count()
    # Down through two cooldowns: probes go through (half-open), fail, and reopen it.
    wait_for(lambda: sample() is not None and daemon.log().count("circuit half-open") >= 2, timeout=10,
             what="two rounds of probes")
    wait_for(lambda: daemon.log().count("circuit open") >= 3, timeout=10, what="the second probes to fail")
    at_end = target.count()
    probe_rounds = daemon.log().count("circuit half-open")
    jobs = states(daemon, ids)
    spent = sum(j["attempts"] for j in jobs)
    print(f"\nwhile down: {at_open} attempts reached the host before its circuit opened, "
          f"{at_end - at_open} after ({probe_rounds} probe rounds); {spent} attempts spent by the jobs "
          f"in all, {spent - at_end} of them failed at once by the open circuit")

    assert all(j["state"] == "retrying" or j["state"] == "queued" or j["state"] == "running" for j in jobs), jobs
    # Once open, only probes reach the host (plus attempts in flight when it opened).
    assert at_end - at_open <= JOBS_DOWN + PROBES * probe_rounds, (at_open, at_end, probe_rounds)
    assert spent - at_end >= JOBS_DOWN, "the open circuit failed no attempt at once"
    assert any(a["error"] and a["error"].startswith("circuit open: 127.0.0.1") for j in jobs for a in j["history"])
    assert daemon.log().count("circuit closed") == 0

    target.control("/_up")
    wait_for(lambda: "circuit closed" in daemon.log(), timeout=20, what="the circuit to close after the host came up")
    wait_for(lambda: daemon.status()["finished"]["succeeded"] == JOBS_DOWN, timeout=20,
             what=f"all {JOBS_DOWN} jobs to succeed")
    assert circuit_state(daemon, "127.0.0.1") == 0
    assert all(j["state"] == "succeeded" for j in states(daemon, ids))
    assert {r["key"] for r in target.received()} == set(ids)
    assert daemon.status()["jobs"]["dead"] == 0
    changes = destination_metrics(daemon)["gq_destination_circuit_changes_total"]
    assert changes[("127.0.0.1", "open")] == daemon.log().count("circuit open") >= 3
    assert changes[("127.0.0.1", "half_open")] == daemon.log().count("circuit half-open")
    assert changes[("127.0.0.1", "closed")] == 1
    assert seen_states - {None} <= {0.0, 1.0, 2.0} and 2.0 in seen_states
    assert_clean_log(daemon)


def test_with_the_breaker_on_jobs_to_a_host_that_stays_down_die_after_max_attempts(start_daemon, target):
    attempts = 12
    daemon = start_daemon(destinations={**BREAKER, "breaker_window": 0.2, "breaker_cooldown": 60},
                          retry={"max_attempts": attempts, "backoff_max": 0.3})
    target.control("/_down")
    ids = daemon.post([{"url": target.url()} for _ in range(10)]).json()["ids"]
    wait_for(lambda: daemon.status()["finished"]["dead"] == 10, timeout=30, what="10 dead letters")
    jobs = states(daemon, ids)
    print(f"\nhost down, breaker on: 10 jobs dead after {attempts} attempts each; "
          f"{target.count()} of their {10 * attempts} attempts reached the host")
    assert all(j["state"] == "dead" and j["attempts"] == attempts for j in jobs), jobs
    assert all(j["dead_reason"] == f"attempts used up ({attempts})" for j in jobs)
    assert all(j["last_error"].startswith("circuit open: 127.0.0.1") for j in jobs), [j["last_error"] for j in jobs]
    # About 4 attempts each reach the host within the 0.2 s window; the rest fail at once.
    assert target.count() <= 10 * attempts // 2
    assert_clean_log(daemon)


# -- 3. pause_on_retry_after: a 429 pauses the host; it is not a failure

JOBS_429 = 20


def test_pause_on_retry_after_pauses_the_host_without_opening_the_circuit(start_daemon, target):
    # backoff_max 5: Retry-After 1 is honoured in full (conftest's default caps it at 0.5 s).
    daemon = start_daemon(destinations={"pause_on_retry_after": True, **BREAKER, "breaker_window": 0.2},
                          retry={"max_attempts": 5, "backoff_max": 5})
    first = daemon.post([{"url": target.url(fail=1, fail_status=429, retry_after=1)}
                         for _ in range(JOBS_429)])
    assert first.status_code == 202
    ids = first.json()["ids"]
    seen_states: set[float | None] = set()

    def first_attempts_in() -> bool:
        seen_states.add(circuit_state(daemon, "127.0.0.1"))
        return target.count() >= JOBS_429

    wait_for(first_attempts_in, timeout=10, what=f"{JOBS_429} first attempts (429)")
    # Jobs for the paused host submitted now wait for the pause to end.
    later = daemon.post([{"url": target.url("/later")} for _ in range(5)])
    assert later.status_code == 202
    ids += later.json()["ids"]

    def all_done() -> bool:
        seen_states.add(circuit_state(daemon, "127.0.0.1"))
        return daemon.status()["finished"]["succeeded"] == len(ids)

    wait_for(all_done, timeout=20, what="every job to succeed")
    received = target.received()
    last_429 = max(r["t"] for r in received[:JOBS_429])
    first_later = min(r["t"] for r in received if r["path"] == "/later")
    print(f"\n429 run: {len(received)} attempts for {len(ids)} jobs; circuit states seen "
          f"{sorted(s for s in seen_states if s is not None)}; first job to the paused host arrived "
          f"{first_later - last_429:.2f}s after the last 429 (Retry-After: 1)")

    assert all(j["state"] == "succeeded" for j in states(daemon, ids))
    assert seen_states - {None} == {0.0}, seen_states
    assert circuit_state(daemon, "127.0.0.1") == 0
    assert "circuit open" not in daemon.log()
    assert daemon.status()["jobs"]["dead"] == 0
    assert len(received) == JOBS_429 * 2 + 5  # one 429 and one success each, 5 straight successes
    # The pause is an outcome of the 429 (a lower bound with slack), not a speed claim.
    assert first_later - last_429 >= 0.5, "jobs reached the host during its Retry-After pause"
    assert_clean_log(daemon)


# -- 4. the rate limit

RATE, BURST, JOBS_RATE = 5, 1, 30


def test_rate_limit_bounds_requests_per_second(start_daemon, target):
    daemon = start_daemon(destinations={"rate": RATE, "burst": BURST})
    response = daemon.post([{"url": target.url()} for _ in range(JOBS_RATE)])
    assert response.status_code == 202
    ids = response.json()["ids"]
    wait_for(lambda: daemon.status()["finished"]["succeeded"] == JOBS_RATE, timeout=20,
             what=f"{JOBS_RATE} rate-limited jobs")
    times = sorted(r["t"] for r in target.received())
    assert len(times) == JOBS_RATE
    start, span = times[0], times[-1] - times[0]
    per_second = Counter(int(t - start) for t in times)
    busiest = max(sum(1 for u in times[i:] if u - t <= 1.0) for i, t in enumerate(times))
    print(f"\nrate {RATE}/s, burst {BURST}: {JOBS_RATE} requests over {span:.2f}s; per second "
          f"{[per_second[s] for s in range(int(span) + 1)]}; busiest 1-second window {busiest}")

    assert {r["key"] for r in target.received()} == set(ids)
    assert busiest <= RATE + BURST, f"{busiest} requests within one second (limit {RATE} + burst {BURST})"
    assert span >= (JOBS_RATE - BURST) / RATE - 0.5, f"{JOBS_RATE} requests in {span:.2f}s"
    assert_clean_log(daemon)


# -- 5. overrides by host pattern

def test_override_caps_one_host_while_the_other_runs_many_at_once(start_daemon, target, second_target):
    daemon = start_daemon(pool={"size": 50},
                          destinations={"overrides": {OTHER_HOST: {"max_in_flight": 1}}})
    capped_jobs = [{"url": second_target.url(delay=0.3)} for _ in range(8)]
    free_jobs = [{"url": target.url(delay=1)} for _ in range(30)]
    response = daemon.post(capped_jobs + free_jobs)
    assert response.status_code == 202
    ids = response.json()["ids"]

    peak = {OTHER_HOST: 0.0, "127.0.0.1": 0.0}
    waiting_peak = 0.0
    samples = 0
    deadline = time.monotonic() + 20
    while daemon.status()["finished"]["succeeded"] < len(ids):
        assert time.monotonic() < deadline, f"jobs not done: {daemon.status()}"
        m = destination_metrics(daemon)
        for host in peak:
            peak[host] = max(peak[host], m.get("gq_destination_in_flight", {}).get((host,), 0.0))
        waiting_peak = max(waiting_peak, m.get("gq_destination_waiting", {}).get((OTHER_HOST,), 0.0))
        samples += 1
        time.sleep(0.02)
    print(f"\n{samples} /metrics samples: peak in flight {OTHER_HOST} {peak[OTHER_HOST]:g} (override 1), "
          f"127.0.0.1 {peak['127.0.0.1']:g} (no cap); peak waiting for {OTHER_HOST} {waiting_peak:g}")

    assert peak[OTHER_HOST] == 1, peak
    assert waiting_peak >= 1
    assert peak["127.0.0.1"] >= 10, peak
    assert second_target.count() == 8 and target.count() == 30
    assert all(j["state"] == "succeeded" for j in states(daemon, ids))
    assert_clean_log(daemon)


# -- 6. metric label cardinality

def test_hosts_past_metrics_hosts_fold_into_other(start_daemon, target, second_target):
    daemon = start_daemon(destinations={"metrics_hosts": 1})
    assert daemon.post({"url": target.url()}).status_code == 202
    wait_for(lambda: daemon.status()["finished"]["succeeded"] == 1, what="the first host's job")
    assert daemon.post([{"url": second_target.url()} for _ in range(3)]).status_code == 202
    wait_for(lambda: daemon.status()["finished"]["succeeded"] == 4, what="the second host's jobs")

    m = destination_metrics(daemon)
    print(f"\nmetrics_hosts = 1: {m}")
    for name in ("gq_destination_in_flight", "gq_destination_waiting", "gq_destination_circuit_state"):
        assert {key[0] for key in m[name]} == {"127.0.0.1", "other"}, (name, m[name])
    attempts = m["gq_destination_attempts_total"]
    assert {key[0] for key in attempts} == {"127.0.0.1", "other"}, attempts
    assert attempts[("127.0.0.1", "success")] == 1
    assert attempts[("other", "success")] == 3
    assert OTHER_HOST not in daemon.get("/metrics").text
    assert_clean_log(daemon)


# -- 7. config errors in overrides

OVERRIDE_ERRORS = {
    "unknown key": ('overrides = { "127.0.0.2" = { max_in_fligth = 1 } }',
                    "destinations.overrides: 127.0.0.2: max_in_fligth: unknown key (did you mean max_in_flight?)"),
    "negative rate": ('overrides = { "*.example.com" = { rate = -1 } }',
                      "destinations.overrides: *.example.com: rate: must be a number >= 0, got -1"),
    "string for an integer": ('[destinations.overrides."10.0.0.0/8"]\nmax_in_flight = "ten"',
                              'destinations.overrides: 10.0.0.0/8: max_in_flight: must be an integer >= 0, '
                              'got "ten"'),
    "zero cooldown": ('overrides = { "127.0.0.2" = { breaker_cooldown = 0 } }',
                      "destinations.overrides: 127.0.0.2: breaker_cooldown: must be a number of seconds > 0"),
}


@pytest.mark.parametrize("case", list(OVERRIDE_ERRORS))
def test_config_error_in_overrides_names_the_key(tmp_path, case):
    body, expected = OVERRIDE_ERRORS[case]
    path = tmp_path / "gq.toml"
    path.write_text(f"[destinations]\n{body}\n")
    result = run_gq("check-config", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 2, result
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"gq: config error: {path}: {expected}"), result.stderr


# -- 8. a capped host's jobs past its share of the queue

def test_jobs_past_a_capped_hosts_parked_share_are_not_held_back(start_daemon, second_target):
    # queue.maxsize 20: a host may park 10 jobs; the rest go back to the broker. The host
    # takes a job in milliseconds, so none of them should wait long for it.
    daemon = start_daemon(queue={"maxsize": 20}, destinations={"overrides": {OTHER_HOST: {"max_in_flight": 1}}})
    response = daemon.post([{"url": second_target.url()} for _ in range(20)])
    assert response.status_code == 202
    ids = response.json()["ids"]
    started = time.monotonic()
    deadline = started + 10
    while second_target.count() < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    delivered = second_target.count()
    received = second_target.received()
    print(f"\ncap 1, 20 jobs, queue.maxsize 20: {delivered} delivered within 10s "
          f"(first 11 within {received[min(10, len(received) - 1)]['t'] - received[0]['t']:.2f}s)")
    waiting = [j for j in states(daemon, ids) if j["state"] != "succeeded"]
    assert delivered == 20, (
        f"{20 - delivered} job(s) for an idle capped host still waiting after 10s, e.g. {waiting[:1]}")
    assert_clean_log(daemon)


# -- 9. parked jobs survive a reload that shrinks the queue

def test_parked_job_is_not_lost_when_a_reload_shrinks_the_queue(start_daemon, target, second_target):
    sections = {"pool": {"size": 2}, "queue": {"maxsize": 10},
                "destinations": {"overrides": {OTHER_HOST: {"max_in_flight": 1}}}}
    daemon = start_daemon(**sections)
    ids = [daemon.post({"url": second_target.url(delay=2)}).json()["id"]]
    wait_for(lambda: second_target.count() == 1, timeout=10, what="the capped host's first job in flight")
    ids.append(daemon.post({"url": second_target.url("/parked")}).json()["id"])
    wait_for(lambda: destination_metrics(daemon)["gq_destination_waiting"].get((OTHER_HOST,)) == 1,
             timeout=10, what="a job parked for the capped host")
    ids.append(daemon.post({"url": target.url(delay=3)}).json()["id"])
    wait_for(lambda: daemon.status()["pool_busy"] == 2, timeout=10, what="both workers busy")
    ids += daemon.post([{"url": target.url()} for _ in range(6)]).json()["ids"]
    assert daemon.status()["queue_depth"] == 6

    # 6 queued + 1 parked; the new bound holds the queued ones exactly.
    sections["queue"] = {"maxsize": 6}
    daemon.config_path.write_text(to_toml(daemon_config(**sections)))
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: daemon.status()["queue_maxsize"] == 6, timeout=10, what="the reload")

    deadline = time.monotonic() + 10
    while daemon.status()["finished"]["succeeded"] < len(ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    jobs = states(daemon, ids)
    print(f"\nafter the reload: {[(j['request']['url'].split('/', 3)[-1], j['state']) for j in jobs[:2]]}; "
          f"{sum(j['state'] == 'succeeded' for j in jobs)}/{len(ids)} succeeded")
    log = daemon.log()
    lost = [(j["id"], j["state"], j["attempts"], j["request"]["url"]) for j in jobs if j["state"] != "succeeded"]
    excerpt = log[log.find("Traceback"):][:1500] if "Traceback" in log else log[-1500:]
    assert not lost, f"jobs never delivered: {lost}\n{excerpt}"
    assert second_target.count() == 2
    assert_clean_log(daemon)


# -- 10. one host, however its address is spelled

def test_cap_counts_an_address_however_it_is_spelled(start_daemon, second_target):
    daemon = start_daemon(destinations={"overrides": {OTHER_HOST: {"max_in_flight": 1}}})
    port = second_target.port
    spellings = ("127.0.0.2", "127.2", "127.0.2", "2130706434")  # all connect to 127.0.0.2
    jobs = [{"url": f"http://{host}:{port}/hook?delay=0.5"} for host in spellings for _ in range(2)]
    response = daemon.post(jobs)
    assert response.status_code == 202
    ids = response.json()["ids"]
    peak = 0.0
    deadline = time.monotonic() + 20
    while daemon.status()["finished"]["succeeded"] < len(ids):
        assert time.monotonic() < deadline, daemon.status()
        in_flight = destination_metrics(daemon).get("gq_destination_in_flight", {})
        peak = max(peak, sum(in_flight.values()))
        time.sleep(0.02)
    labels = sorted(key[0] for key in destination_metrics(daemon)["gq_destination_in_flight"])
    print(f"\n127.0.0.2 spelled {len(spellings)} ways, override max_in_flight 1: peak in flight "
          f"{peak:g}; host labels {labels}")
    assert peak <= 1, f"{peak:g} attempts at once to 127.0.0.2 (override max_in_flight = 1)"
