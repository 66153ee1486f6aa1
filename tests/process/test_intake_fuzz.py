"""Fuzzing the intake of a running gq (hypothesis): random and mutated bodies, wrong
encodings, deep nesting, huge numbers, bodies at the size limit, random content types,
NDJSON. Every answer is 2xx or 4xx, every accepted job reaches the target as it was sent,
and gq stays healthy. After the fuzzing, the bugs it found, pinned down one by one. Then
every accepted id named by its URL, and every parameter of the operators' endpoints
(GET /v1/jobs, POST /v1/jobs/replay, GET and DELETE /v1/jobs/{id}) fuzzed on each broker:
2xx, or 4xx naming the field, never 5xx.

The daemon is conftest's `gq` (restarted when a test broke it), and `operated` for the
operators' endpoints; requests go out exactly as given (support.exchange).
"""

from __future__ import annotations

import json
import math
import re
import sys
import uuid
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest
import requests
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from gq import __version__
from support import (
    FUZZED_MAX_BODY,
    Answer,
    Daemon,
    daemon_config,
    exchange,
    final_state,
    healthy,
    new_id,
    records,
)
from support.hostile_input import (
    CRAFTED_CURSORS,
    HOSTILE_NUMBERS,
    NUMBERS,
    crafted,
    crafted_cursors,
    json_values,
    nested,
    texts,
)

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines")


@contextmanager
def deep_recursion(limit: int = 3000):
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


def strict_json(text: str) -> Any:
    """JSON as RFC 8259 has it: no NaN, no Infinity, no number that overflows to one."""
    return json.loads(text, parse_constant=_no_constants, parse_float=_finite)


def same_json(a: Any, b: Any) -> bool:
    """Equal values of the same JSON types (1 is not 1.0, true is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return a == b


# -- the model of what an accepted job must look like at the target ----------------------------

def sent_jobs(body: bytes, content_type: str | None) -> list[Any] | None:
    """The job objects in a request body, read the way the contract says; None if it holds none."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in JSON_TYPES + NDJSON_TYPES:
        return None
    try:
        text = body.decode("utf-8")
        with deep_recursion():
            if media in NDJSON_TYPES:
                return [json.loads(line) for line in text.split("\n") if line.strip()]
            data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, list) else [data]


def deliverable(obj: Any, target) -> bool:
    """A job the target must receive intact: a plain URL on the target, a timeout not too short."""
    if not isinstance(obj, dict) or not isinstance(obj.get("url"), str):
        return False
    try:
        url = urlsplit(obj["url"])
        port = url.port
    except ValueError:
        return False
    timeout = obj.get("timeout")
    if timeout is not None and not isinstance(timeout, (int, float)):
        return False
    return (url.scheme == "http" and url.hostname == "127.0.0.1" and port == target.port
            and not url.query and not url.fragment and re.fullmatch(r"/fz/[^./?#]*", url.path) is not None
            and "@" not in url.netloc and (timeout is None or timeout >= 2))


def check_delivered(daemon: Daemon, target, job_id: str, obj: dict, context: str) -> None:
    """The job succeeded and the target received it as it was sent."""
    obj = {name: value for name, value in obj.items() if value is not None or name == "json"}  # null: left out
    job = final_state(daemon, job_id)
    assert job["state"] == "succeeded", f"accepted job {job_id!r} was not delivered: {job}\n{context}"
    got = records(target, job_id.strip())
    assert got, f"target never received accepted job {job_id!r}\n{context}"
    r = got[-1]
    assert r["key"] == job_id, f"Idempotency-Key {r['key']!r} is not the job id {job_id!r}\n{context}"
    assert r["method"] == obj.get("method", "POST").upper(), context
    assert unquote(r["path"]) == unquote(urlsplit(obj["url"]).path), context
    expected_headers: dict[str, str] = {}
    for name, value in obj.get("headers", {}).items():
        expected_headers[name.lower()] = value
    for name, value in expected_headers.items():
        assert r["headers"].get(name) == value.strip(), (
            f"header {name}: sent {value!r}, target received {r['headers'].get(name)!r}\n{context}")
    assert r["headers"].get("user-agent") == f"gq/{__version__}", context
    if "body" in obj:
        assert r["body"] == obj["body"], f"body: sent {obj['body']!r}, received {r['body']!r}\n{context}"
    elif "json" in obj:
        if "content-type" not in expected_headers:
            assert r["headers"].get("content-type") == "application/json", context
        try:
            with deep_recursion():
                received = strict_json(r["body"])
        except (ValueError, RecursionError) as e:
            pytest.fail(f"target received invalid JSON {r['body'][:200]!r} ({e}) for json field "
                        f"{json.dumps(obj['json'])[:200]}\n{context}")
        with deep_recursion():
            assert same_json(received, obj["json"]), (
                f"json: sent {json.dumps(obj['json'])[:300]}, received {r['body'][:300]!r}\n{context}")
    else:
        assert r["body"] == "", context


def check_answer(daemon: Daemon, target, body: bytes, content_type: str | None, answer: Answer,
                 chunked: bool = False) -> None:
    """What every request must get: 2xx or 4xx (JSON with "error"), accepted jobs intact, gq alive."""
    context = (f"request: Content-Type {content_type!r}{' chunked' if chunked else ''}, "
               f"{len(body)} bytes: {body[:600]!r}{'...' if len(body) > 600 else ''}\nanswer: {answer}")
    event(f"answer {answer.status}")
    assert answer.status is not None, f"no answer to a well-formed request\n{context}"
    assert 200 <= answer.status < 500, f"server error\n{context}"
    if answer.status >= 400:
        assert answer.headers.get("content-type", "").startswith("application/json"), context
        assert isinstance(answer.json().get("error"), str), context
    else:
        objects = sent_jobs(body, content_type)
        assert objects is not None, f"accepted a body that holds no jobs\n{context}"
        reply = answer.json()
        ids = [reply["id"]] if "id" in reply else reply["ids"]
        assert len(ids) == len(objects), context
        skip = set(reply.get("duplicates", []))
        for job_id, obj in zip(ids, objects):
            if job_id not in skip and deliverable(obj, target):
                event("a job checked at the target")
                check_delivered(daemon, target, job_id, obj, context)
    assert healthy(daemon), f"/healthz does not answer 200 after\n{context}"


FUZZ = settings(deadline=None, database=None, phases=(Phase.explicit, Phase.generate),
                suppress_health_check=list(HealthCheck), print_blob=True)
# Not shrunk: each example is a round trip to a daemon that a failure may have broken; the
# failing request is printed whole instead.


# -- fuzzing the intake ------------------------------------------------------------------------

JSON_SNIPPETS = ['"', "\\", "\\u0000", "\\ud800", "\\udc00", ",", ":", "{", "}", "[", "]", "null", "1e999",
                 "NaN", "Infinity", "-0", "\n", "\r\n", "\u2028", "\x00", " ", '"id":', '"json":',
                 '"headers":{"A":" x"}', '"timeout":1e-300', '"max_attempts":1.5']

ascii_ids = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=0, max_size=20)
header_names = st.one_of(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,12}", fullmatch=True),
                         st.sampled_from(["Authorization", "Content-Type", "X-Trace", "Cookie", "Accept",
                                          "Idempotency-Key", "Host", "Content-Length", "X-A", "x-a",
                                          "Bad Name", "X:Y", ""]))
path_parts = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x17F,
                                   exclude_characters="./?#"), max_size=12)
FIELDS = ("id", "method", "url", "headers", "json", "body", "timeout", "max_attempts")


@st.composite
def job_objects(draw, base: str) -> dict:
    """A job, valid most of the time, aimed at the target."""
    obj: dict[str, Any] = {}
    if draw(st.booleans()):
        obj["id"] = draw(ascii_ids if draw(st.integers(0, 3)) else texts)
    if draw(st.booleans()):
        obj["method"] = draw(st.sampled_from(["POST", "PUT", "PATCH", "DELETE", "GET", "OPTIONS", "post", "Put"])
                             if draw(st.integers(0, 3)) else texts)
    obj["url"] = f"{base}/fz/{draw(path_parts)}"
    if draw(st.booleans()):
        obj["headers"] = draw(st.dictionaries(header_names, texts, max_size=4))
    kind = draw(st.sampled_from(["none", "body", "json"]))
    if kind == "body":
        obj["body"] = draw(texts)
    elif kind == "json":
        obj["json"] = draw(json_values)
    if draw(st.integers(0, 4)) == 0:
        obj["timeout"] = draw(st.one_of(st.floats(2, 30), st.integers(2, 30)))
    if draw(st.integers(0, 4)) == 0:
        obj["max_attempts"] = draw(st.integers(1, 3))
    return obj


structural = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(FIELDS + ("retries", "")), json_values),
    st.tuples(st.just("del"), st.sampled_from(FIELDS), st.none()))
textual = st.tuples(st.sampled_from(["insert", "delete", "replace", "repeat"]), st.floats(0, 1),
                    st.one_of(st.sampled_from(JSON_SNIPPETS), st.text(max_size=4)))


def mutate_text(text: str, ops) -> str:
    for op, where, payload in ops:
        i = int(where * len(text))
        if op == "insert":
            text = text[:i] + payload + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + 1 + len(payload):]
        elif op == "replace":
            text = text[:i] + payload + text[i + len(payload):]
        else:
            text = text[:i] + text[i:i + 8] * 3 + text[i + 8:]
    return text


def unique(obj: dict, nonce: str) -> dict:
    """Ids made unique per example (a repeated id is a duplicate, not delivered again)."""
    if isinstance(obj.get("id"), str):
        obj = {**obj, "id": f"{nonce}{obj['id']}"[:256]}
    return obj


def encode_jobs(objects: list[dict], form: str, ensure_ascii: bool) -> tuple[str, str]:
    if form == "object":
        return json.dumps(objects[0], ensure_ascii=ensure_ascii), "application/json"
    if form == "array":
        return json.dumps(objects, ensure_ascii=ensure_ascii), "application/json; charset=utf-8"
    return "\n".join(json.dumps(o, ensure_ascii=ensure_ascii) for o in objects) + "\n", "application/x-ndjson"


@settings(FUZZ, max_examples=25)
@given(body=st.one_of(st.binary(max_size=2048), st.sampled_from([b"", b"{}", b"[]", b"[{}]", b"null", b"\x00",
                                                                 b"\xff\xfe{", b"{\"url\":"])),
       content_type=st.sampled_from(["application/json", "application/x-ndjson"]),
       chunked=st.booleans())
def test_fuzz_random_bytes(gq, shared_target, body, content_type, chunked):
    answer = exchange(gq.api, body, content_type, chunked=chunked)
    check_answer(gq, shared_target, body, content_type, answer, chunked)


@settings(FUZZ, max_examples=45)
@given(data=st.data())
def test_fuzz_mutated_jobs(gq, shared_target, data):
    objects = data.draw(st.lists(job_objects(shared_target.base), min_size=1, max_size=3), "jobs")
    nonce = f"fz{uuid.uuid4().hex[:8]}-"
    objects = [unique(o, nonce) for o in objects]
    for op, name, value in data.draw(st.lists(structural, max_size=2), "structural mutations"):
        target_obj = objects[0]
        if op == "set":
            target_obj[name] = value
        else:
            target_obj.pop(name, None)
    form = data.draw(st.sampled_from(["object", "array", "ndjson"]), "form")
    text, content_type = encode_jobs(objects, form, data.draw(st.booleans(), "ensure_ascii"))
    text = mutate_text(text, data.draw(st.lists(textual, max_size=2), "text mutations"))
    body = text.encode("utf-8", "surrogatepass")
    answer = exchange(gq.api, body, content_type, expect_continue=data.draw(st.booleans(), "expect"))
    check_answer(gq, shared_target, body, content_type, answer)


@settings(FUZZ, max_examples=15)
@given(encoding=st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252",
                                 "utf-8-sig", "utf-7", "utf-8"]),
       word=st.sampled_from(["plain", "café", "naïve €", "日本", "\U0001F600"]))
def test_fuzz_wrong_encodings(gq, shared_target, encoding, word):
    job = {"id": new_id("enc"), "url": shared_target.url("/fz/enc"), "body": word}
    text = json.dumps(job, ensure_ascii=False)
    try:
        body = text.encode(encoding)
    except UnicodeEncodeError:
        body = text.encode(encoding, "replace")
    answer = exchange(gq.api, body, "application/json")
    try:
        body.decode("utf-8")
        is_utf8 = True
    except UnicodeDecodeError:
        is_utf8 = False
    if not is_utf8:
        assert answer.status == 400 and "body" in answer.json()["error"], f"{encoding}: {answer}"
    check_answer(gq, shared_target, body, "application/json", answer)


@settings(FUZZ, max_examples=25)
@given(depth=st.one_of(st.integers(1, 1200), st.sampled_from([510, 511, 512, 513, 960, 1000, 5000, 100_000])),
       opener=st.sampled_from(["[", '{"a":']), closed=st.booleans(),
       where=st.sampled_from(["json", "top", "headers", "id"]),
       number=st.sampled_from(NUMBERS), use_number=st.booleans(),
       number_field=st.sampled_from(["json", "timeout", "max_attempts", "method", "run_at", "delay"]))
def test_fuzz_deep_nesting_and_huge_numbers(gq, shared_target, depth, opener, closed, where, number,
                                            use_number, number_field):
    url = json.dumps(shared_target.url("/fz/deep"))
    job_id = json.dumps(new_id("deep"))
    if use_number:
        text = f'{{"id":{job_id},"url":{url},"{number_field}":{number}}}'
    else:
        closer = "]" if opener == "[" else "}"
        nested = opener * depth + ("1" if opener != "[" else "") + (closer * depth if closed else "")
        text = {"json": f'{{"id":{job_id},"url":{url},"json":{nested}}}',
                "top": nested,
                "headers": f'{{"id":{job_id},"url":{url},"headers":{nested}}}',
                "id": f'{{"id":{nested},"url":{url}}}'}[where]
    body = text.encode()
    if len(body) > FUZZED_MAX_BODY:
        body = body[:FUZZED_MAX_BODY]
    answer = exchange(gq.api, body, "application/json")
    check_answer(gq, shared_target, body, "application/json", answer)


CONTENT_TYPES = ["application/json", "APPLICATION/JSON", "application/json; charset=utf-8",
                 "application/json;charset=latin-1", "application/json ; x=y", "application/jsonx",
                 "application/x-ndjson", "application/jsonl", "application/json-lines", "text/json",
                 "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                 "", ";", "application/json, text/plain", "application/ json", "*/*"]


@settings(FUZZ, max_examples=15)
@given(content_type=st.one_of(st.sampled_from(CONTENT_TYPES),
                              st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF), max_size=30)))
def test_fuzz_content_types(gq, shared_target, content_type):
    job = {"id": new_id("ctype"), "url": shared_target.url("/fz/ctype"), "json": {"k": "v"}}
    body = json.dumps(job).encode()
    answer = exchange(gq.api, body, content_type)
    media = content_type.split(";")[0].strip().lower()
    if media in JSON_TYPES + NDJSON_TYPES:
        assert answer.status == 202, f"Content-Type {content_type!r}: {answer}"
    else:
        assert answer.status == 415, f"Content-Type {content_type!r}: {answer}"
        assert "Content-Type" in answer.json()["error"]
    check_answer(gq, shared_target, body, content_type, answer)


@st.composite
def ndjson_lines(draw, base: str) -> str:
    kind = draw(st.sampled_from(["job"] * 6 + ["blank", "spaces", "text", "json"]))
    if kind == "job":
        return json.dumps(unique(draw(job_objects(base)), f"nd{uuid.uuid4().hex[:8]}-"))
    if kind == "blank":
        return ""
    if kind == "spaces":
        return draw(st.sampled_from([" ", "\t", "\r", " \t \r", "\u2028", "\xa0"]))
    if kind == "json":
        return json.dumps(draw(json_values))
    return draw(texts)


@settings(FUZZ, max_examples=15)
@given(data=st.data())
def test_fuzz_ndjson(gq, shared_target, data):
    lines = data.draw(st.lists(ndjson_lines(shared_target.base), max_size=6), "lines")
    end = data.draw(st.sampled_from(["\n", "\r\n"]), "line end")
    text = end.join(lines) + (end if data.draw(st.booleans(), "final newline") else "")
    body = text.encode("utf-8", "surrogatepass")
    content_type = data.draw(st.sampled_from(NDJSON_TYPES), "content type")
    answer = exchange(gq.api, body, content_type)
    check_answer(gq, shared_target, body, content_type, answer)


@settings(FUZZ, max_examples=10)
@given(delta=st.one_of(st.integers(-40, 40), st.sampled_from([0, 1])),
       field_name=st.sampled_from(["body", "json", "header"]), ndjson=st.booleans(),
       chunked=st.booleans())
def test_fuzz_bodies_at_the_size_limit(gq, shared_target, delta, field_name, ndjson, chunked):
    job: dict[str, Any] = {"id": new_id("limit"), "url": shared_target.url("/fz/limit")}
    job.update({"body": ""} if field_name == "body" else {"json": ""} if field_name == "json"
               else {"headers": {"X-Pad": ""}})
    size = FUZZED_MAX_BODY + delta - len(json.dumps(job)) - (1 if ndjson else 0)
    pad = "p" * size
    if field_name == "header":
        job["headers"]["X-Pad"] = pad
    else:
        job[field_name] = pad
    text = json.dumps(job) + ("\n" if ndjson else "")
    body = text.encode()
    assert len(body) == FUZZED_MAX_BODY + delta
    content_type = "application/x-ndjson" if ndjson else "application/json"
    answer = exchange(gq.api, body, content_type, expect_continue=not chunked, chunked=chunked)
    if delta <= 0:
        assert answer.status == 202, f"{len(body)} bytes (limit {FUZZED_MAX_BODY}): {answer}"
    elif answer.status is not None:
        assert answer.status == 413 and "max_body_bytes" in answer.json()["error"], answer
    if answer.status is not None or delta <= 0:
        check_answer(gq, shared_target, body, content_type, answer, chunked)
    assert healthy(gq)


# -- the bugs the fuzzing finds, pinned down one by one ---------------------------------------

def test_a_lone_surrogate_in_a_job_is_refused_or_delivered_and_intake_keeps_answering(gq, shared_target):
    """JSON escapes of lone surrogates ("\\ud800") decode to strings that cannot be encoded as UTF-8."""
    for field_name, raw in (("body", '"a\\ud800b"'), ("json", '{"k":"\\udfff"}')):
        job_id = new_id("surrogate")
        body = f'{{"id":"{job_id}","url":"{shared_target.url("/fz/surrogate")}","{field_name}":{raw}}}'
        answer = exchange(gq.api, body.encode(), "application/json", timeout=4)
        probe = exchange(gq.api, json.dumps({"url": shared_target.url("/fz/after")}).encode(), "application/json",
                         timeout=4)
        assert answer.status is not None and probe.status == 202, (
            f"POST /v1/jobs {body}: {answer}; then a valid job gets: {probe}; "
            f"/healthz {'200' if healthy(gq) else 'fails'}")
        if answer.status == 202:
            job = final_state(gq, job_id)
            assert job["state"] == "succeeded", f"{field_name}={raw}: accepted, never delivered: {job}"
        else:
            assert answer.status == 400, answer


def test_a_lone_surrogate_in_a_field_name_is_refused_with_json_that_names_it(gq, shared_target):
    """The refusal quotes the unknown field's name, which cannot be encoded as UTF-8: it is
    escaped instead (the answer was a 500)."""
    body = f'{{"url":"{shared_target.url("/fz/surrogate-name")}","\\ud800":1}}'
    answer = exchange(gq.api, body.encode(), "application/json", timeout=4)
    assert answer.status == 400, answer
    refusal = json.loads(answer.body)
    assert refusal["field"] == "\ud800" and "unknown field" in refusal["error"], refusal


@pytest.mark.parametrize("number", ["1e999", "-1e999", "NaN", "Infinity"])
def test_json_numbers_are_refused_or_delivered_as_valid_json(gq, shared_target, number):
    job_id = new_id("num")
    body = f'{{"id":"{job_id}","url":"{shared_target.url("/fz/num")}","json":{{"n":{number}}}}}'
    answer = exchange(gq.api, body.encode(), "application/json")
    if answer.status == 400:
        assert "json" in answer.json()["error"] or "body" in answer.json()["error"]
        return
    assert answer.status == 202, answer
    assert final_state(gq, job_id)["state"] == "succeeded"
    received = records(shared_target, job_id)[-1]["body"]
    try:
        strict_json(received)
        problem = ""
    except ValueError as e:
        problem = str(e)
    assert not problem, (f'{{"n": {number}}} was accepted and delivered as {received!r}, '
                         f"with Content-Type application/json: not JSON ({problem})")


@pytest.mark.parametrize("pad", ["leading", "trailing", "both"])
def test_a_job_id_reaches_the_target_as_its_idempotency_key(gq, shared_target, pad):
    """HTTP drops whitespace around header values: such an id cannot be the key the receiver sees."""
    core = uuid.uuid4().hex[:12]
    job_id = {"leading": f" {core}", "trailing": f"{core} ", "both": f" {core} "}[pad]
    answer = exchange(gq.api, json.dumps({"id": job_id, "url": shared_target.url("/fz/ws-id")}).encode(),
                      "application/json")
    if answer.status == 400:
        assert "id" in answer.json()["error"]
        return
    assert answer.status == 202, answer
    assert final_state(gq, job_id)["state"] == "succeeded"
    keys = [r["key"] for r in records(shared_target, core)]
    assert keys == [job_id], (
        f"job id {job_id!r} accepted; the target saw Idempotency-Key {keys}: ids that differ only by "
        f"surrounding spaces (\"{core}\", {job_id!r}) are distinct jobs to gq and one key to the receiver")


@pytest.mark.parametrize("value", [" Bearer lead-SECRET", "\tTAB-SECRET", "\xa0NBSP-SECRET"])
def test_header_values_with_leading_whitespace_are_refused_or_delivered_never_echoed(gq, shared_target, value):
    job_id = new_id("lead")
    secret = value.strip()
    answer = exchange(gq.api, json.dumps({"id": job_id, "url": shared_target.url("/fz/lead"),
                                          "headers": {"Authorization": value}}).encode(), "application/json")
    if answer.status == 400:
        assert "headers.Authorization" in answer.json()["error"]
        return
    assert answer.status == 202, answer
    job = final_state(gq, job_id)
    shown = json.dumps(job, ensure_ascii=False)
    assert secret not in shown, f"the Authorization value is shown by GET /v1/jobs/{job_id}: {shown[:600]}"
    assert secret not in gq.log(), "the Authorization value is in gq's log"
    assert job["state"] == "succeeded", f"accepted, never delivered: {job['last_error']}"
    assert records(shared_target, job_id)[-1]["headers"]["authorization"] == value.strip()


NULLABLE = ("method", "headers", "body", "timeout", "max_attempts", "run_at", "delay", "ordering_key")


@settings(FUZZ, max_examples=1)
@given(field=st.sampled_from(NULLABLE))
@example(field="method")
@example(field="headers")
@example(field="body")
@example(field="timeout")
@example(field="max_attempts")
@example(field="run_at")
@example(field="delay")
@example(field="ordering_key")
def test_a_field_set_to_null_is_delivered_as_if_left_out(gq, shared_target, field):
    # The model above reads null so too: the fuzzer sets any field to any value, null among them.
    body = json.dumps({"id": new_id("null"), "url": shared_target.url("/fz/null"), field: None}).encode()
    answer = exchange(gq.api, body, "application/json")
    assert answer.status == 202, answer
    check_answer(gq, shared_target, body, "application/json", answer)


# -- every accepted id can be named in a URL ---------------------------------------------------

# What clients and servers may read in a path: dot segments, percent signs, the delimiters.
ID_PIECES = st.sampled_from(list("./%?#;&=+~:@!$'()*,a0 ") + ["%2e", "%2E", "%2f", "%25", "%00"])
URL_IDS = st.one_of(
    st.sampled_from([".", "..", "...", "./", "/.", "../", "/..", "./.", "%2e", "%2e%2e", ".%2e", "%", "%%", "%zz",
                     "/", "//", "?", "#", "?a=1#b", "a/../b", "..;", ".;", "~", "replay", "replay/", "+"]),
    st.lists(ID_PIECES, min_size=1, max_size=8).map("".join).filter(lambda i: i == i.strip(" ")),
    ascii_ids.filter(bool))


@settings(FUZZ, max_examples=40)
@given(job_id=URL_IDS, salted=st.booleans())
@example(job_id=".", salted=False)
@example(job_id="..", salted=False)
def test_every_accepted_id_is_found_and_cancelled_by_its_percent_encoded_url(gq, shared_target, job_id, salted):
    """Any id intake accepts is one a client can name: GET and DELETE /v1/jobs/{quote(id, safe="")}
    through requests (which, like curl, removes dot segments) reach that job."""
    if salted:  # a new job; unsalted, an id drawn again is a duplicate (found and cancelled already)
        job_id = f"{job_id}{uuid.uuid4().hex[:6]}"
    answer = exchange(gq.api, json.dumps({"id": job_id, "url": shared_target.url("/fz/id"), "delay": 3600}).encode(),
                      "application/json")
    if answer.status == 400:
        assert answer.json()["field"] == "id", answer
        event("refused")
        return
    assert answer.status in (200, 202) and answer.json()["id"] == job_id, answer
    url = f"{gq.api}/v1/jobs/{quote(job_id, safe='')}"
    found = requests.get(url, timeout=10)
    assert found.status_code == 200 and found.json()["id"] == job_id, (
        f"id {job_id!r} accepted, GET {found.url} answers {found.status_code} {found.text[:200]}")
    cancelled = requests.delete(url, timeout=10)
    if answer.status == 200:  # a duplicate: cancelled the first time
        assert cancelled.status_code in (200, 409), cancelled.text
    else:
        assert cancelled.status_code == 200, f"DELETE {cancelled.url}: {cancelled.status_code} {cancelled.text[:200]}"
    assert cancelled.json().get("state") == "cancelled", cancelled.text


# -- fuzzing every parameter of the operators' endpoints --------------------------------------
# Each request holds one hostile parameter among valid ones: gq checks them in turn, so a
# wrong one ahead would hide what comes after it.

hostile_cursors = st.one_of(crafted_cursors, st.one_of(texts, st.from_regex(r"[A-Za-z0-9_=-]{0,120}", fullmatch=True)))
hostile_moments = st.one_of(st.sampled_from(HOSTILE_NUMBERS), texts, st.sampled_from([
    "1e11", "99999999999", "nan", "inf", "2026-12-02T09:30:00", "2026-02-30T09:30:00Z", "9999-12-31T23:59:60Z",
    "0001-01-01T00:00:00+23:59", "2026-12-02T09:30:00+24:00"]))
GIVEN_CURSOR = "<the cursor the daemon gave>"  # replaced by it
PARAMETERS: dict[str, tuple[list[str], st.SearchStrategy[str]]] = {  # name: (valid values, hostile ones)
    "state": (["queued", "scheduled", "succeeded", "dead", "cancelled"], st.one_of(st.just("Dead"), texts)),
    "host": (["127.0.0.1", "localhost", "LocalHost.", "[::1]"],
             st.one_of(st.sampled_from(["::1%", "%", "a..b", "xn--", "1.2.3.4.5", "x" * 300, " "]), texts)),
    "since": (["0", "1700000000.5", "2026-12-02T09:30:00Z"], hostile_moments),
    "until": (["99999999999", "2100-01-01T00:00:00+01:00"], hostile_moments),
    "limit": (["1", "2", "1000"], st.one_of(st.sampled_from(["1001", "0", "1e3", "0x10", " 5", "9" * 5000]),
                                            st.sampled_from(HOSTILE_NUMBERS), texts)),
    "ordering_key": (["k", "tenant é"], st.one_of(st.sampled_from(["", "k" * 257]), texts)),
    "id_prefix": (["ok-", "d", "later"], st.one_of(st.sampled_from(["", "i" * 257, "%"]), texts)),
    "cursor": ([GIVEN_CURSOR], hostile_cursors),
}


@st.composite
def list_queries(draw) -> list[tuple[str, str]]:
    """(name, value) pairs: valid ones, then the hostile one (an unknown name, one given twice)."""
    names = draw(st.lists(st.sampled_from(list(PARAMETERS)), max_size=3, unique=True))
    pairs = [(name, draw(st.sampled_from(PARAMETERS[name][0]))) for name in names]
    hostile = draw(st.sampled_from([*PARAMETERS, "cursor", "colour", ""]))
    return [*pairs, (hostile, draw(PARAMETERS[hostile][1] if hostile in PARAMETERS else texts))]


@pytest.fixture(scope="module", params=["journal", "memory"])
def operated(request, tmp_path_factory, shared_target):
    """A daemon of each broker holding a few jobs of each final state and a scheduled one,
    for the operators' endpoints to find, replay and cancel; and a cursor it gave."""
    path = "journal.sqlite3" if request.param == "journal" else ""
    daemon = Daemon(tmp_path_factory.mktemp(f"operated-{request.param}"),
                    daemon_config(journal={"path": path}, retry={"max_attempts": 1}))
    jobs = [{"id": f"ok-{n}", "url": shared_target.url("/fz/ok")} for n in range(3)]
    jobs += [{"id": f"dead-{n}", "url": shared_target.url("/fz/dead", status=404)} for n in range(3)]
    assert daemon.post(jobs + [{"id": "later", "url": shared_target.url("/fz/later"), "delay": 3600}]).ok
    for job in jobs:
        final_state(daemon, job["id"])
    daemon.cursor = daemon.get("/v1/jobs?limit=2").json()["next"]
    yield daemon
    daemon.stop()


def check_refusal_or_answer(daemon: Daemon, answer: Answer, request: str) -> None:
    """What every request to the operators' endpoints must get: 2xx, or 4xx with a JSON error
    naming the field at fault; and gq still serving."""
    context = f"request: {request[:600]}\nanswer: {answer}"
    event(f"answer {answer.status}")
    assert answer.status is not None and 200 <= answer.status < 500, f"server error\n{context}"
    assert answer.headers.get("content-type", "").startswith("application/json"), context
    if answer.status >= 400:
        refusal = answer.json()
        assert isinstance(refusal.get("error"), str) and isinstance(refusal.get("field"), str), context
    assert healthy(daemon), f"/healthz does not answer 200 after\n{context}"


def percent_encoded(value: str, safe: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe=safe)


@settings(FUZZ, max_examples=100)
@given(query=list_queries(), safe=st.sampled_from(["", "+:", "%+[]"]))
@example(query=[("cursor", crafted(CRAFTED_CURSORS["400 digits"]))], safe="")
@example(query=[("cursor", crafted(CRAFTED_CURSORS["past 64 bits"]))], safe="")
@example(query=[("cursor", crafted(CRAFTED_CURSORS["a float of 400 digits"]))], safe="")
@example(query=[("cursor", crafted(CRAFTED_CURSORS["nested 2,000 deep"]))], safe="")
def test_fuzz_list_parameters(operated, query, safe):
    path = "/v1/jobs?" + "&".join(
        f"{percent_encoded(name, safe)}={percent_encoded(operated.cursor if value == GIVEN_CURSOR else value, safe)}"
        for name, value in query)
    answer = exchange(operated.api, b"", None, path=path, method="GET")
    check_refusal_or_answer(operated, answer, f"GET {path}")


def fragment(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True)  # a lone surrogate as its escape


json_fragments = st.one_of(  # JSON texts a client may write for any field
    st.sampled_from(HOSTILE_NUMBERS), json_values.map(fragment), st.sampled_from([5000, 20_000]).map(nested),
    st.just('"\\ud800"'))


@st.composite
def replay_bodies(draw) -> str:
    """A filter of valid fields and one hostile field; ids, some hostile; or any JSON."""
    kind = draw(st.sampled_from(["filter", "filter", "ids", "any"]))
    if kind == "any":
        return draw(json_fragments)
    if kind == "ids":
        ids = st.lists(st.one_of(st.sampled_from(["ok-0", "dead-1", "later"]), texts), min_size=1, max_size=4)
        return f'{{"ids": {draw(st.one_of(ids.map(fragment), json_fragments))}}}'
    names = draw(st.lists(st.sampled_from([n for n in PARAMETERS if n != "state"]), max_size=3, unique=True))
    fields = {"state": draw(st.sampled_from(["dead", "succeeded"]))}
    fields.update((name, draw(st.sampled_from(PARAMETERS[name][0]))) for name in names)
    body = {name: fragment(value) for name, value in fields.items()}
    hostile = draw(st.sampled_from([*PARAMETERS, "cursor", "ids", "colour"]))
    as_text = PARAMETERS[hostile][1].map(fragment) if hostile in PARAMETERS else json_fragments
    body[hostile] = draw(st.one_of(as_text, json_fragments))
    return "{" + ", ".join(f"{fragment(name)}: {value}" for name, value in body.items()) + "}"


@settings(FUZZ, max_examples=100)
@given(body=replay_bodies())
@example(body=json.dumps({"state": "dead", "cursor": crafted(CRAFTED_CURSORS["400 digits"])}))
@example(body=json.dumps({"state": "dead", "cursor": crafted(CRAFTED_CURSORS["past 64 bits"])}))
@example(body=json.dumps({"state": "dead", "cursor": crafted(nested(100_000))}))
@example(body='{"state": "dead", "host": "\\ud800"}')
def test_fuzz_replay_bodies(operated, body):
    body = body.replace(fragment(GIVEN_CURSOR), fragment(operated.cursor))
    answer = exchange(operated.api, body.encode(), "application/json", path="/v1/jobs/replay")
    check_refusal_or_answer(operated, answer, f"POST /v1/jobs/replay {body}")


@settings(FUZZ, max_examples=30)
@given(segment=st.one_of(ascii_ids, texts, st.sampled_from(["", ".", "..", "%", "%zz", "%ED%A0%80", "%00", "%2F",
                                                            "a/b", "replay/x", "x" * 300, "ok-0", "later"])),
       safe=st.sampled_from(["", "/%", "%?#"]), method=st.sampled_from(["GET", "DELETE"]))
def test_fuzz_job_paths(operated, segment, safe, method):
    path = "/v1/jobs/" + percent_encoded(segment, safe)
    answer = exchange(operated.api, b"", None, path=path, method=method)
    check_refusal_or_answer(operated, answer, f"{method} {path}")
