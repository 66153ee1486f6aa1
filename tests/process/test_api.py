"""The intake API of a running daemon: what it accepts, delivers, reports and refuses."""

from __future__ import annotations

import json
import signal
import time
from typing import Any
from urllib.parse import quote

import pytest

from gq import __version__
from support import (
    DEADLINE,
    TOKEN,
    Daemon,
    closed_port,
    daemon_config,
    fetch,
    metric,
    new_id,
    records,
    rejected,
    samples,
    wait_for,
)

MAX_BODY = 2048
REJECT_REASONS = ("invalid", "unauthorized", "too_large", "queue_full", "draining")


# -- fixtures: one daemon and one target shared by the tests that only look at their own jobs


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    config = daemon_config(pool={"size": 4}, api={"max_body_bytes": MAX_BODY}, retry={"max_attempts": 3})
    started = Daemon(tmp_path_factory.mktemp("api"), config)
    yield started
    started.stop()


# -- helpers

def intake_counts(daemon: Daemon) -> dict[str, float | None]:
    """Accepted jobs and refusals by reason, from one scrape."""
    found = samples(daemon)
    counts = {r: found.get(("gq_intake_rejected_total", (("reason", r),))) for r in REJECT_REASONS}
    return {**counts, "accepted": found.get(("gq_jobs_accepted_total", ()))}


def wait_state(daemon: Daemon, job_id: str, state: str, timeout: float = DEADLINE) -> dict:
    def reached():
        job = fetch(daemon, f"/v1/jobs/{job_id}").json()
        return job if job.get("state") == state else None
    return wait_for(reached, timeout, f"job {job_id} to be {state}")


# -- accepting and delivering

def _sample_jobs(target) -> list[dict[str, Any]]:
    return [
        {"id": new_id("json"), "method": "PUT", "url": target.url("/orders/7", src="gq"),
         "headers": {"X-Trace": "trace-1"}, "json": {"n": 1, "items": [1, "two", None]}},
        {"id": new_id("body"), "method": "patch", "url": target.url("/raw"),
         "headers": {"Content-Type": "text/plain; charset=utf-8", "X-Trace": "trace-2"},
         "body": "plain text, {not json}, sent as is"},
        {"url": target.url("/bare")},
    ]


def _submit(daemon: Daemon, jobs: list[dict], form: str) -> list[str]:
    if form == "object":
        answers = [daemon.post(job) for job in jobs]
        assert [a.status_code for a in answers] == [202] * len(jobs)
        assert all(set(a.json()) == {"id"} for a in answers)
        return [a.json()["id"] for a in answers]
    if form == "array":
        answer = daemon.post(jobs, "application/json; charset=utf-8")
    elif form == "chunked array":
        text = json.dumps(jobs).encode()
        answer = _send(daemon, (text[i:i + 100] for i in range(0, len(text), 100)), "application/json")
    else:
        answer = daemon.post("\n".join(json.dumps(j) for j in jobs) + "\n", "application/x-ndjson")
    assert answer.status_code == 202, answer.text
    assert set(answer.json()) == {"ids"}
    return answer.json()["ids"]


@pytest.mark.parametrize("form", ["object", "array", "chunked array", "ndjson"])
def test_accepted_jobs_reach_the_target_once_as_sent(daemon, target, form):
    jobs = _sample_jobs(target)
    ids = _submit(daemon, jobs, form)
    assert ids[:2] == [jobs[0]["id"], jobs[1]["id"]] and ids[2]
    for job_id in ids:
        wait_state(daemon, job_id, "succeeded")
    received = {r["key"]: r for r in target.received()}
    assert sorted(received) == sorted(ids) and target.count() == 3

    as_json, as_body, bare = (received[i] for i in ids)
    assert (as_json["method"], as_json["path"], as_json["query"]) == ("PUT", "/orders/7", "src=gq")
    assert json.loads(as_json["body"]) == {"n": 1, "items": [1, "two", None]}
    assert as_json["headers"]["content-type"] == "application/json"
    assert (as_body["method"], as_body["path"]) == ("PATCH", "/raw")
    assert as_body["body"] == "plain text, {not json}, sent as is"
    assert as_body["headers"]["content-type"] == "text/plain; charset=utf-8"
    assert (bare["method"], bare["path"], bare["body"]) == ("POST", "/bare", "")
    assert as_json["headers"]["x-trace"] == "trace-1" and as_body["headers"]["x-trace"] == "trace-2"
    for job_id, record in received.items():
        assert record["headers"]["idempotency-key"] == job_id
        assert record["headers"]["user-agent"] == f"gq/{__version__}"


def test_job_states_queued_running_succeeded_dead(start_daemon, target):
    daemon = start_daemon(pool={"size": 1})
    hanging = daemon.post({"url": target.url(hang=1), "timeout": 1.5, "max_attempts": 1}).json()["id"]
    running = wait_state(daemon, hanging, "running")
    assert (running["attempts"], running["last_status"], running["last_error"]) == (1, None, None)

    waiting = daemon.post({"url": target.url()}).json()["id"]
    queued = daemon.job(waiting)
    assert (queued["state"], queued["attempts"], queued["last_status"]) == ("queued", 0, None)
    assert metric(daemon, "gq_pool_busy") == 1 and metric(daemon, "gq_queue_depth") == 1

    dead = wait_state(daemon, hanging, "dead")
    assert dead["attempts"] == 1 and dead["last_status"] is None and "timeout" in dead["last_error"]
    done = wait_state(daemon, waiting, "succeeded")
    assert (done["attempts"], done["last_status"], done["last_error"]) == (1, 200, None)


@pytest.mark.parametrize("job_id", ["with space", "slash/and?query=1", "p%C3%A9~!*'()"])
def test_a_job_is_found_by_the_id_it_was_accepted_with(daemon, shared_target, job_id):
    job_id = f"{job_id}-{new_id()}"
    assert daemon.post({"id": job_id, "url": shared_target.url()}).status_code == 202
    found = fetch(daemon, f"/v1/jobs/{quote(job_id, safe='')}")
    assert found.status_code == 200, found.text
    assert found.json()["id"] == job_id


@pytest.mark.parametrize("job_id", [".", "..", "replay"])
def test_an_id_no_url_can_name_is_refused(daemon, shared_target, job_id):
    """HTTP clients drop the dot segments of /v1/jobs/. and /v1/jobs/.. (the job could never
    be looked up or cancelled), and /v1/jobs/replay is the bulk replay."""
    answer = daemon.post({"id": job_id, "url": shared_target.url("/unreachable")})
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "id" and answer.json()["error"].startswith(f'id: "{job_id}"'), answer.text


@pytest.mark.parametrize("field, make", [
    ("id", lambda n: {"id": f"ジョブ-{n}"}),
    ("id", lambda n: {"id": f"café-{n}"}),
    ("headers.X-Name", lambda n: {"headers": {"X-Name": f"ジョブ {n}"}}),
], ids=["id", "latin-1 id", "header value"])
def test_text_headers_cannot_carry_is_refused_at_intake(daemon, shared_target, field, make):
    # The id is sent as Idempotency-Key: an id or header value HTTP cannot carry is a 400
    # at intake, not a job accepted and then never delivered.
    answer = daemon.post({"url": shared_target.url("/unicode"), **make(new_id())})
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field


def test_latin1_header_values_are_delivered(daemon, shared_target):
    n = new_id()
    assert daemon.post({"id": n, "url": shared_target.url("/latin1"),
                        "headers": {"X-Name": "café"}}).status_code == 202
    got = wait_for(lambda: [r for r in shared_target.received() if r["key"] == n], what="delivery")
    assert got[0]["headers"]["x-name"] == "café"


def test_unknown_job_id_is_404(daemon):
    response = daemon.get(f"/v1/jobs/{new_id('never')}")
    assert response.status_code == 404
    assert "id" in response.json()["error"]


# -- duplicates

@pytest.mark.parametrize("first_state, query", [("succeeded", {}), ("running", {"hang": 1})])
def test_a_known_id_is_delivered_once(daemon, target, first_state, query):
    job = {"id": new_id("dup"), "url": target.url(**query), "timeout": 2, "max_attempts": 1}
    assert daemon.post(job).status_code == 202
    wait_state(daemon, job["id"], first_state)
    accepted = metric(daemon, "gq_jobs_accepted_total")

    again = daemon.post(job)
    assert again.status_code == 200
    assert again.json() == {"id": job["id"], "duplicates": [job["id"]]}
    again = daemon.post([job])
    assert again.status_code == 200
    assert again.json() == {"ids": [job["id"]], "duplicates": [job["id"]]}
    fresh = {"id": new_id("fresh"), "url": target.url()}
    mixed = daemon.post([job, fresh])
    assert mixed.status_code == 202
    assert mixed.json() == {"ids": [job["id"], fresh["id"]], "duplicates": [job["id"]]}

    wait_state(daemon, fresh["id"], "succeeded")
    assert metric(daemon, "gq_jobs_accepted_total") == accepted + 1
    assert sorted(r["key"] for r in target.received()) == sorted([job["id"], fresh["id"]])


def test_the_same_id_twice_in_one_request_is_queued_once(daemon, target):
    job = {"id": new_id("twice"), "url": target.url()}
    answer = daemon.post([job, job])
    assert answer.status_code == 202
    assert answer.json() == {"ids": [job["id"], job["id"]], "duplicates": [job["id"]]}
    wait_state(daemon, job["id"], "succeeded")
    assert [r["key"] for r in target.received()] == [job["id"]]


# -- refusals

def _refused(target) -> dict:
    return {"id": new_id("refused"), "url": target.url("/refused")}


def _ndjson(*lines: Any) -> str:
    return "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"


def _chunks(size: int):
    for _ in range(size // 512):
        yield b" " * 512
    yield b"[]"


def _send(daemon: Daemon, body: Any, content_type: str):
    """POST a body: str, JSON-able, or a generator (sent chunked, without a Content-Length)."""
    if hasattr(body, "__next__"):
        return daemon.session.post(f"{daemon.api}/v1/jobs", data=body, timeout=30,
                                   headers={"Content-Type": content_type})
    return daemon.post(body, content_type)


# name → (body for a target, content type, status, reason, what the error must say, extra body fields)
REFUSALS = {
    "invalid JSON": (lambda t: '{"url": ', "application/json", 400, "invalid", "body", {}),
    "empty body": (lambda t: "", "application/json", 400, "invalid", "body", {}),
    "empty array": (lambda t: "[]", "application/json", 400, "invalid", "body", {}),
    "not UTF-8": (lambda t: b'{"url": "\xff"}', "application/json", 400, "invalid", "body", {}),
    "bad field in an array": (
        lambda t: [_refused(t), {**_refused(t), "timeout": -1}, _refused(t)],
        "application/json", 400, "invalid", "jobs[1].timeout", {"index": 1}),
    "unknown field": (lambda t: {**_refused(t), "retries": 3}, "application/json", 400, "invalid",
                      "retries", {}),
    "json and body": (lambda t: {**_refused(t), "json": {}, "body": "x"}, "application/json", 400,
                      "invalid", "body", {}),
    "not an http URL": (lambda t: {"url": "ftp://127.0.0.1/x"}, "application/json", 400, "invalid",
                        "url", {}),
    "metadata address": (lambda t: {"url": "http://169.254.169.254/latest/meta-data"},
                         "application/json", 400, "invalid", "url", {}),
    "reserved Idempotency-Key": (lambda t: {**_refused(t), "headers": {"Idempotency-Key": "mine"}},
                                 "application/json", 400, "invalid", "headers.Idempotency-Key", {}),
    "reserved User-Agent": (lambda t: {**_refused(t), "headers": {"User-Agent": "mine/1"}},
                            "application/json", 400, "invalid", "headers.User-Agent", {}),
    "bad NDJSON line": (lambda t: _ndjson(_refused(t), '{"url": oops', _refused(t)),
                        "application/x-ndjson", 400, "invalid", "line 2", {}),
    "bad field on an NDJSON line": (
        lambda t: _ndjson(_refused(t), "", {**_refused(t), "url": "gopher://x"}),
        "application/x-ndjson", 400, "invalid", ("line 3", "url"), {}),
    "wrong content type": (lambda t: json.dumps(_refused(t)), "text/plain", 415, "invalid",
                           "Content-Type", {}),
    "no content type": (lambda t: json.dumps(_refused(t)), None, 415, "invalid", "Content-Type", {}),
    "body too large": (lambda t: [{**_refused(t), "body": "x" * MAX_BODY}], "application/json", 413,
                       "too_large", "max_body_bytes", {}),
    "chunked body too large": (lambda t: _chunks(MAX_BODY * 2), "application/json", 413, "too_large",
                               "max_body_bytes", {}),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_name_the_field_are_counted_and_deliver_nothing(daemon, shared_target, case):
    make, content_type, status, reason, names, extra = REFUSALS[case]
    before = intake_counts(daemon)

    response = _send(daemon, make(shared_target), content_type)

    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str)
    for name in (names,) if isinstance(names, str) else names:
        assert name in body["error"]
    assert {k: body.get(k) for k in extra} == extra
    assert intake_counts(daemon) == {**before, reason: before[reason] + 1}
    sentinel = daemon.post({"url": shared_target.url("/sentinel")}).json()["id"]
    wait_state(daemon, sentinel, "succeeded")
    assert not [r for r in shared_target.received() if r["path"] == "/refused"]


def test_a_url_without_its_scheme_is_quoted_as_sent(daemon):
    response = daemon.post({"url": "127.0.0.1:9000/hook"})
    assert response.status_code == 400
    assert response.json() == {"error": 'url: needs http:// or https://, got "127.0.0.1:9000/hook"', "field": "url"}


def test_a_body_of_exactly_max_body_bytes_is_accepted(daemon, shared_target):
    job = {"id": new_id("limit"), "url": shared_target.url(), "body": ""}
    job["body"] = "x" * (MAX_BODY - len(json.dumps(job)))
    assert len(json.dumps(job)) == MAX_BODY
    assert daemon.post(job).status_code == 202
    wait_state(daemon, job["id"], "succeeded")
    assert records(shared_target, job["id"])[0]["body"] == job["body"]


@pytest.mark.parametrize("method, path, status, allow", [
    ("GET", "/nowhere", 404, None),
    ("POST", "/v1/nothing", 404, None),
    ("PUT", "/v1/jobs", 405, "POST, GET"),
    ("PATCH", "/v1/jobs/some-id", 405, "GET, DELETE"),
    ("GET", "/v1/jobs/replay", 405, "POST"),
    ("POST", "/openapi.json", 405, "GET"),
])
def test_unknown_paths_and_wrong_methods(daemon, method, path, status, allow):
    response = daemon.session.request(method, f"{daemon.api}{path}", timeout=10)
    assert response.status_code == status
    assert response.json()["error"]
    assert response.headers.get("Allow") == allow


def _timed_post(daemon: Daemon, body: Any):
    started = time.monotonic()
    response = daemon.post(body)
    return response, time.monotonic() - started


def _assert_queue_full(daemon: Daemon, jobs: list[dict], enqueue_timeout: float) -> None:
    refused, waited = _timed_post(daemon, jobs)
    assert refused.status_code == 429 and refused.headers["Retry-After"].isdigit()
    assert refused.json()["error"]
    assert waited >= enqueue_timeout * 0.9, "refused before queue.enqueue_timeout"


def test_a_full_queue_refuses_with_429_and_retry_after(start_daemon, target):
    daemon = start_daemon(pool={"size": 1}, queue={"maxsize": 2, "enqueue_timeout": 0.5})

    def hang(n: int = 1) -> list[dict]:
        return [{"url": target.url(hang=1)} for _ in range(n)]

    too_many, waited = _timed_post(daemon, hang(3))
    assert too_many.status_code == 429 and too_many.headers["Retry-After"].isdigit()
    assert "queue.maxsize" in too_many.json()["error"]
    assert waited < 0.4, "a batch larger than queue.maxsize waited for room"

    assert daemon.post(hang()).status_code == 202
    wait_for(lambda: fetch(daemon, "/v1/status").json()["pool_busy"] == 1, what="a job in flight")
    assert daemon.post(hang()).status_code == 202
    _assert_queue_full(daemon, hang(2), 0.5)  # room for one: a batch of two is refused whole
    assert daemon.post(hang()).status_code == 202
    _assert_queue_full(daemon, hang(), 0.5)

    assert fetch(daemon, "/v1/status").json()["queue_depth"] == 2
    assert rejected(daemon, "queue_full") == 3
    assert metric(daemon, "gq_jobs_accepted_total") == 3
    assert target.count() == 1


def test_draining_refuses_with_503_and_retry_after(start_daemon, target):
    daemon = start_daemon(pool={"size": 1}, shutdown={"drain_timeout": 1})
    daemon.post({"url": target.url(hang=1)})
    wait_for(lambda: target.count() == 1, what="a job in flight")
    daemon.signal(signal.SIGTERM)
    wait_for(lambda: fetch(daemon, "/readyz").status_code == 503, what="/readyz 503 while draining")

    refused = daemon.post({"url": target.url()})
    assert refused.status_code == 503 and refused.headers["Retry-After"].isdigit()
    assert refused.json()["error"]
    assert rejected(daemon, "draining") == 1
    assert metric(daemon, "gq_draining") == 1
    assert daemon.get("/healthz").status_code == 200
    assert daemon.wait() == 0
    assert target.count() == 1


# -- the token

@pytest.mark.parametrize("authorization", [None, f"Basic {TOKEN}", "Bearer wrong", f"Bearer {TOKEN}x",
                                           "Bearer", TOKEN])
def test_v1_needs_the_bearer_token(token_daemon, shared_target, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    before = rejected(token_daemon, "unauthorized")
    answers = [token_daemon.post({"url": shared_target.url("/refused")}, headers=headers),
               token_daemon.get(f"/v1/jobs/{new_id()}", headers=headers),
               token_daemon.get("/v1/status", headers=headers)]
    assert [a.status_code for a in answers] == [401] * 3
    assert all("Authorization" in a.json()["error"] for a in answers)
    assert rejected(token_daemon, "unauthorized") == before + 3
    assert metric(token_daemon, "gq_jobs_accepted_total") == 0


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_the_right_token_is_accepted(token_daemon, target, scheme):
    auth = {"Authorization": f"{scheme} {TOKEN}"}
    answer = token_daemon.post({"url": target.url()}, headers=auth)
    assert answer.status_code == 202
    job_id = answer.json()["id"]
    wait_for(lambda: token_daemon.get(f"/v1/jobs/{job_id}", headers=auth).json()["state"] == "succeeded",
             what="the job to succeed")
    assert [r["key"] for r in target.received()] == [job_id]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_health_and_metrics_need_no_token(token_daemon, path):
    assert token_daemon.get(path).status_code == 200


# -- health and metrics

def test_health_and_readiness(daemon):
    assert daemon.get("/healthz").status_code == 200
    assert daemon.get("/readyz").status_code == 200


def test_metrics_count_what_was_done(start_daemon, target):
    daemon = start_daemon(pool={"size": 2}, queue={"maxsize": 50})
    jobs = [{"url": target.url()} for _ in range(3)]
    jobs += [{"url": target.url(status=404)}, {"url": target.url(fail=1)}]
    assert daemon.post(jobs).status_code == 202
    wait_for(lambda: metric(daemon, "gq_jobs_finished_total", outcome="succeeded") == 4
             and metric(daemon, "gq_jobs_finished_total", outcome="dead") == 1, what="5 jobs finished")
    wait_for(lambda: metric(daemon, "gq_pool_busy") == 0, what="the pool to be idle")

    expected = {
        ("gq_jobs_accepted_total", ()): 5,
        ("gq_jobs_finished_total", (("outcome", "succeeded"),)): 4,
        ("gq_jobs_finished_total", (("outcome", "dead"),)): 1,
        ("gq_attempts_total", (("result", "success"),)): 4,
        ("gq_attempts_total", (("result", "retry"),)): 1,
        ("gq_attempts_total", (("result", "fail"),)): 1,
        ("gq_attempt_duration_seconds_count", ()): 6,
        ("gq_queue_wait_seconds_count", ()): 6,
        ("gq_queue_depth", ()): 0, ("gq_queue_maxsize", ()): 50,
        ("gq_pool_busy", ()): 0, ("gq_pool_size", ()): 2,
        ("gq_retry_scheduled", ()): 0, ("gq_journal_pending", ()): 0,
        ("gq_dead_letters", ()): 1, ("gq_draining", ()): 0,
        **{("gq_intake_rejected_total", (("reason", r),)): 0 for r in REJECT_REASONS},
    }
    found = samples(daemon)
    assert {key: found.get(key) for key in expected} == expected
    assert ("gq_attempt_duration_seconds_bucket", (("le", "+Inf"),)) in found
    assert any(name.startswith("process_") for name, _ in found)
    assert target.count() == 6


# -- what the target does wrong

def _url(target, query: dict | None) -> str:
    if query is None:
        return f"http://127.0.0.1:{closed_port()}/gone"
    return target.url("/misbehave", **query)


# name → (query, or None for a refused connection; extra job fields; state, attempts, last_status,
#         what last_error must contain (None: no error), requests the target sees)
OUTCOMES = {
    "garbage answer": ({"garbage": 1}, {}, "dead", 3, None, "", 3),
    "closed without an answer": ({"close": 1}, {}, "dead", 3, None, "", 3),
    "connection refused": (None, {}, "dead", 3, None, "connect", 0),
    "hangs past the job timeout": ({"hang": 1}, {"timeout": 0.3}, "dead", 3, None, "timeout", 3),
    "redirect is not followed": ({"status": 302}, {}, "dead", 1, 302, None, 1),
    "404 is dead at once": ({"status": 404}, {}, "dead", 1, 404, None, 1),
    "400 is dead at once": ({"status": 400}, {}, "dead", 1, 400, None, 1),
    "max_attempts of the job wins": ({"close": 1}, {"max_attempts": 2}, "dead", 2, None, "", 2),
    "503, Retry-After 0, then 200": ({"fail": 2, "retry_after": 0}, {}, "succeeded", 3, 200, None, 3),
    "408 then 200": ({"fail": 1, "fail_status": 408}, {}, "succeeded", 2, 200, None, 2),
    "425 then 200": ({"fail": 1, "fail_status": 425}, {}, "succeeded", 2, 200, None, 2),
    "429 then 200": ({"fail": 1, "fail_status": 429}, {}, "succeeded", 2, 200, None, 2),
    "500 then 200": ({"fail": 1, "fail_status": 500}, {}, "succeeded", 2, 200, None, 2),
}


@pytest.mark.parametrize("case", list(OUTCOMES))
def test_attempts_are_classified_and_retried(daemon, shared_target, case):
    query, fields, state, attempts, last_status, error, seen = OUTCOMES[case]
    job_id = daemon.post({"url": _url(shared_target, query), **fields}).json()["id"]
    job = wait_state(daemon, job_id, state)
    assert (job["attempts"], job["last_status"]) == (attempts, last_status)
    if error is None:
        assert job["last_error"] is None
    else:
        assert job["last_error"] and error in job["last_error"]
    assert len(records(shared_target, job_id)) == seen
    assert daemon.get("/healthz").status_code == 200
    assert daemon.get("/readyz").status_code == 200


@pytest.mark.parametrize("retry_after, backoff_max, least, most", [(1, 2.0, 0.9, 5), (30, 0.5, 0.4, 5)])
def test_retry_after_is_honoured_up_to_backoff_max(start_daemon, target, retry_after, backoff_max,
                                                   least, most):
    daemon = start_daemon(retry={"backoff_base": 0.05, "backoff_max": backoff_max})
    job_id = daemon.post({"url": target.url(fail=1, retry_after=retry_after)}).json()["id"]
    waiting = wait_state(daemon, job_id, "retrying")
    assert (waiting["attempts"], waiting["last_status"]) == (1, 503)
    done = wait_state(daemon, job_id, "succeeded")
    assert (done["attempts"], done["last_status"]) == (2, 200)
    first, second = (r["t"] for r in target.received())
    assert least <= second - first < most


def test_keep_alive_reuses_connections(daemon, target):
    for _ in range(4):
        assert daemon.post([{"url": target.url("/ka")} for _ in range(50)]).status_code == 202
    wait_for(lambda: target.count() >= 200, what="200 jobs delivered")
    stats = target.stats()
    assert (stats["count"], stats["keys"], stats["duplicates"]) == (200, 200, 0)
    assert stats["connections"] <= 20, f"{stats['connections']} connections for 200 jobs"
