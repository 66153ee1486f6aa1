"""gq/intake/openapi.json, the description of gq's HTTP API: the one a running daemon serves at
/openapi.json, and one whose claims a running daemon keeps (the document itself:
tests/unit/test_openapi_document.py).

Schemathesis makes requests from the document (valid ones and ones it says are invalid) and
sends them to a real daemon; every answer must be one the document describes: no 5xx, a
documented status, content type, headers and body; then the daemon must still serve and
drain cleanly. Jobs it makes can only reach loopback (target.allowed_hosts), and those
without a url go to a real target. A daemon on the Redis broker answers what that broker
cannot do yet as documented too."""

from __future__ import annotations

import json
import signal
from importlib import resources

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from support import TOKEN, Daemon, assert_clean_log, daemon_config, healthy, new_id
from support.hostile_input import crafted_cursors

DOCUMENT = resources.files("gq.intake").joinpath("openapi.json")
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines")
# Requests per operation and phase: enough to reach every branch of the schemas, few enough
# for the whole module to take well under two minutes on two cores.
MAX_EXAMPLES = 100
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection, unsupported_method, allow_header_conformance,
          ignored_auth]
# Along links: not use_after_free, since a cancelled job stays visible (as cancelled) by design.
LINK_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
               response_schema_conformance, ensure_resource_availability]
STATEFUL_EXAMPLES = 30
CONFORMANCE = [status_code_conformance, content_type_conformance, response_headers_conformance,
               response_schema_conformance]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def document() -> dict:
    return json.loads(DOCUMENT.read_text(encoding="utf-8"))


# -- a running daemon

@pytest.fixture(scope="module")
def daemon(tmp_path_factory, shared_target):
    """A daemon with a token and a journal, whose jobs can only go to loopback: those without
    a url to the target."""
    workdir = tmp_path_factory.mktemp("openapi")
    config = daemon_config(
        api={"token": TOKEN},
        journal={"path": str(workdir / "journal.sqlite3")},
        pool={"size": 8},
        target={"url": shared_target.url("/hook"), "allowed_hosts": ["127.0.0.1"], "timeout": 2.0},
        retry={"max_attempts": 2},
        shutdown={"drain_timeout": 5.0},
    )
    started = Daemon(workdir, config)
    started.auth = AUTH
    yield started
    started.stop()


def test_daemon_serves_the_document(daemon):
    answer = requests.get(f"{daemon.api}/openapi.json", timeout=10)  # no token: never needed
    assert answer.status_code == 200, answer.text[:300]
    assert answer.headers["Content-Type"].split(";")[0] == "application/json"
    assert answer.json() == document()


@schemathesis.serializer(*NDJSON_TYPES)
def _ndjson(ctx, value) -> bytes | None:
    """NDJSON: one line per job of the array Schemathesis made. A value that is not an
    array (made to break the schema) has no NDJSON form (one object would read as one
    line, a valid batch of one): it is sent as no body at all, which gq refuses too."""
    if not isinstance(value, list):
        return None
    return "".join(json.dumps(item) + "\n" for item in value).encode()


# Every refusal gq documents counts as refusing data the document calls invalid.
REFUSALS = ["400", "401", "404", "405", "408", "409", "413", "415", "429", "503"]
schema = schemathesis.openapi.from_path(str(DOCUMENT), config=schemathesis.Config.from_dict({
    "auth": {"openapi": {"bearerAuth": {"bearer": TOKEN}}},
    "checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}},
}))


def crafting_cursors(label: str):
    """A flatmap hook: some of `label`'s requests without a cursor get one of gq's form holding
    what gq never writes (huge integers, 400-digit floats, deep nesting), refused with 400. A
    cursor Schemathesis made is left alone, so that one it made invalid stays so."""
    def hook(context, values):
        if not isinstance(values, dict) or "cursor" in values or context.operation.label != label:
            return st.just(values)
        return st.one_of(st.just(values), crafted_cursors.map(lambda c: {**values, "cursor": c}))
    return hook


schema.hook("flatmap_query")(crafting_cursors("GET /v1/jobs"))
schema.hook("flatmap_body")(crafting_cursors("POST /v1/jobs/replay"))


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_daemon_keeps_the_document(case, daemon):
    case.call_and_validate(base_url=daemon.api, checks=CHECKS, timeout=30)


def test_daemon_keeps_the_document_along_its_links(daemon):
    """Sequences of calls that follow the document's links: a job submitted, then looked up,
    cancelled, replayed; each answer checked as above, and a job accepted must be found."""

    class Calls(schema.as_state_machine()):
        def before_call(self, case):
            # A job's life is what is tested here (refusals are the test above's): jobs go to
            # the target (no url), each a new one (no id: a duplicate would be answered 200,
            # not 202, when Hypothesis draws a sequence again, and it would call that flaky).
            if case.operation.label == "POST /v1/jobs":
                for job in case.body if isinstance(case.body, list) else [case.body]:
                    if isinstance(job, dict):
                        job.pop("url", None)
                        job.pop("id", None)

        def get_call_kwargs(self, case):
            return {"base_url": daemon.api, "timeout": 30}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=LINK_CHECKS, transport_kwargs=kwargs)

    # Generation only: shrinking replays calls, and the daemon's jobs have moved on meanwhile
    # (a cancelled job cannot be cancelled again), which Hypothesis takes for a flaky test.
    Calls.run(settings=settings(max_examples=STATEFUL_EXAMPLES, stateful_step_count=6, deadline=None,
                                suppress_health_check=list(HealthCheck), database=None, phases=[Phase.generate]))


def test_daemon_outlives_the_requests(daemon):
    """After everything Schemathesis sent (this test runs after those above): still serving,
    nothing logged as an internal error, and a clean drain on SIGTERM."""
    assert healthy(daemon)
    assert requests.get(f"{daemon.api}/v1/status", headers=daemon.auth, timeout=10).status_code == 200
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0, daemon.log()[-4000:]
    assert_clean_log(daemon)


def test_redis_broker_answers_as_documented(redis_server, start_daemon, shared_target):
    """On the Redis broker every operation answers as documented: listing and replay (no 501),
    scheduled and ordered jobs, cancel."""
    daemon = start_daemon(api={"token": TOKEN}, broker={"kind": "redis", "url": redis_server.url},
                          target={"url": shared_target.url("/hook"), "allowed_hosts": ["127.0.0.1"]})
    job_id = new_id("redis")
    calls = [
        ("listJobs", {"query": {"state": "dead"}}, 200),
        ("replayJobs", {"body": {"ids": [job_id]}}, 200),
        ("replayJobs", {"body": {"state": "dead", "limit": 10}}, 200),
        ("submitJobs", {"body": {"id": job_id, "delay": 600, "ordering_key": "k"}}, 202),
        ("getJob", {"path_parameters": {"id": job_id}}, 200),
        ("cancelJob", {"path_parameters": {"id": job_id}}, 200),
        ("cancelJob", {"path_parameters": {"id": job_id}}, 409),
        ("listJobs", {"query": {"state": "cancelled", "limit": 1}}, 200),
        ("replayJobs", {"body": {"ids": [job_id]}}, 200),
        ("getStatus", {}, 200),
    ]
    for operation_id, parts, expected in calls:
        operation = schema.find_operation_by_id(operation_id)
        case = operation.Case(media_type="application/json" if "body" in parts else None, **parts)
        answer = case.call_and_validate(base_url=daemon.api, headers=AUTH, checks=CONFORMANCE, timeout=30)
        assert answer.status_code == expected, f"{operation_id} {parts}: {answer.status_code} {answer.text[:300]}"
