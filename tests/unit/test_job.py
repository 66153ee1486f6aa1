"""Jobs: `gq.core.job.parse` against the contract's job table, and JSON-lines reading."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gq.core.job import (
    FIELDS,
    LISTED_HEADERS,
    LISTED_VALUE,
    MAX_DEPTH,
    METHODS,
    RESERVED_HEADERS,
    UNREACHABLE_IDS,
    Job,
    Unreadable,
    loads,
    parse,
    read_jobs,
    read_lines,
    timestamp,
)
from gq.core.redaction import REDACTED
from gq.delivery.sections import TargetConfig
from gq.errors import JobError

URL = "http://example.com/hook"


def allowing(*hosts: str) -> dict:
    """parse() keywords for a config whose target.allowed_hosts is `hosts`."""
    return {"policy": TargetConfig(allowed_hosts=hosts).policy()}


def refusal(obj, **kw) -> JobError:
    with pytest.raises(JobError) as caught:
        parse(obj, **kw)
    return caught.value


# -- accepted


def test_minimal_job_gets_the_defaults():
    job = parse({"url": URL})
    assert (job.method, job.url, job.headers) == ("POST", URL, {})
    assert (job.data, job.is_json, job.timeout, job.max_attempts) == (None, False, None, None)
    assert re.fullmatch(r"[0-9a-f]{32}", job.id)
    assert parse({"url": URL}).id != job.id, "each job without an id gets its own"


def test_every_field_is_taken():
    job = parse({"id": "order-17", "method": "put", "url": URL, "headers": {"X-Trace": "a\tb"},
                 "json": {"total": 3, "name": "é"}, "timeout": 2, "max_attempts": 7})
    assert job == Job("order-17", "PUT", URL, {"X-Trace": "a\tb"}, '{"total":3,"name":"é"}',
                      True, 2.0, 7)
    assert isinstance(job.timeout, float)


def test_default_id_is_used_only_when_the_job_has_none():
    assert parse({"url": URL}, default_id="jobs.jsonl:3").id == "jobs.jsonl:3"
    assert parse({"url": URL, "id": "mine"}, default_id="jobs.jsonl:3").id == "mine"


def test_default_url_is_used_only_when_the_job_has_none():
    assert parse({}, default_url=URL).url == URL
    assert parse({"url": "https://other.example/x"}, default_url=URL).url == "https://other.example/x"


@pytest.mark.parametrize("field", ["id", "method", "url", "headers", "body", "timeout", "max_attempts", "run_at",
                                   "delay", "ordering_key"])
def test_null_is_the_field_left_out(field):
    """As clients that send their unset optionals as null expect; json's null is a body."""
    assert parse({"url": URL, field: None}, default_url=URL, default_id="a", now=1.0) == \
        parse({"url": URL}, default_url=URL, default_id="a", now=1.0)
    job = parse({"json": None, "body": None, "run_at": None, "delay": 5}, default_url=URL, now=1.0)
    assert (job.data, job.is_json, job.run_at) == ("null", True, 6.0)
    assert refusal({"url": URL, "json": None, "body": "x"}).field == "body"


@pytest.mark.parametrize("method", [*METHODS, "get", "Patch"])
def test_methods_are_accepted_in_any_case(method):
    assert parse({"url": URL, "method": method}).method == method.upper()


@pytest.mark.parametrize("field, value, data, is_json", [
    ("body", "raw text", "raw text", False),
    ("body", "", "", False),
    ("json", None, "null", True),
    ("json", [1, 2.5, "x"], '[1,2.5,"x"]', True),
])
def test_body_and_json_become_the_serialized_data(field, value, data, is_json):
    job = parse({"url": URL, field: value})
    assert (job.data, job.is_json) == (data, is_json)


@pytest.mark.parametrize("obj", [
    {"id": "x" * 256},
    {"id": "printable ASCII: ~!@#$%^&*()_+{}|:<>?"},
    {"id": "..."},   # not a dot segment
    {"id": "../a/./%2e"},  # percent-encoded whole, one segment
    {"timeout": 86400},
    {"timeout": 0.001},
    {"max_attempts": 1},
    {"max_attempts": 1000},
    {"headers": {"Content-Type": "text/plain", "Authorization": "Bearer t"}},
], ids=lambda obj: repr(obj)[:40])
def test_values_at_the_limits_are_accepted(obj):
    job = parse({"url": URL, **obj})
    assert job.to_dict().items() >= obj.items()


@pytest.mark.parametrize("url, allowed", [
    ("http://example.com/hook", ("example.com",)),
    ("https://example.com:8443/hook", ("example.com",)),   # no port in allowed_hosts
    ("http://[::1]:8080/", ("::1",)),
    ("http://10.0.0.7/", ("example.com", "10.0.0.7")),
    ("http://Example.com/hook", ("Example.com",)),         # the very same host text
    ("http://api.example.com/", ("*.example.com",)),
    ("http://10.1.2.3/", ("10.0.0.0/8",)),
])
def test_hosts_in_allowed_hosts_are_accepted(url, allowed):
    assert parse({"url": url}, **allowing(*allowed)).url == url


# -- refused, naming the field at fault

REFUSED = [
    # the job itself
    ([], "job"),
    ("a string", "job"),
    (None, "job"),
    ({"url": URL, "retries": 3}, "retries"),
    # id
    ({"url": URL, "id": 5}, "id"),
    ({"url": URL, "id": True}, "id"),
    ({"url": URL, "id": ["a"]}, "id"),
    ({"url": URL, "id": ""}, "id"),
    ({"url": URL, "id": "x" * 257}, "id"),
    ({"url": URL, "id": "café"}, "id"),
    ({"url": URL, "id": "ジョブ"}, "id"),
    ({"url": URL, "id": "a\nb"}, "id"),
    ({"url": URL, "id": "a\x7f"}, "id"),
    ({"url": URL, "id": "replay"}, "id"),  # /v1/jobs/replay is the bulk replay
    ({"url": URL, "id": "."}, "id"),       # dot segments: clients drop them from /v1/jobs/{id}
    ({"url": URL, "id": ".."}, "id"),
    # method
    ({"url": URL, "method": "FETCH"}, "method"),
    ({"url": URL, "method": "CONNECT"}, "method"),
    ({"url": URL, "method": ""}, "method"),
    ({"url": URL, "method": 5}, "method"),
    # url
    ({}, "url"),
    ({"url": ""}, "url"),
    ({"url": None}, "url"),
    ({"url": 5}, "url"),
    ({"url": "ftp://example.com/x"}, "url"),
    ({"url": "file:///etc/passwd"}, "url"),
    ({"url": "example.com/hook"}, "url"),
    ({"url": "//example.com/hook"}, "url"),
    ({"url": "http://"}, "url"),
    ({"url": "http:///hook"}, "url"),
    ({"url": "http://example.com:port/"}, "url"),
    ({"url": "http://example.com:99999/"}, "url"),
    ({"url": "http://[::1/"}, "url"),
    ({"url": "http://example.com/a b"}, "url"),
    ({"url": "http://example.com/\r\nX-Injected: 1"}, "url"),
    ({"url": "http://example.com/\x00"}, "url"),
    ({"url": URL + "?q=" + "a" * 8192}, "url"),
    ({"url": "http://169.254.169.254/latest/meta-data/"}, "url"),
    ({"url": "https://169.254.169.254:443/"}, "url"),
    ({"url": "http://[fe80::1]/"}, "url"),
    ({"url": "http://[fe80::1%25eth0]/"}, "url"),
    ({"url": "http://[::ffff:169.254.169.254]/"}, "url"),
    ({"url": "http://[fd00:ec2::254]/"}, "url"),
    ({"url": "http://100.100.100.200/"}, "url"),
    ({"url": "http://2852039166/"}, "url"),             # 169.254.169.254 written as one number
    ({"url": "http://0xa9.0xfe.0xa9.0xfe/"}, "url"),    # ... and in hex
    # headers
    ({"url": URL, "headers": []}, "headers"),
    ({"url": URL, "headers": "X-A: 1"}, "headers"),
    ({"url": URL, "headers": {"bad name": "v"}}, "headers.bad name"),
    ({"url": URL, "headers": {"": "v"}}, "headers."),
    ({"url": URL, "headers": {"X-A:": "v"}}, "headers.X-A:"),
    ({"url": URL, "headers": {"X-A\n": "v"}}, "headers.X-A\n"),
    ({"url": URL, "headers": {"X-A": 1}}, "headers.X-A"),
    ({"url": URL, "headers": {"X-A": None}}, "headers.X-A"),
    ({"url": URL, "headers": {"X-A": "v\r\nX-Injected: 1"}}, "headers.X-A"),
    ({"url": URL, "headers": {"X-A": "v\nw"}}, "headers.X-A"),
    ({"url": URL, "headers": {"X-A": "\x00"}}, "headers.X-A"),
    *[({"url": URL, "headers": {name: "v"}}, f"headers.{name}")
      for name in ("Idempotency-Key", "idempotency-key", "Content-Length", "Transfer-Encoding",
                   "Host", "Connection", "User-Agent")],
    # body and json
    ({"url": URL, "json": {}, "body": ""}, "body"),
    ({"url": URL, "body": 5}, "body"),
    ({"url": URL, "body": {"a": 1}}, "body"),
    # timeout
    ({"url": URL, "timeout": 0}, "timeout"),
    ({"url": URL, "timeout": -1}, "timeout"),
    ({"url": URL, "timeout": 86400.5}, "timeout"),
    ({"url": URL, "timeout": "5"}, "timeout"),
    ({"url": URL, "timeout": True}, "timeout"),
    ({"url": URL, "timeout": math.inf}, "timeout"),
    ({"url": URL, "timeout": math.nan}, "timeout"),
    # max_attempts
    ({"url": URL, "max_attempts": 0}, "max_attempts"),
    ({"url": URL, "max_attempts": 1001}, "max_attempts"),
    ({"url": URL, "max_attempts": 2.0}, "max_attempts"),
    ({"url": URL, "max_attempts": "3"}, "max_attempts"),
    ({"url": URL, "max_attempts": True}, "max_attempts"),
]


@pytest.mark.parametrize("obj, field", REFUSED, ids=[repr(o)[:60] for o, _ in REFUSED])
def test_refusal_names_the_field(obj, field):
    assert refusal(obj).field == field


def test_reserved_headers_are_all_covered():
    named = {next(iter(obj["headers"])).lower()
             for obj, field in REFUSED if field.startswith("headers.")}
    assert RESERVED_HEADERS <= named


@pytest.mark.parametrize("url", [0, False, [], {}], ids=repr)
def test_url_of_the_wrong_type_is_refused_even_with_a_default_url(url):
    assert refusal({"url": url}, default_url=URL).field == "url"


@pytest.mark.parametrize("job, error", [
    ({"url": "127.0.0.1:9000/hook"}, 'url: needs http:// or https://, got "127.0.0.1:9000/hook"'),
    ({"url": "ftp://user:hunter2@example.com/x"}, 'url: needs http:// or https://, got "ftp://<redacted>@example.com/x"'),
    ({"url": "x" * 100}, f'url: needs http:// or https://, got "{"x" * 80}…"'),
    ({"url": 9000}, "url: must be a string (an http:// or https:// URL), got a number"),
    ({"url": True}, "url: must be a string (an http:// or https:// URL), got a boolean"),
    ({"url": ["http://a/"]}, "url: must be a string (an http:// or https:// URL), got an array"),
    ({"url": ""}, "url: must be an http:// or https:// URL, got an empty string"),
    ({"url": URL + "?q=" + "a" * 8192}, "url: longer than 8,192 characters (8,218)"),
    ({"url": URL, "delay": -1}, "delay: must be a number of seconds from 0 to 316,224,000 (10 years)"),
    ({"url": URL, "timeout": 0}, "timeout: must be a number of seconds above 0, at most 86,400 (a day)"),
    ({"url": URL, "max_attempts": 1001}, "max_attempts: must be a whole number from 1 to 1,000"),
    ({"url": URL, "run_at": 1e11}, "run_at: must be from 1970-01-01T00:00:00Z to 5138-11-16T09:46:40Z "
                                   "(Unix seconds from 0 to 100,000,000,000)"),
], ids=["no scheme", "another scheme, password hidden", "long", "a number", "a boolean", "an array", "empty",
        "too long", "delay", "timeout", "max_attempts", "run_at"])
def test_refusals_read_as_a_person_reads_them_once(job, error):
    assert str(refusal(job)) == error


def test_url_missing_says_no_default_is_configured():
    assert "target.url" in refusal({}).reason


NAMES = ("example.com", "*.example.com", "10.0.0.7")


@pytest.mark.parametrize("url, allowed", [
    ("http://other.example/", NAMES),
    ("http://example.com.evil.example/", NAMES),
    ("http://evilexample.com/", NAMES),
    ("http://10.0.0.8/", NAMES),
    ("http://10.0.0.8/", ("10.0.0.0/30",)),
    ("http://169.254.169.254/", ("169.254.0.0/16",)),   # forbidden even when allowed
])
def test_hosts_outside_allowed_hosts_are_refused(url, allowed):
    assert refusal({"url": url}, **allowing(*allowed)).field == "url"


# -- to_dict


@pytest.mark.parametrize("obj", [
    {"url": URL},
    {"id": "a", "method": "DELETE", "url": URL, "headers": {"X-A": "1"}, "body": "b",
     "timeout": 1.5, "max_attempts": 2},
    {"id": "b", "url": URL, "json": {"nested": [None, True, 1.5]}},
    {"id": "c", "url": URL, "json": None},
], ids=repr)
def test_to_dict_parses_back_to_the_same_job(obj):
    job = parse(obj)
    assert parse(json.loads(json.dumps(job.to_dict()))) == job


# -- shown in a list


def test_a_list_shows_long_header_values_cut_and_says_so():
    long = "v" * (LISTED_VALUE + 1)
    job = parse({"url": URL, "headers": {"X-Short": "s", "X-Long": long, "Authorization": "a" * 1000}})
    assert job.shown(listed=True) == {
        "method": "POST", "url": URL, "truncated": True,
        "headers": {"X-Short": "s", "X-Long": "v" * LISTED_VALUE + "…", "Authorization": REDACTED}}
    assert job.shown()["headers"]["X-Long"] == long  # one job, by its id: whole


def test_a_list_leaves_out_the_headers_past_its_room_and_says_so():
    value = "v" * LISTED_VALUE
    headers = {f"X-{n:04}": value for n in range(100)}
    shown = parse({"url": URL, "headers": headers}).shown(listed=True)
    fits = LISTED_HEADERS // (6 + LISTED_VALUE)
    assert shown["headers"] == dict(list(headers.items())[:fits]) and shown["truncated"] is True


def test_a_list_shows_headers_within_its_bounds_as_they_are():
    headers = {"X-A": "v" * LISTED_VALUE, "Cookie": "c" * 5000}  # a redacted value takes no room
    job = parse({"url": URL, "headers": headers})
    assert job.shown(listed=True) == job.shown() and "truncated" not in job.shown(listed=True)


# -- read_lines


@pytest.mark.parametrize("text, lines", [
    ("", []),
    ('{"a": 1}', [1]),
    ('{"a": 1}\n\n   \n{"a": 2}\n', [1, 4]),
    ('\r\n{"a": 1}\r\n{"a": 2}\r\n', [2, 3]),
    ('\n\t\n[1]\n', [3]),
])
def test_read_lines_skips_blank_lines_and_numbers_from_one(text, lines):
    assert [number for number, _ in read_lines(text)] == lines


def test_read_lines_returns_the_objects():
    assert read_lines('{"url": "http://a/"}\n\n[1, 2]\n') == [(1, {"url": "http://a/"}), (3, [1, 2])]


@pytest.mark.parametrize("text, index", [
    ("{oops}", 1),
    ('{"a": 1}\n\n{"a": \n{"a": 2}\n', 3),
    ('[1]\n' + "[" * 100000 + "\n", 2),   # nesting too deep is invalid input, not a crash
])
def test_read_lines_reports_the_first_invalid_line(text, index):
    with pytest.raises(JobError) as caught:
        read_lines(text)
    assert (caught.value.field, caught.value.index) == ("json", index)


def test_read_lines_splits_on_newlines_only():
    # JSON allows U+2028 and U+2029 raw inside strings; they do not end a JSON line.
    text = json.dumps({"body": "a\u2028b\u2029c\x85d"}, ensure_ascii=False) + "\n{}\n"
    assert read_lines(text) == [(1, {"body": "a\u2028b\u2029c\x85d"}), (2, {})]


# -- read_jobs: what gq submit reads

@pytest.mark.parametrize("text, jobs", [
    ("", []),
    ('{"a": 1}\n\n{"a": 2}\n', [(1, {"a": 1}), (3, {"a": 2})]),
    ('\n{\n  "a": 1,\n  "b": [\n    2\n  ]\n}\n', [(2, {"a": 1, "b": [2]})]),
    ('[\n  {"a": 1},\n\n  {"a": [2,\n 3]}, {"a": 4}\n]', [(2, {"a": 1}), (4, {"a": [2, 3]}), (5, {"a": 4})]),
    ("[]", []),
])
def test_read_jobs_reads_lines_an_array_or_one_object_with_the_line_each_starts_on(text, jobs):
    assert read_jobs(text) == jobs


@pytest.mark.parametrize("text, error", [
    ('{"a": 1}\n{"a": 2\n', "line 2: not valid JSON: Expecting ',' delimiter (column 8)"),
    ('{\n  "a": 1\n  "b": 2\n}', "line 3: not valid JSON: Expecting ',' delimiter (column 3)"),
    ('{"a": 1} {"b": 2}', "line 1: not valid JSON: Extra data (column 10)"),
    ("[1] [2]", "line 1: not valid JSON: Extra data (column 5)"),
    ("nope", "line 1: not valid JSON: Expecting value (column 1)"),
])
def test_read_jobs_names_the_line_at_fault(text, error):
    with pytest.raises(Unreadable) as caught:
        read_jobs(text)
    assert str(caught.value) == error


# -- loads: the JSON a client sends


def nested(depth: int, opener: str = "[") -> str:
    """A JSON text of arrays ("[") or objects ("{") nested `depth` deep."""
    return ("[" if opener == "[" else '{"a":') * depth + "1" + ("]" if opener == "[" else "}") * depth


@pytest.mark.parametrize("opener", ["[", "{"])
def test_loads_takes_json_nested_max_depth_deep_and_refuses_deeper(opener):
    assert loads(nested(MAX_DEPTH, opener)) == json.loads(nested(MAX_DEPTH, opener))
    for depth in (MAX_DEPTH + 1, 5000, 100_000):  # refused as input, not a RecursionError
        with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH} levels"):
            loads(nested(depth, opener))


def test_loads_takes_many_shallow_brackets():
    jobs = [{"url": URL, "json": {"a": [1, {"b": []}]}}] * 1000   # 4000 brackets, 4 deep
    assert loads(json.dumps(jobs)) == jobs
    assert loads(json.dumps({"body": "[" * 5000})) == {"body": "[" * 5000}  # brackets in a string


@pytest.mark.parametrize("text", ["1e400", "-1e400", "[NaN]", "Infinity", "1" + "0" * 400 + ".5"])
def test_loads_refuses_numbers_that_are_no_finite_float(text):
    with pytest.raises(ValueError):
        loads(text)


# -- properties

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)
url_like = st.sampled_from([URL, "https://[::1]:8443/x", "http://169.254.169.254/", "http://[x/",
                            "http://h:99999/", "ftp://h/", "http://\u2100/", "http://a b/", ""])
job_like = st.dictionaries(st.sampled_from(FIELDS), json_values | url_like, max_size=6)


@settings(deadline=None)
@given(obj=json_values | job_like, default_url=st.sampled_from(["", URL]))
def test_any_json_value_is_a_job_or_a_job_error(obj, default_url):
    try:
        job = parse(obj, default_url=default_url)
    except JobError as e:
        assert isinstance(e.field, str) and e.reason   # field may be "" : an unknown field named ""
    else:
        assert isinstance(job, Job) and job.url


id_chars = st.characters(min_codepoint=0x20, max_codepoint=0x7E)          # printable ASCII
header_chars = st.characters(max_codepoint=0xFF, exclude_categories=("Cc",))  # Latin-1, no controls
header_names = st.from_regex(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}", fullmatch=True).filter(
    lambda name: name.lower() not in RESERVED_HEADERS)
urls = st.builds("{}://{}{}{}".format, st.sampled_from(["http", "https"]),
                 st.sampled_from(["example.com", "127.0.0.1", "[::1]", "api.example.org"]),
                 st.sampled_from(["", ":80", ":8443"]),
                 st.from_regex(r"(/[A-Za-z0-9._~%-]*)*(\?[A-Za-z0-9=&]*)?", fullmatch=True))
plain_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10)
payloads = st.one_of(st.just({}), st.builds(lambda v: {"json": v}, plain_json),
                     st.builds(lambda v: {"body": v}, st.text()))
valid_jobs = st.builds(
    lambda base, payload: {**base, **payload},
    st.fixed_dictionaries({"url": urls}, optional={
        # No space at either end: HTTP would strip it from the Idempotency-Key.
        "id": st.text(id_chars, min_size=1, max_size=256).filter(
            lambda i: i == i.strip(" ") and i not in UNREACHABLE_IDS),
        "method": st.sampled_from(METHODS + tuple(m.lower() for m in METHODS)),
        "headers": st.dictionaries(header_names, st.text(header_chars), max_size=4),
        "timeout": st.integers(1, 86400) | st.floats(0, 86400, exclude_min=True),
        "max_attempts": st.integers(1, 1000),
    }),
    payloads)


@settings(deadline=None)
@given(valid_jobs)
def test_valid_job_survives_to_dict_and_parse(obj):
    job = parse(obj)
    out = job.to_dict()
    assert parse(out) == job
    assert json.loads(job.to_json()) == out  # the journal's and the Redis broker's form
    expected = {**obj, "method": obj.get("method", "POST").upper(), "id": job.id}
    if not expected.get("headers"):
        expected.pop("headers", None)
    assert out == expected


@pytest.mark.parametrize("text,seconds", [
    ("2026-12-02T09:30:00Z", 1796203800.0), ("2026-12-02t09:30:00z", 1796203800.0),
    ("2026-12-02 09:30:00.25+01:00", 1796200200.25), ("2026-12-02T09:30:00-05:30", 1796223600.0),
    ("2016-12-31T23:59:60Z", 1483228800.0)])  # a leap second: Unix time's next second
def test_rfc3339_date_times_in_each_of_their_forms(text, seconds):
    assert timestamp(text) == seconds


@pytest.mark.parametrize("text,why", [
    ("2026-12-02T09:30:00", "needs an offset or Z"), ("2026-12-02T09:30Z", "not an RFC 3339 date-time"),
    ("20261202T093000Z", "not an RFC 3339 date-time"), ("2026-02-30T09:30:00Z", "day is out of range"),
    ("2026-12-02T09:30:61Z", "second must be in 0..60"), ("2026-12-02T09:30:00+24:00", "offset +24:00")])
def test_what_is_not_an_rfc3339_date_time_is_named(text, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        timestamp(text)


@pytest.mark.parametrize("run_at", ["1969-12-31T23:59:59Z", "1970-01-01T00:30:00+01:00", -1, 10**400, 1e11])
def test_a_run_at_before_1970_or_past_the_bound_is_refused_in_either_form(run_at):
    with pytest.raises(JobError) as e:
        parse({"url": URL, "run_at": run_at})
    assert e.value.field == "run_at" and "1970" in str(e.value)


@pytest.mark.parametrize("run_at", ["1970-01-01T00:00:00Z", "1970-01-01T01:00:00+01:00", 0, 99999999999.5])
def test_whatever_run_at_intake_takes_is_read_back_by_the_same_parser(run_at):
    job = parse({"url": URL, "run_at": run_at, "ordering_key": "k"})
    assert parse(job.to_dict()) == job


def test_a_payload_is_shown_whole_and_cut_in_a_list():
    from gq.core.job import LISTED_PAYLOAD

    exact, over = "b" * LISTED_PAYLOAD, "b" * (LISTED_PAYLOAD + 1)
    assert parse({"url": "http://x/", "body": exact}).shown(listed=True)["body"] == exact
    cut = parse({"url": "http://x/", "body": over}).shown(listed=True)
    assert (cut["body"], cut["truncated"]) == (exact + "…", True)
    value = {"k": "v" * LISTED_PAYLOAD}
    as_json = parse({"url": "http://x/", "json": value})
    assert as_json.shown()["json"] == value and "truncated" not in as_json.shown()
    listed = as_json.shown(listed=True)
    assert listed["json_text"] == ('{"k":"' + "v" * LISTED_PAYLOAD)[:LISTED_PAYLOAD] + "…" and "json" not in listed
    assert parse({"url": "http://x/", "json": None}).shown(listed=True)["json"] is None
    assert "json" not in parse({"url": "http://x/"}).shown() and "body" not in parse({"url": "http://x/"}).shown()
