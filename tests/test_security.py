"""Security: a running gq against hostile clients, hostile jobs and hostile targets.

Every test talks to real processes over real sockets on loopback:
  - fuzzing the intake (hypothesis): random and mutated bodies, wrong encodings,
    deep nesting, huge numbers, bodies at the size limit, random content types, NDJSON;
    every answer is 2xx or 4xx, every accepted job reaches the target as it was sent;
  - hostile HTTP framing: huge heads, long request lines, broken lengths;
  - clients that hold connections: slow-loris, slow bodies, 10 GB bodies;
  - SSRF: forbidden literals, names that resolve to forbidden addresses (gq runs in a
    mount namespace of its own with an /etc/hosts the test writes), redirects, allowed_hosts;
  - the bearer token and where it comes from; secrets kept out of every output;
  - Standard Webhooks signatures, checked by an independent verifier (`verify_webhook`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import re
import secrets as secrets_
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
import requests
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from gq import __version__
from support import Daemon, daemon_config, gq_command, new_id, rejected, run_gq, to_toml, unavailable, wait_for

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines")
MAX_BODY = 65536            # api.max_body_bytes of the fuzzed daemon
CLIENT_TIMEOUT = 2.0        # api.client_timeout of the daemons attacked by slow clients
ANSWER_TIMEOUT = 8.0        # seconds any well-formed request may take to be answered
FINAL = ("succeeded", "dead")


# -- an HTTP client that sends exactly the bytes it is given ---------------------------------

@dataclass
class Answer:
    status: int | None                      # None: no answer (closed, reset or timed out)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    note: str = ""                          # why there is no answer

    def json(self) -> Any:
        return json.loads(self.body)

    def __str__(self) -> str:
        if self.status is None:
            return f"no answer ({self.note})"
        return f"{self.status} {self.body[:300]!r}"


class Conn:
    """One TCP connection to gq; reads HTTP/1.1 answers with Content-Length bodies."""

    def __init__(self, api: str, timeout: float = ANSWER_TIMEOUT):
        parts = urlsplit(api)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> str:
        """'' when sent, else the error (the server may close early: that is allowed)."""
        try:
            self.sock.sendall(data)
            return ""
        except OSError as e:
            return f"send: {e}"

    def _fill(self, deadline: float) -> str:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout"
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return "timeout"
        except OSError as e:
            return f"reset: {e}"
        if not chunk:
            return "closed"
        self.buf += chunk
        return ""

    def answer(self, timeout: float = ANSWER_TIMEOUT) -> Answer:
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            problem = self._fill(deadline)
            if problem:
                return Answer(None, note=problem)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        while len(self.buf) < length:
            if self._fill(deadline):
                break
        body, self.buf = self.buf[:length], self.buf[length:]
        return Answer(status, headers, body)

    def eof_within(self, timeout: float) -> str | None:
        """Read and drop what comes until EOF or reset; the way it ended, or None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self.buf = b""
            problem = self._fill(deadline)
            if problem == "timeout":
                return None
            if problem:
                return problem

    def close(self) -> None:
        self.sock.close()


def head_bytes(method: str, path: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: gq"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def exchange(api: str, body: bytes, content_type: str | None, *, path: str = "/v1/jobs",
             method: str = "POST", expect_continue: bool = False, chunked: bool = False,
             extra: list[tuple[str, str]] = (), timeout: float = ANSWER_TIMEOUT) -> Answer:
    """One request on a new connection, exactly as given; its answer."""
    headers = list(extra)
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    if chunked:
        headers.append(("Transfer-Encoding", "chunked"))
        step = max(1, len(body) // 3)
        payload = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + step]), body[i:i + step])
                           for i in range(0, len(body), step)) + b"0\r\n\r\n"
    else:
        headers.append(("Content-Length", str(len(body))))
        payload = body
    if expect_continue and body:
        headers.append(("Expect", "100-continue"))
    conn = Conn(api, timeout)
    try:
        sent = conn.send(head_bytes(method, path, headers))
        if expect_continue and body and not sent:
            first = conn.answer(timeout)
            if first.status != 100:
                return first
        if not sent:
            sent = conn.send(payload)
        return conn.answer(timeout)
    finally:
        conn.close()


# -- helpers over a daemon and the target -----------------------------------------------------

def get(daemon: Daemon, path: str, timeout: float = 10) -> requests.Response:
    """A GET on a connection of its own (quick, unaffected by earlier requests)."""
    return requests.get(f"{daemon.api}{path}", timeout=timeout, headers=getattr(daemon, "auth", {}))


def healthy(daemon: Daemon) -> bool:
    try:
        return requests.get(f"{daemon.api}/healthz", timeout=3).status_code == 200
    except requests.RequestException:
        return False


def post_job(daemon: Daemon, job: Any, timeout: float = 10, **headers: str) -> requests.Response:
    return requests.post(f"{daemon.api}/v1/jobs", data=json.dumps(job), timeout=timeout,
                         headers={"Content-Type": "application/json", **getattr(daemon, "auth", {}), **headers})


def final_state(daemon: Daemon, job_id: str, timeout: float = 20) -> dict:
    def done():
        job = get(daemon, f"/v1/jobs/{quote(job_id, safe='')}").json()
        return job if job.get("state") in FINAL else None
    return wait_for(done, timeout, f"job {job_id!r} to finish")


def records(target, key: str, since: int = 0) -> list[dict]:
    return [r for r in target.received(since) if r["key"] == key]


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


# -- fixtures ---------------------------------------------------------------------------------


class Restartable:
    """A module's daemon that a test leaving it broken does not take down the next tests with it."""

    def __init__(self, workdir: Path, **sections: dict[str, Any]):
        self.workdir, self.sections, self.runs = workdir, sections, 0
        self.daemon: Daemon | None = None

    def _start(self) -> None:
        self.runs += 1
        config = daemon_config(**self.sections)
        config["journal"] = {"path": f"journal-{self.runs}.sqlite3"}   # a broken run's journal stays behind
        self.daemon = Daemon(self.workdir, config)

    def _works(self, target) -> bool:
        if self.daemon is None or self.daemon.proc.poll() is not None or not healthy(self.daemon):
            return False
        try:
            return post_job(self.daemon, {"url": target.url("/probe")}, timeout=5).status_code == 202
        except requests.RequestException:
            return False

    def ready(self, target) -> Daemon:
        if not self._works(target):
            if self.daemon is not None:
                self.daemon.stop()
            self._start()
        return self.daemon

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    holder = Restartable(tmp_path_factory.mktemp("fuzzed"), pool={"size": 8},
                         api={"max_body_bytes": MAX_BODY, "max_jobs_per_request": 50,
                              "client_timeout": CLIENT_TIMEOUT},
                         target={"timeout": 5.0}, retry={"max_attempts": 3})
    yield holder
    holder.stop()


@pytest.fixture
def gq(fuzzed, shared_target) -> Daemon:
    """The fuzzed daemon (journaled, like the default config), restarted if a test broke it."""
    return fuzzed.ready(shared_target)


FUZZ = settings(deadline=None, database=None, phases=(Phase.explicit, Phase.generate),
                suppress_health_check=list(HealthCheck), print_blob=True)
# Not shrunk: each example is a round trip to a daemon that a failure may have broken; the
# failing request is printed whole instead.


# -- 1. fuzzing the intake --------------------------------------------------------------------

NASTY = ["", " ", "\t", " lead", "\tlead", "trail ", "\xa0nbsp", "\x85nel", "a\u2028b", "\ufeff", "é",
         "\U0001F600", "\ud800", "a\udfffb", "\x00", "\x7f", "%00", "%", "\\", '"', "{", "<redacted>",
         "1e999", "NaN", "x" * 300]
JSON_SNIPPETS = ['"', "\\", "\\u0000", "\\ud800", "\\udc00", ",", ":", "{", "}", "[", "]", "null", "1e999",
                 "NaN", "Infinity", "-0", "\n", "\r\n", "\u2028", "\x00", " ", '"id":', '"json":',
                 '"headers":{"A":" x"}', '"timeout":1e-300', '"max_attempts":1.5']

texts = st.one_of(st.text(max_size=20), st.sampled_from(NASTY),
                  st.text(st.characters(categories=["Cs", "Cc", "Zs", "Cf"]), max_size=4))
ascii_ids = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=0, max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4), max_leaves=12)
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


NUMBERS = ["1e999", "-1e999", "1e-999", "NaN", "Infinity", "-Infinity", "-0", "1E400", "0.1",
           "123456789012345678901234567890", "1" * 4300, "1" * 4301, "9" * 20000, "1e308", "2e308",
           "4.9e-324", "1.00000000000000000001", "-0.0", "1E+99999999999999999999"]


@settings(FUZZ, max_examples=25)
@given(depth=st.one_of(st.integers(1, 1200), st.sampled_from([960, 967, 968, 969, 1000, 5000, 100_000])),
       opener=st.sampled_from(["[", '{"a":']), closed=st.booleans(),
       where=st.sampled_from(["json", "top", "headers", "id"]),
       number=st.sampled_from(NUMBERS), use_number=st.booleans(),
       number_field=st.sampled_from(["json", "timeout", "max_attempts", "method"]))
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
    if len(body) > MAX_BODY:
        body = body[:MAX_BODY]
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
    size = MAX_BODY + delta - len(json.dumps(job)) - (1 if ndjson else 0)
    pad = "p" * size
    if field_name == "header":
        job["headers"]["X-Pad"] = pad
    else:
        job[field_name] = pad
    text = json.dumps(job) + ("\n" if ndjson else "")
    body = text.encode()
    assert len(body) == MAX_BODY + delta
    content_type = "application/x-ndjson" if ndjson else "application/json"
    answer = exchange(gq.api, body, content_type, expect_continue=not chunked, chunked=chunked)
    if delta <= 0:
        assert answer.status == 202, f"{len(body)} bytes (limit {MAX_BODY}): {answer}"
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


# -- 2. hostile HTTP framing ------------------------------------------------------------------

def _heads() -> dict[str, bytes]:
    job = json.dumps({"url": "http://127.0.0.1:9/"}).encode()
    def req(lines: list[str], body: bytes = b"") -> bytes:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    post = ["POST /v1/jobs HTTP/1.1", "Host: gq", "Content-Type: application/json"]
    return {
        "200 short headers": req(post + [f"X-H{i}: v" for i in range(200)] + [f"Content-Length: {len(job)}"], job),
        "one 100 KB header": req(post + ["X-Long: " + "a" * 100_000, f"Content-Length: {len(job)}"], job),
        "100 headers of 60 KB": req(
            ["GET /healthz HTTP/1.1", "Host: gq"] + [f"X-Big{i}: " + "b" * 60_000 for i in range(100)]),
        "98 headers of 65,000 bytes (a 6.4 MB head)": req(
            ["GET /healthz HTTP/1.1", "Host: gq"] + [f"X-Big{i}: " + "b" * 65_000 for i in range(98)]),
        "request line of 8 KiB": req(["GET /v1/jobs/" + "i" * 8192 + " HTTP/1.1", "Host: gq"]),
        "request line of 100 KB": req(["GET /" + "u" * 100_000 + " HTTP/1.1", "Host: gq"]),
        "URL of 7 KB": req(["GET /v1/jobs/" + "%41" * 2300 + " HTTP/1.1", "Host: gq"]),
        "Content-Length -1": req(post + ["Content-Length: -1"]),
        "Content-Length abc": req(post + ["Content-Length: abc"]),
        "Content-Length 1_0": req(post + ["Content-Length: 1_0"], b"[]" * 5),
        "Content-Length 10^30": req(post + ["Content-Length: " + "9" * 30]),
        "two Content-Lengths": req(post + ["Content-Length: 2", "Content-Length: 50"], b"[]"),
        "chunked, bad size": req(post + ["Transfer-Encoding: chunked"], b"zz\r\nabc\r\n0\r\n\r\n"),
        "chunked, huge size": req(post + ["Transfer-Encoding: chunked"], b"fffffffffffffffff\r\nabc\r\n"),
        "chunked and Content-Length": req(post + ["Transfer-Encoding: chunked", "Content-Length: 3"],
                                          b"2\r\n[]\r\n0\r\n\r\n"),
        "header without colon": req(post + ["NoColonHere", f"Content-Length: {len(job)}"], job),
        "folded header": req(post + ["X-Fold: a", " continued", f"Content-Length: {len(job)}"], job),
        "NUL in header": req(post + ["X-Nul: a\x00b", f"Content-Length: {len(job)}"], job),
        "bare LF": ("POST /v1/jobs HTTP/1.1\nHost: gq\nContent-Type: application/json\n"
                    f"Content-Length: {len(job)}\n\n").encode() + job,
        "HTTP/1": req(["GET /healthz HTTP/1"]),
        "HTTP/2.0": req(["GET /healthz HTTP/2.0"]),
        "HTTP/0.9": b"GET /healthz\r\n",
        "method only": req(["GET"]),
        "binary garbage": bytes(range(256)) * 4,
        "TLS hello": bytes.fromhex("16030100a5010000a10303") + os.urandom(160),
    }


LENIENT = ("Content-Length 1_0", "two Content-Lengths", "chunked and Content-Length", "header without colon",
           "folded header", "NUL in header", "bare LF", "HTTP/0.9")
HEADS = {name: (data, name not in LENIENT) for name, data in _heads().items()}


@pytest.mark.parametrize("case", list(HEADS))
def test_hostile_framing_gets_4xx_or_a_closed_connection(gq, shared_target, case):
    """Strict cases must get a 4xx or a closed connection; the LENIENT ones (oddities HTTP lets a
    server accept) may also be served; none gets a 5xx, and gq stays healthy."""
    data, strict = HEADS[case]
    conn = Conn(gq.api)
    try:
        sent = conn.send(data)
        answer = conn.answer()
    finally:
        conn.close()
    assert answer.status is None or answer.status < 500, f"{case}: {answer}"
    if answer.status is None:
        assert answer.note != "timeout", f"{case}: the server neither answered nor closed ({sent})"
    elif strict:
        assert 400 <= answer.status < 500, (
            f"{case}: answered {answer.status}; a request like this must be refused (4xx) or the "
            f"connection closed: {answer}")
    assert healthy(gq), f"{case}: /healthz fails afterwards"


# -- 3. clients that hold connections ---------------------------------------------------------

@pytest.fixture(scope="module")
def slow_gq(tmp_path_factory, shared_target):
    daemon = Daemon(tmp_path_factory.mktemp("slow"), daemon_config(
        pool={"size": 8}, api={"client_timeout": CLIENT_TIMEOUT}))
    yield daemon
    daemon.stop()


def _address(daemon: Daemon) -> tuple[str, int]:
    parts = urlsplit(daemon.api)
    return parts.hostname, parts.port


def _dribble(address, first: bytes, step: bytes | None, until: float) -> tuple[str, float, str]:
    """One connection: send `first`, then `step` every 0.2s (None: nothing); how the server
    ended it ("eof", "reset"; "client stopped" when `until` came first), after how long, and
    the start of what it answered."""
    started = time.monotonic()
    sock = socket.create_connection(address, timeout=5)
    got, how = b"", "client stopped"
    try:
        sock.sendall(first)
        sock.settimeout(0.2)
        while time.monotonic() < until:
            if step is not None:
                try:
                    sock.sendall(step)
                except OSError:
                    how = "reset"
                    break
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                how = "reset"
                break
            if not data:
                how = "eof"
                break
            got += data
    finally:
        sock.close()
    return how, time.monotonic() - started, got[:40].decode("latin-1")


def _slow_loris(address, silent: bool, until: float, out: list) -> None:
    """Connections that dribble header lines (or send nothing), one after the other until `until`."""
    while time.monotonic() < until - 0.5:
        out.append(_dribble(address, b"" if silent else b"POST /v1/jobs HTTP/1.1\r\nHost: gq\r\n",
                            None if silent else b"X-Slow: a\r\n", until))


def _slow_body(address, path: str, until: float, out: list, once: bool = False) -> None:
    """Connections that send a whole head, then a 1000-byte body one byte at a time."""
    head = head_bytes("POST", path, [("Content-Type", "application/json"), ("Content-Length", "1000")])
    while time.monotonic() < until - 0.5:
        out.append(_dribble(address, head, b" ", until))
        if once:
            return


def _cut_off(outcomes: list[tuple[str, float, str]], bound: float) -> list:
    """The connections the server did not end within `bound` seconds."""
    return [(how, round(t, 2), got) for how, t, got in outcomes
            if not (how in ("eof", "reset") and t <= bound) and not (how == "client stopped" and t <= bound)]


STREAM_CAP = 256 * 2**20   # bytes a flood client sends at most before it calls the server's reading unbounded


def _flood_once(address, path: str, method: str, until: float, chunked: bool = False) -> dict:
    """Announce 10 GB (or a chunked, endless body), read the answer, stream as fast as possible."""
    started = time.monotonic()
    conn = Conn(f"http://{address[0]}:{address[1]}", timeout=5)
    headers = [("Content-Type", "application/json")]
    headers.append(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(10 * 10**9)))
    conn.send(head_bytes(method, path, headers))
    # a chunked body is streamed at once: the server answers once it has read past the limit
    answer = Answer(None, note="not read first") if chunked else conn.answer(timeout=3)
    chunk = (b"10000\r\n" + b"[" * 0x10000 + b"\r\n") if chunked else b" " * 0x10000
    sent, how = 0, "still open"
    conn.sock.settimeout(2)
    while time.monotonic() < until and sent < STREAM_CAP:
        try:
            conn.sock.sendall(chunk)
            sent += len(chunk)
        except OSError as e:
            how = f"closed ({e.strerror or e})"
            break
    conn.close()
    return {"answer": answer, "how": how, "seconds": time.monotonic() - started, "sent": sent}


def _flood(address, path: str, until: float, out: list, chunked: bool = False) -> None:
    while time.monotonic() < until - 0.5:
        out.append(_flood_once(address, path, "POST", until, chunked))
        time.sleep(0.05)


def _honest(daemon: Daemon, target, n: int) -> list[float]:
    """n job submissions, each on a new connection; their latencies (each must be a 202)."""
    latencies = []
    for _ in range(n):
        started = time.monotonic()
        response = requests.post(f"{daemon.api}/v1/jobs", timeout=10,
                                 data=json.dumps({"url": target.url("/honest")}),
                                 headers={"Content-Type": "application/json"})
        latencies.append(time.monotonic() - started)
        assert response.status_code == 202, response.text
        time.sleep(0.1)
    return latencies


def test_slow_and_oversized_clients_do_not_starve_honest_ones(slow_gq, shared_target):
    """While 50 slow-loris connections, 5 slow bodies, 5 clients announcing 10 GB and 2 sending an
    endless chunked body attack (each reconnecting as soon as gq drops it), an honest client's
    submissions are all accepted; gq drops every attacker within 3 x api.client_timeout."""
    address = _address(slow_gq)
    bound = 3 * CLIENT_TIMEOUT
    _honest(slow_gq, shared_target, 3)  # warm up
    quiet = _honest(slow_gq, shared_target, 30)
    too_large_before = rejected(slow_gq, "too_large")

    until = time.monotonic() + bound + 2
    loris: list = []
    bodies: list = []
    floods: list = []
    chunked: list = []
    threads = [threading.Thread(target=_slow_loris, args=(address, i % 5 == 0, until, loris)) for i in range(50)]
    threads += [threading.Thread(target=_slow_body, args=(address, "/v1/jobs", until, bodies)) for _ in range(5)]
    threads += [threading.Thread(target=_flood, args=(address, "/v1/jobs", until, floods)) for _ in range(5)]
    threads += [threading.Thread(target=_flood, args=(address, "/v1/jobs", until, chunked, True)) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    attacked = _honest(slow_gq, shared_target, 50)
    for t in threads:
        t.join(bound + 10)
    assert not any(t.is_alive() for t in threads)

    print(f"\nhonest POST /v1/jobs latency, quiet:    median {statistics.median(quiet) * 1000:.1f} ms, "
          f"max {max(quiet) * 1000:.1f} ms ({len(quiet)} requests)")
    print(f"honest POST /v1/jobs latency, attacked: median {statistics.median(attacked) * 1000:.1f} ms, "
          f"max {max(attacked) * 1000:.1f} ms ({len(attacked)} requests; attackers made {len(loris)} slow-loris, "
          f"{len(bodies)} slow-body, {len(floods)} 10 GB and {len(chunked)} endless chunked connections)")

    assert not _cut_off(loris + bodies, bound), f"slow connections not closed within {bound:g}s"
    assert all(got.startswith("HTTP/1.1 408") for how, _, got in bodies if got), bodies
    assert floods and chunked
    for flood in floods:
        assert flood["answer"].status == 413, flood
        assert flood["answer"].headers.get("connection", "").lower() == "close", flood
        assert flood["how"].startswith("closed") and flood["seconds"] <= bound, flood
        assert flood["sent"] < 64 * 2**20, f"the server read {flood['sent'] >> 20} MiB of a refused body"
    for flood in chunked:
        assert flood["how"].startswith("closed") and flood["seconds"] <= bound, flood
        assert flood["sent"] < 64 * 2**20, flood
    assert rejected(slow_gq, "too_large") >= too_large_before + len(floods)
    assert healthy(slow_gq)


@pytest.mark.parametrize("method,path", [("POST", "/healthz"), ("GET", "/metrics"), ("GET", "/v1/status"),
                                         ("GET", "/v1/jobs/no-such-job"), ("POST", "/nowhere")])
def test_a_body_no_endpoint_reads_is_not_read_to_its_end(slow_gq, method, path):
    """10 GB announced to an endpoint that takes no body: the connection is closed, not drained."""
    flood = _flood_once(_address(slow_gq), path, method, time.monotonic() + 3 * CLIENT_TIMEOUT)
    assert flood["answer"].status is not None, flood
    assert flood["how"].startswith("closed"), (
        f"{method} {path} with 10 GB announced: answered {flood['answer'].status}, then the server "
        f"kept reading: {flood['sent'] >> 20} MiB in {flood['seconds']:.1f}s and the connection still open")
    assert flood["sent"] < 64 * 2**20, flood
    assert healthy(slow_gq)


def test_a_slow_body_to_an_endpoint_that_takes_none_is_cut_off(slow_gq):
    out: list = []
    bound = 3 * CLIENT_TIMEOUT
    _slow_body(_address(slow_gq), "/healthz", time.monotonic() + bound + 1, out, once=True)
    how, seconds, got = out[0]
    ended = f"{how} after {seconds:.1f}s" if how != "client stopped" else \
        f"still open after {seconds:.1f}s, when the client gave up"
    assert how in ("eof", "reset") and seconds <= bound, (
        f"POST /healthz with a 1000-byte body sent a byte every 0.2s: answered {got[:15]!r}, connection "
        f"{ended} (api.client_timeout {CLIENT_TIMEOUT:g}s)")


# -- 4. SSRF ----------------------------------------------------------------------------------

FORBIDDEN_URLS = ["http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://[fe80::1%25lo]/",
                  "http://[::ffff:169.254.169.254]/", "http://[::ffff:a9fe:a9fe]/", "http://2852039166/",
                  "http://0xa9.0xfe.0xa9.0xfe/", "http://0xA9FEA9FE/", "http://0251.0376.0251.0376/",
                  "http://169.254.43518/", "http://169.254.169.254:80/", "http://user:pw@169.254.169.254/",
                  "HTTP://169.254.169.254/", "http://100.100.100.200/", "http://[fd00:ec2::254]/",
                  "https://169.254.169.254/"]


@pytest.mark.parametrize("url", FORBIDDEN_URLS)
def test_forbidden_addresses_are_refused_at_intake(gq, url):
    before = rejected(gq, "invalid")
    answer = exchange(gq.api, json.dumps({"url": url}).encode(), "application/json")
    assert answer.status == 400, f"{url}: {answer}"
    assert answer.json()["error"].startswith("url") and answer.json().get("field") == "url", answer
    assert rejected(gq, "invalid") == before + 1


@pytest.mark.parametrize("url", ["http://169.254.169.254./", "http://169.254.169.254\\@127.0.0.1:{port}/x",
                                 "http://[::169.254.169.254]/", "http://[64:ff9b::a9fe:a9fe]/"])
def test_odd_spellings_of_a_forbidden_address_never_reach_it(gq, shared_target, url):
    """Refused at intake; or accepted, never delivered, and dead: refused at connect time, or
    (where this machine has no route or no such name) failing to connect."""
    job_id = new_id("odd")
    answer = exchange(gq.api, json.dumps({"id": job_id, "url": url.format(port=shared_target.port),
                                          "max_attempts": 1, "timeout": 2}).encode(), "application/json")
    if answer.status == 400:
        return
    assert answer.status == 202, answer
    job = final_state(gq, job_id)
    assert job["state"] == "dead", job
    error = job["last_error"] or ""
    assert (job["attempts"] == 1 and error.startswith("refused:")) or error.startswith(("connect:", "timeout:")), job
    assert not records(shared_target, job_id)


class Recorder(ThreadingHTTPServer):
    """A target on a thread: /redirect/CODE?to=URL answers that redirect; records every request."""

    daemon_threads = True

    def __init__(self):
        self.seen: list[tuple[str, str]] = []
        super().__init__(("127.0.0.1", 0), _RecorderHandler)
        self.base = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _RecorderHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _any(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        url = urlsplit(self.path)
        self.server.seen.append((self.command, url.path))
        if url.path.startswith("/redirect/"):
            self.send_response(int(url.path.split("/")[2]))
            self.send_header("Location", parse_qs(url.query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _any

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def recorder():
    server = Recorder()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("code,to", [(302, "http://169.254.169.254/latest/meta-data/iam/"),
                                     (301, "{base}/followed"), (302, "{base}/followed"), (303, "{base}/followed"),
                                     (307, "{base}/followed"), (308, "{base}/followed")])
def test_redirects_are_not_followed(gq, recorder, code, to):
    job_id = new_id(f"redirect{code}")
    location = to.format(base=recorder.base)
    response = post_job(gq, {"id": job_id, "url": f"{recorder.base}/redirect/{code}?to={quote(location, safe='')}",
                             "body": "payload"})
    assert response.status_code == 202, response.text
    job = final_state(gq, job_id)
    assert job["state"] == "dead" and job["attempts"] == 1 and job["last_status"] == code, job
    assert ("POST", "/followed") not in recorder.seen and ("GET", "/followed") not in recorder.seen


HOSTS = """\
127.0.0.1 localhost
::1 localhost ip6-localhost
169.254.169.254 metadata.test
fe80::1 linklocal6.test
::ffff:169.254.169.254 mapped.test
100.100.100.200 alimeta.test
127.0.0.1 good.test a.allowed.test b.a.allowed.test exact.test other.test allowed.test
"""


class OwnDaemon(Daemon):
    """`gq run` as conftest's Daemon starts it, with any config; with `hosts`, in a mount
    namespace of its own where /etc/hosts is that file."""

    def __init__(self, workdir: Path, config: dict, hosts: Path | None = None, env: dict | None = None):
        self.workdir = workdir
        stamp = time.monotonic_ns()
        self.config_path = workdir / f"gq-{stamp}.toml"
        self.config_path.write_text(to_toml(config))
        self.log_path = workdir / f"gq-{stamp}.log"
        self._log = open(self.log_path, "w")
        command = gq_command("run", "-c", str(self.config_path))
        if hosts is not None:
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                       'mount --bind "$1" /etc/hosts && shift && exec "$@"', "sh", str(hosts), *command]
        self.proc = subprocess.Popen(command, cwd=workdir, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        self.api = wait_for(self._listening, what="gq to listen")
        self.session = requests.Session()


@pytest.fixture
def own_daemon(tmp_path):
    """own_daemon(**sections) → a running OwnDaemon; stopped at the end of the test."""
    started: list[OwnDaemon] = []

    def start(**sections: dict[str, Any]) -> OwnDaemon:
        started.append(OwnDaemon(tmp_path, daemon_config(**sections)))
        return started[-1]

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture(scope="module")
def hosts_file(tmp_path_factory) -> Path:
    """The hosts file, once it is known that a mount namespace can put it in place."""
    path = tmp_path_factory.mktemp("hosts") / "hosts"
    path.write_text(HOSTS)
    why = ""
    if not (shutil.which("unshare") and shutil.which("mount")):
        why = "unshare or mount is not installed"
    else:
        probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                'mount --bind "$1" /etc/hosts && getent hosts metadata.test', "sh", str(path)],
                               capture_output=True, text=True, timeout=20)
        if probe.returncode != 0 or "169.254.169.254" not in probe.stdout:
            why = f"cannot bind-mount /etc/hosts in a mount namespace: {probe.stderr.strip() or probe.stdout!r}"
    if why:
        unavailable(why)
    return path


@pytest.fixture(scope="module")
def ns_daemons(tmp_path_factory, hosts_file):
    """start(*allowed_hosts) → an OwnDaemon in the hosts namespace, started once per module."""
    started: dict[tuple, OwnDaemon] = {}

    def start(*allowed: str) -> OwnDaemon:
        if allowed not in started:
            started[allowed] = OwnDaemon(tmp_path_factory.mktemp("ns"), daemon_config(
                pool={"size": 4}, target={"allowed_hosts": list(allowed)}, retry={"max_attempts": 3}), hosts_file)
        return started[allowed]

    yield start
    for daemon in started.values():
        daemon.stop()


def _delivered(daemon: Daemon, target, url: str) -> None:
    job_id = new_id("ns")
    response = post_job(daemon, {"id": job_id, "url": url})
    assert response.status_code == 202, f"{url}: {response.text}"
    job = final_state(daemon, job_id)
    assert job["state"] == "succeeded", f"{url}: {job}"
    got = records(target, job_id)
    assert got and got[-1]["headers"]["host"] == urlsplit(url).netloc.lower(), got


def _refused_at_connect(daemon: Daemon, target, url: str, address: str = "") -> dict:
    job_id = new_id("ns")
    response = post_job(daemon, {"id": job_id, "url": url})
    assert response.status_code == 202, f"{url}: names are resolved at connect time: {response.text}"
    job = final_state(daemon, job_id, timeout=10)
    assert job["state"] == "dead" and job["attempts"] == 1, f"{url}: {job}"
    assert (job["last_error"] or "").startswith("refused:") and address in job["last_error"], f"{url}: {job}"
    assert not records(target, job_id)
    return job


def _refused_at_intake(daemon: Daemon, url: str) -> None:
    response = post_job(daemon, {"url": url})
    assert response.status_code == 400, f"{url}: {response.text}"
    assert response.json()["error"].startswith("url") and response.json()["field"] == "url"


@pytest.mark.parametrize("name,address", [("metadata.test", "169.254.169.254"), ("linklocal6.test", "fe80::1"),
                                          ("mapped.test", "169.254.169.254"), ("alimeta.test", "100.100.100.200")])
def test_a_name_that_resolves_to_a_forbidden_address_is_refused_at_connect_time(ns_daemons, shared_target,
                                                                               name, address):
    daemon = ns_daemons()
    _refused_at_connect(daemon, shared_target, f"http://{name}:{shared_target.port}/meta", address)
    _delivered(daemon, shared_target, f"http://good.test:{shared_target.port}/good")


def test_allowed_hosts_exact_names_and_suffixes(ns_daemons, shared_target):
    daemon = ns_daemons("*.allowed.test", "exact.test")
    port = shared_target.port
    for host in ("a.allowed.test", "b.a.allowed.test", "exact.test", "EXACT.test"):
        _delivered(daemon, shared_target, f"http://{host}:{port}/in")
    for host in ("other.test", "allowed.test", "a.allowed.test.other.test", "xallowed.test", "127.0.0.1",
                 "169.254.169.254", "exact.test.other.test"):
        _refused_at_intake(daemon, f"http://{host}:{port}/out")
    # what the intake parser and the HTTP stack read as the host may differ: the HTTP stack's wins
    job_id = new_id("differential")
    response = post_job(daemon, {"id": job_id, "url": f"http://other.test:{port}\\@a.allowed.test:{port}/x"})
    if response.status_code == 202:
        job = final_state(daemon, job_id)
        assert job["state"] == "dead" and (job["last_error"] or "").startswith("refused:"), job
    else:
        assert response.status_code == 400, response.text
    assert not [r for r in shared_target.received() if r["headers"].get("host", "").startswith("other.test")]


def test_allowed_hosts_networks_decide_on_resolved_addresses(ns_daemons, shared_target):
    port = shared_target.port
    loopback = ns_daemons("127.0.0.0/8", "169.254.0.0/16")
    _delivered(loopback, shared_target, f"http://good.test:{port}/cidr")
    _delivered(loopback, shared_target, f"http://127.0.0.1:{port}/cidr")
    _refused_at_connect(loopback, shared_target, f"http://metadata.test:{port}/cidr", "169.254.169.254")
    _refused_at_intake(loopback, f"http://169.254.169.254:{port}/cidr")

    elsewhere = ns_daemons("10.0.0.0/8")
    _refused_at_connect(elsewhere, shared_target, f"http://good.test:{port}/cidr", "127.0.0.1")
    _refused_at_intake(elsewhere, f"http://127.0.0.1:{port}/cidr")


# -- 5. the bearer token ----------------------------------------------------------------------

def _jobs_status(daemon: Daemon, target, authorization: str | None, **extra) -> int:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return requests.post(f"{daemon.api}/v1/jobs", data=json.dumps({"url": target.url("/tok")}),
                         headers=headers, timeout=10, **extra).status_code


def _token_outcomes(daemon: Daemon, target, token: str) -> None:
    assert _jobs_status(daemon, target, None) == 401
    assert _jobs_status(daemon, target, "Bearer wrong") == 401
    assert _jobs_status(daemon, target, f"Bearer {token[:-1]}") == 401
    assert _jobs_status(daemon, target, f"Bearer {token}x") == 401
    assert _jobs_status(daemon, target, f"Basic {token}") == 401
    assert _jobs_status(daemon, target, token) == 401
    assert _jobs_status(daemon, target, f"Bearer {token}") == 202
    assert _jobs_status(daemon, target, f"bearer {token}") == 202


def test_token_file_gives_the_token(start_daemon, shared_target, tmp_path):
    token = secrets_.token_urlsafe(24)
    path = tmp_path / "token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    daemon = start_daemon(api={"token_file": str(path)})
    _token_outcomes(daemon, shared_target, token)
    assert "other users" not in daemon.log() and token not in daemon.log()


def test_a_relative_token_file_is_read_from_credentials_directory(start_daemon, shared_target, tmp_path):
    token = secrets_.token_urlsafe(24)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "gq-token").write_text(token)
    (credentials / "gq-token").chmod(0o400)
    daemon = start_daemon(api={"token_file": "gq-token"}, env={"CREDENTIALS_DIRECTORY": str(credentials)})
    _token_outcomes(daemon, shared_target, token)


def test_a_token_file_others_can_read_is_warned_about(start_daemon, shared_target, tmp_path):
    token = secrets_.token_urlsafe(24)
    path = tmp_path / "readable-token"
    path.write_text(token)
    path.chmod(0o644)
    daemon = start_daemon(api={"token_file": str(path)})
    warnings = [line for line in daemon.log().splitlines() if "WARNING" in line and str(path) in line]
    assert warnings, daemon.log()
    assert token not in daemon.log()
    _token_outcomes(daemon, shared_target, token)


@pytest.mark.parametrize("content", [None, "", " \n\t\n"])
def test_a_missing_or_empty_token_file_is_a_config_error(tmp_path, content):
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    config = tmp_path / "gq.toml"
    config.write_text(to_toml(daemon_config(api={"token_file": str(path)})))
    result = run_gq("run", "-c", str(config), timeout=20)
    assert result.returncode == 2, result
    assert result.stderr.startswith("gq: ") and "api.token_file" in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0"])
def test_a_non_loopback_listen_without_a_token_is_refused(tmp_path, listen):
    config = tmp_path / "gq.toml"
    config.write_text(to_toml(daemon_config(api={"listen": listen})))
    result = run_gq("run", "-c", str(config), timeout=20)
    assert result.returncode == 2, result
    assert result.stderr.startswith("gq: ") and "api.token" in result.stderr


def test_a_non_loopback_socket_from_systemd_without_a_token_is_refused(tmp_path):
    listener = socket.socket()
    listener.bind(("0.0.0.0", 0))
    listener.listen(8)
    config = tmp_path / "gq.toml"
    config.write_text(to_toml(daemon_config()))
    fd = listener.fileno()
    try:
        wrapper = ("import os, sys; os.dup2(int(sys.argv[1]), 3); "
                   "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
                   "os.execv(sys.executable, [sys.executable, '-m', 'gq', 'run', '-c', sys.argv[2]])")
        result = subprocess.run([sys.executable, "-c", wrapper, str(fd), str(config)], pass_fds=(fd,),
                                capture_output=True, text=True, timeout=20)
    finally:
        listener.close()
    assert result.returncode == 2, result
    assert "api.token" in result.stderr


def test_a_reload_cannot_drop_the_token_of_a_non_loopback_listener(start_daemon, shared_target):
    """The listen address cannot change live: a reloaded file that drops the token while moving
    the listen address to loopback would leave the old, public listener open to anyone."""
    token = secrets_.token_urlsafe(16)
    daemon = start_daemon(api={"listen": "0.0.0.0:0", "token": token})
    daemon.api = daemon.api.replace("0.0.0.0", "127.0.0.1")
    assert _jobs_status(daemon, shared_target, None) == 401
    daemon.config_path.write_text(to_toml(daemon_config(api={"listen": "127.0.0.1:0"})))
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: re.search(r"reload: (applied|nothing changed|the config is unchanged)", daemon.log()),
             what="the reload")
    assert re.search(r"reload: config error: .*api\.token: required", daemon.log()), daemon.log()
    listening = [line for line in daemon.log().splitlines() if "listening on" in line]
    assert "0.0.0.0" in listening[0]
    status = _jobs_status(daemon, shared_target, None)
    assert status == 401, (f"after SIGHUP with a file without api.token (listen moved to 127.0.0.1, kept at "
                           f"0.0.0.0 until a restart), POST /v1/jobs without a token on 0.0.0.0 gets {status}")


# -- 6. secrets stay secret -------------------------------------------------------------------

def test_secrets_appear_in_no_output_yet_reach_the_target_intact(tmp_path, shared_target):
    token = f"TOKEN-{secrets_.token_hex(12)}"
    key = secrets_.token_bytes(32)
    whsec = "whsec_" + base64.b64encode(key).decode()
    secret_values: dict[str, str] = {}

    def secret(name: str) -> str:
        secret_values[name] = f"{name}-{secrets_.token_hex(10)}"
        return secret_values[name]

    ok, dead = shared_target.url("/secret"), shared_target.url("/secret", status=404)
    port = shared_target.port
    jobs = {
        "auth-ok": {"url": ok, "headers": {"Authorization": f"Bearer {secret('AUTHOK')}", "X-Trace": "visible-1"}},
        "auth-dead": {"url": dead, "headers": {"AUTHORIZATION": f"Bearer {secret('AUTHDEAD')}"}},
        "cookie": {"url": dead, "headers": {"Cookie": f"session={secret('COOKIE')}"}},
        "api-key": {"url": dead, "headers": {"X-Api-Key": secret("APIKEY")}},
        "api-key-lower": {"url": ok, "headers": {"x-api-key": secret("APIKEYLOW")}},
        "custom": {"url": dead, "headers": {"X-Internal-Sig": secret("CUSTOM")}},
        "custom-lower": {"url": ok, "headers": {"x-internal-sig": secret("CUSTOMLOW")}},
        "userinfo-dead": {"url": f"http://svc:{secret('URLPWDEAD')}@127.0.0.1:{port}/secret?status=404"},
        "userinfo-ok": {"url": f"http://svc:{secret('URLPWOK')}@127.0.0.1:{port}/secret"},
        "userinfo-escaped": {"url": f"http://svc%40corp:{secret('URLPWESC')}%2Fx@127.0.0.1:{port}/secret"},
    }
    config = daemon_config(
        api={"token": token}, journal={"path": "gq-data/journal.sqlite3"}, log={"level": "debug"},
        target={"secret_headers": ["X-Internal-Sig"], "signing_secrets": {"localhost": whsec}},
        retry={"max_attempts": 2})
    daemon = OwnDaemon(tmp_path, config)
    daemon.auth = {"Authorization": f"Bearer {token}"}
    try:
        ids = {}
        for name, job in jobs.items():
            response = post_job(daemon, {"id": new_id(name), **job})
            assert response.status_code == 202, f"{name}: {response.text}"
            ids[name] = response.json()["id"]
        states = {name: final_state(daemon, job_id) for name, job_id in ids.items()}
        for name, job in states.items():
            expected = "dead" if "status=404" in jobs[name]["url"] else "succeeded"
            assert job["state"] == expected, (name, job)

        # the target got every value intact
        for name, job in jobs.items():
            got = records(shared_target, ids[name])
            assert got, name
            for header, value in job.get("headers", {}).items():
                assert got[-1]["headers"][header.lower()] == value, (name, header)
            userinfo = urlsplit(job["url"])
            if userinfo.password:
                basic = base64.b64encode(f"{unquote(userinfo.username)}:{unquote(userinfo.password)}".encode())
                assert got[-1]["headers"].get("authorization") == f"Basic {basic.decode()}", (name, got[-1])

        # and shows it nowhere
        dead_ids = {job_id for name, job_id in ids.items() if states[name]["state"] == "dead"}
        cwd = {"cwd": tmp_path}

        def dlq_text() -> str:
            result = run_gq("dlq", "list", "-c", str(daemon.config_path), **cwd)
            assert result.returncode == 0, result.stderr
            return result.stdout + result.stderr

        def all_listed() -> str | None:
            text = dlq_text()
            return text if all(i in text for i in dead_ids) else None

        listing = wait_for(all_listed, what="the dead letters in gq dlq list")
        as_json = run_gq("dlq", "list", "--json", "-c", str(daemon.config_path), **cwd)
        check = run_gq("check-config", "-c", str(daemon.config_path), **cwd)
        assert check.returncode == 0, check.stderr
        shown_jobs = {name: get(daemon, f"/v1/jobs/{job_id}").text for name, job_id in ids.items()}
        outputs = {
            "GET /v1/jobs/{id}": "\n".join(shown_jobs.values()),
            "/v1/status": get(daemon, "/v1/status").text,
            "/metrics": requests.get(f"{daemon.api}/metrics", timeout=10).text,
            "gq dlq list": listing,
            "gq dlq list --json": as_json.stdout + as_json.stderr,
            "gq check-config": check.stdout + check.stderr,
        }
        daemon.signal(signal.SIGTERM)
        daemon.wait()
        outputs["gq's log"] = daemon.log()
        leaks = [f"{what}: {name}" for what, text in outputs.items()
                 for name, value in {**secret_values, "api.token": token, "signing secret": whsec,
                                     "signing key": whsec[len("whsec_"):]}.items() if value in text]
        assert not leaks, f"secrets shown: {leaks}"

        # what is shown instead
        assert '"<redacted>"' in shown_jobs["cookie"] and "visible-1" in shown_jobs["auth-ok"]
        assert "//<redacted>@" in shown_jobs["userinfo-dead"]  # the whole user:password part
        assert all(i in as_json.stdout for i in dead_ids)
        assert '"<secret>"' in check.stdout
    finally:
        daemon.stop()


def test_the_journal_which_holds_credentials_is_not_readable_by_others(tmp_path, shared_target):
    """Jobs are kept whole in the journal, Authorization headers included."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    old = os.umask(0o022)   # a common default umask
    try:
        daemon = Daemon(workdir, daemon_config(journal={"path": "gq-data/journal.sqlite3"}))
    finally:
        os.umask(old)
    try:
        assert post_job(daemon, {"url": shared_target.url("/j"), "headers": {"Authorization": "Bearer x"}}).ok
        journal = workdir / "gq-data" / "journal.sqlite3"
        wait_for(journal.exists, what="the journal")
        readable = [(p.name, oct(p.stat().st_mode & 0o777)) for p in (journal.parent, journal)
                    if p.stat().st_mode & 0o044]
        directory_closed = not (journal.parent.stat().st_mode & 0o005)
        assert directory_closed or not [r for r in readable if r[0] == journal.name], (
            f"journal.path created readable by other users under umask 022: {readable}")
    finally:
        daemon.stop()


# -- 7. signed deliveries ---------------------------------------------------------------------

def verify_webhook(secret: str, headers: dict[str, str], body: bytes, tolerance: float = 300.0,
                   now: float | None = None) -> bool:
    """Standard Webhooks verification, as a receiver of gq's deliveries would write it.

    `headers` as received (names in lower case); `body` the raw request body bytes.
    """
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False                                        # too old or from the future: a replay
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, sig.partition(",")[2])
               for sig in headers["webhook-signature"].split() if sig.startswith("v1,"))


def test_deliveries_to_a_host_with_a_secret_are_signed(own_daemon, shared_target):
    whsec = "whsec_" + base64.b64encode(secrets_.token_bytes(32)).decode()
    daemon = own_daemon(target={"signing_secrets": {"127.0.0.1": whsec}})
    started = time.time()
    jobs = {
        "json-retried": {"url": shared_target.url("/signed", fail=1, retry_after=0), "json": {"msg": "héllo", "n": 1}},
        "body": {"url": shared_target.url("/signed"), "body": "raw body, {not json} ünïcode"},
        "no-body": {"url": shared_target.url("/signed"), "method": "GET"},
        "forged": {"url": shared_target.url("/signed"), "body": "x",
                   "headers": {"webhook-signature": "v1,forged", "webhook-id": "forged-id"}},
        "unsigned-host": {"url": f"http://localhost:{shared_target.port}/unsigned", "body": "y"},
    }
    ids = {}
    for name, job in jobs.items():
        response = post_job(daemon, {"id": new_id(name), **job})
        assert response.status_code == 202, response.text
        ids[name] = response.json()["id"]
    for name, job_id in ids.items():
        assert final_state(daemon, job_id)["state"] == "succeeded", name

    attempts = records(shared_target, ids["json-retried"])
    assert len(attempts) == 2
    for name in ("json-retried", "body", "no-body", "forged"):
        for r in records(shared_target, ids[name]):
            h = r["headers"]
            assert h["webhook-id"] == ids[name], (name, h)
            assert started - 2 <= int(h["webhook-timestamp"]) <= time.time() + 2, (name, h)
            assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", h["webhook-signature"]), (name, h)
            body = r["body"].encode()
            assert verify_webhook(whsec, h, body), (name, h)
            other = "whsec_" + base64.b64encode(secrets_.token_bytes(32)).decode()
            assert not verify_webhook(other, h, body)
            assert not verify_webhook(whsec, h, body + b" ")
            assert not verify_webhook(whsec, {**h, "webhook-id": "other"}, body)
            assert not verify_webhook(whsec, h, body, now=int(h["webhook-timestamp"]) + 301)
    unsigned = records(shared_target, ids["unsigned-host"])[-1]["headers"]
    assert not [name for name in unsigned if name.startswith("webhook-")], unsigned
