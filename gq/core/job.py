"""A job: one HTTP request to deliver, parsed and validated from its JSON form."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NoReturn

from gq.core import redaction
from gq.core.hosts import HostPolicy, url_host
from gq.errors import JobError

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
FIELDS = ("id", "method", "url", "headers", "json", "body", "timeout", "max_attempts", "run_at", "delay",
          "ordering_key")
MAX_ID_LENGTH = 256
# Ids no URL /v1/jobs/{id} can name. Any other id, sent as quote(id, safe=""), reaches the API
# as it is (the server decodes the path once); these do not, however they are encoded.
UNREACHABLE_IDS = {
    "replay": "/v1/jobs/replay is the bulk replay, not a job",
    # RFC 3986 5.2.4: HTTP clients (requests, curl) remove these from a path
    ".": "HTTP clients send /v1/jobs/. as /v1/jobs/",
    "..": "HTTP clients send /v1/jobs/.. as /v1/",
}
MAX_URL_LENGTH = 8192
MAX_TIMEOUT = 86400.0
MAX_ATTEMPTS = 1000
MAX_KEY_LENGTH = 256
MAX_DELAY = 10 * 366 * 86400.0   # seconds: a job scheduled further ahead is a mistake
# Arrays and objects nested in what a client sends, at most: far below Python's recursion
# limit, so that every later reading of a job (the journal's, Redis's, a look-up's) can nest
# a level or two deeper and still parse it.
MAX_DEPTH = 512
# gq sets these itself, or the HTTP stack computes them from the body.
RESERVED_HEADERS = frozenset(
    ("idempotency-key", "user-agent", "content-length", "transfer-encoding", "host", "connection"))
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: a header name
# A list (GET /v1/jobs) shows headers cut to these, so that a page of jobs stays small however
# large a job's headers are (api.max_body_bytes allows); GET /v1/jobs/{id} shows them all.
LISTED_VALUE = 256       # characters of a header value, then CUT
LISTED_HEADERS = 4096    # characters of header names and values in all; the headers past it left out
LISTED_PAYLOAD = 1024    # characters of a payload (a body, or the JSON text) a list shows, then CUT
CUT = "…"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# RFC 3339's date-time (section 5.6): T, t or a space between the two; Z, z or +hh:mm.
_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)", re.ASCII)
_ID = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?")  # HTTP strips spaces around a header value


def encodes(text: str, encoding: str) -> bool:
    """Whether `text` encodes in `encoding` (a lone surrogate, as JSON's "\\ud800" makes, is in none)."""
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def _not_json(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _deeper(value: Any, most: int) -> bool:
    """Whether arrays and objects nest more than `most` deep in `value` (walked level by level:
    no recursion)."""
    level = [value]
    for _ in range(most + 1):
        containers = [v for v in level if isinstance(v, (list, dict))]
        if not containers:
            return False
        level = [item for c in containers for item in (c.values() if isinstance(c, dict) else c)]
    return True


def loads(text: str) -> Any:
    """Strict JSON: no NaN or Infinity, no number too large for a float, arrays and objects
    nested MAX_DEPTH deep at most; raises ValueError."""
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_not_json)
        # Fewer brackets than MAX_DEPTH cannot nest deeper: most texts are not walked.
        if text.count("[") + text.count("{") <= MAX_DEPTH or not _deeper(value, MAX_DEPTH):
            return value
    except RecursionError:  # far deeper
        pass
    raise ValueError(f"arrays and objects nested deeper than {MAX_DEPTH} levels")


@dataclass(frozen=True, slots=True)
class Job:
    """What to send. `timeout`/`max_attempts` of None mean the configured defaults."""

    id: str
    method: str
    url: str
    headers: dict[str, str]
    data: str | None = None          # the body, already serialized
    is_json: bool = False            # data came from the `json` field
    timeout: float | None = None
    max_attempts: int | None = None
    run_at: float | None = None      # Unix time before which it is not attempted
    ordering_key: str | None = None  # jobs of one key run one at a time, in the order accepted

    def shown(self, hidden: frozenset[str] = frozenset(), listed: bool = False) -> dict[str, Any]:
        """What an operator may see of the request: secret header values and the URL's
        password shown through gq/core/redaction.py (names in `hidden`, lower case, besides the usual);
        its payload as `"json"` (the value) or `"body"` (the string), when it has one.
        `listed`: headers and payload cut as a list shows them, and `"truncated": true` when
        some were (a JSON payload cut is no longer JSON: its text is shown as `"json_text"`)."""
        headers = ((k, redaction.header(k, v, hidden)) for k, v in self.headers.items())
        shown: dict[str, Any] = {"method": self.method, "url": redaction.url(self.url)}
        if not listed:
            shown["headers"] = dict(headers)
            if self.data is not None:
                shown["json" if self.is_json else "body"] = json.loads(self.data) if self.is_json else self.data
            return shown
        shown["headers"], truncated = _listed(headers)
        if self.data is not None and len(self.data) > LISTED_PAYLOAD:
            shown["json_text" if self.is_json else "body"] = self.data[:LISTED_PAYLOAD] + CUT
            truncated = True
        elif self.data is not None:
            shown["json" if self.is_json else "body"] = json.loads(self.data) if self.is_json else self.data
        if truncated:
            shown["truncated"] = True
        return shown

    def to_json(self) -> str:
        """`to_dict()` as JSON, the body spliced in as it is (no parse and dump again)."""
        head = self.to_dict(body=False)
        if self.data is None:
            return json.dumps(head, ensure_ascii=False)
        value = self.data if self.is_json else json.dumps(self.data, ensure_ascii=False)
        key = "json" if self.is_json else "body"
        return json.dumps(head, ensure_ascii=False)[:-1] + f', "{key}": {value}}}'

    def to_dict(self, body: bool = True) -> dict[str, Any]:
        """The job's JSON form, the one `parse` accepts."""
        out: dict[str, Any] = {"id": self.id, "method": self.method, "url": self.url}
        if self.headers:
            out["headers"] = self.headers
        if body and self.data is not None:
            out["json" if self.is_json else "body"] = json.loads(self.data) if self.is_json else self.data
        if self.timeout is not None:
            out["timeout"] = self.timeout
        if self.max_attempts is not None:
            out["max_attempts"] = self.max_attempts
        if self.run_at is not None:
            out["run_at"] = self.run_at
        if self.ordering_key is not None:
            out["ordering_key"] = self.ordering_key
        return out


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


JSON_TYPES = ((bool, "a boolean"), (int, "a number"), (float, "a number"), (str, "a string"),
              (list, "an array"), (dict, "an object"))
SHOWN_VALUE = 80  # characters of a refused value an error quotes


def json_type(value: Any) -> str:
    """What `value` is, in JSON's words: "a number", "an array", "null"."""
    return next((name for kind, name in JSON_TYPES if isinstance(value, kind)), "null")


def quoted(text: str) -> str:
    """A refused text as an error quotes it: in JSON quotes, cut after SHOWN_VALUE characters,
    a URL's password and credential query values redacted."""
    shown = redaction.url(text)
    return json.dumps(shown if len(shown) <= SHOWN_VALUE else shown[:SHOWN_VALUE] + CUT, ensure_ascii=False)


def _check_url(url: Any, policy: HostPolicy) -> str:
    if not isinstance(url, str):
        raise JobError("url", f"must be a string (an http:// or https:// URL), got {json_type(url)}")
    if not url:
        raise JobError("url", "must be an http:// or https:// URL, got an empty string")
    if len(url) > MAX_URL_LENGTH:
        raise JobError("url", f"longer than {MAX_URL_LENGTH:,} characters ({len(url):,})")
    if _CONTROL.search(url) or " " in url or not encodes(url, "utf-8"):
        raise JobError("url", "contains spaces, control characters or text that is not Unicode")
    if not url.lower().startswith(("http://", "https://")):
        raise JobError("url", f"needs http:// or https://, got {quoted(url)}")
    try:  # read as the transport reads it, and refused if another parser would read it otherwise
        host = url_host(url)
    except ValueError as e:
        raise JobError("url", str(e)) from None
    if not host:
        raise JobError("url", "has no host")
    refusal = policy.refuse_host(host)
    if refusal:
        raise JobError("url", refusal)
    return url


def _listed(headers: Iterable[tuple[str, Any]]) -> tuple[dict[str, Any], bool]:
    """`headers` within LISTED_VALUE and LISTED_HEADERS, and whether any was cut or left out;
    those past the room are not even looked at (a job may have thousands). A value that is not
    a string comes from a damaged journal row: shown whole, counted."""
    shown: dict[str, Any] = {}
    room, truncated = LISTED_HEADERS, False
    for name, value in headers:
        if isinstance(value, str) and len(value) > LISTED_VALUE:
            value, truncated = value[:LISTED_VALUE] + CUT, True
        room -= len(name) + len(value if isinstance(value, str) else str(value))
        if room < 0:
            return shown, True
        shown[name] = value
    return shown, truncated


def _check_headers(headers: Any) -> dict[str, str]:
    if not isinstance(headers, dict):
        raise JobError("headers", "must be an object of strings")
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise JobError(f"headers.{name}", "not a valid header name")
        if not isinstance(value, str):
            raise JobError(f"headers.{name}", "value must be a string")
        if _CONTROL.search(value.replace("\t", " ")):
            raise JobError(f"headers.{name}", "value contains control characters")
        if not value.isascii() and not encodes(value, "latin-1"):
            raise JobError(f"headers.{name}", "value has characters HTTP headers cannot carry "
                                              "(outside Latin-1)")
        if name.lower() in RESERVED_HEADERS:
            raise JobError(f"headers.{name}", "set by gq, cannot be given")
    return headers


def timestamp(value: Any) -> float:
    """Unix seconds, or an RFC 3339 date-time with its offset (or Z), as Unix seconds from 0
    to 1e11 in either form (a time before 1970 is refused as a date-time too, so that what is
    accepted is read back by the same rule); ValueError names what is wrong."""
    seconds = value if is_number(value) else _rfc3339(value)
    if not 0 <= seconds < 1e11:  # compared before float(): an int too large for one is refused here
        raise ValueError("must be from 1970-01-01T00:00:00Z to 5138-11-16T09:46:40Z "
                         "(Unix seconds from 0 to 100,000,000,000)")
    return float(seconds)


def _rfc3339(value: Any) -> float:
    if not isinstance(value, str):
        raise ValueError("must be Unix seconds or an RFC 3339 date-time")
    m = _RFC3339.fullmatch(value)
    if m is None:
        if _RFC3339.fullmatch(value + "Z"):
            raise ValueError(f"RFC 3339 needs an offset or Z: {value[:60]!r}")
        raise ValueError(f"not an RFC 3339 date-time (like 2026-12-02T09:30:00Z): {value[:60]!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    offset = m.group(8)
    try:
        if offset not in "Zz" and (int(offset[1:3]) > 23 or int(offset[4:6]) > 59):
            raise ValueError(f"offset {offset} out of range")
        if second > 60:
            raise ValueError("second must be in 0..60")
        zone = UTC if offset in "Zz" else timezone(
            (-1 if offset[0] == "-" else 1) * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
        # A leap second (:60) is the instant after :59 ends, as Unix time counts it.
        moment = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=zone)
    except ValueError as e:
        raise ValueError(f"not an RFC 3339 date-time ({e}): {value[:60]!r}") from None
    return moment.timestamp() + (second == 60) + float(m.group(7) or 0)


def _schedule(obj: dict[str, Any], now: float) -> float | None:
    """When the job may run first: `run_at`, or `delay` seconds from `now`; None: at once."""
    if "run_at" in obj and "delay" in obj:
        raise JobError("delay", "run_at and delay cannot both be given")
    if "delay" in obj:
        delay = obj["delay"]
        if not is_number(delay) or not 0 <= delay <= MAX_DELAY:
            raise JobError("delay", f"must be a number of seconds from 0 to {MAX_DELAY:,.0f} (10 years)")
        return now + delay
    if "run_at" in obj:
        try:
            return timestamp(obj["run_at"])
        except ValueError as e:
            raise JobError("run_at", str(e)) from None
    return None


def _check_key(key: Any) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
        raise JobError("ordering_key", f"must be a string of 1 to {MAX_KEY_LENGTH} characters")
    if _CONTROL.search(key) or not encodes(key, "utf-8"):
        raise JobError("ordering_key", "contains control characters or text that is not Unicode")
    return key


def as_stored(job_id: str, spec: Any, payload: tuple[str | None, bool] | None = None) -> Job:
    """A look-up's job: its request read as the broker holds it (the journal, a Redis entry),
    not checked again. Parsing every job of a page again was most of the cost of a page of
    1,000. Its payload is `payload` (the text, and whether it is JSON) when the broker read it
    apart (the journal does, cut for a list), else the spec's own `json` or `body`."""
    if not isinstance(spec, dict):
        spec = {}
    headers, timeout, attempts = spec.get("headers"), spec.get("timeout"), spec.get("max_attempts")
    run_at, key = spec.get("run_at"), spec.get("ordering_key")
    if payload is None:
        payload = _payload(spec)
    return Job(job_id, str(spec.get("method", "")), str(spec.get("url", "")),
               headers if isinstance(headers, dict) else {}, payload[0], payload[1],
               timeout=float(timeout) if is_number(timeout) else None,
               max_attempts=attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else None,
               run_at=float(run_at) if is_number(run_at) else None,
               ordering_key=key if isinstance(key, str) else None)


def _payload(spec: dict[str, Any]) -> tuple[str | None, bool]:
    """A stored job's body as Job.data holds it, and whether it came from `json`."""
    if "json" in spec:
        return json.dumps(spec["json"], separators=(",", ":"), ensure_ascii=False), True
    body = spec.get("body")
    return (body, False) if isinstance(body, str) else (None, False)


def parse(obj: Any, *, default_url: str = "", policy: HostPolicy = HostPolicy(),
          default_id: str | None = None, now: float | None = None) -> Job:
    """Validate one job's JSON object; raises JobError naming the field at fault.

    A job without an `id` gets `default_id`, else a random one. A `delay` counts from
    `now` (default: the time of the call).
    """
    if not isinstance(obj, dict):
        raise JobError("job", "must be a JSON object")
    for name in obj:
        if name not in FIELDS:
            raise JobError(name, f"unknown field (fields: {', '.join(FIELDS)})")
    # null is the field left out (clients often send their unset optionals so), but for json,
    # whose null is a body.
    if None in obj.values():  # rare: most jobs are copied for nothing otherwise
        obj = {name: value for name, value in obj.items() if value is not None or name == "json"}

    job_id = _check_id(obj.get("id"), default_id)
    method = obj.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise JobError("method", f"must be one of {', '.join(METHODS)}")

    url = obj["url"] if "url" in obj else default_url
    if not url and "url" not in obj:
        raise JobError("url", "required (no target.url is configured)")
    url = _check_url(url, policy)

    headers = _check_headers(obj.get("headers", {}))
    data, is_json = _check_body(obj)

    timeout = obj.get("timeout")
    if timeout is not None and (not is_number(timeout) or not 0 < timeout <= MAX_TIMEOUT):
        raise JobError("timeout", f"must be a number of seconds above 0, at most {MAX_TIMEOUT:,.0f} (a day)")

    max_attempts = obj.get("max_attempts")
    if max_attempts is not None and (
            not isinstance(max_attempts, int) or isinstance(max_attempts, bool)
            or not 1 <= max_attempts <= MAX_ATTEMPTS):
        raise JobError("max_attempts", f"must be a whole number from 1 to {MAX_ATTEMPTS:,}")

    run_at = _schedule(obj, time.time() if now is None else now)
    return Job(job_id, method.upper(), url, headers, data, is_json,
               float(timeout) if timeout is not None else None, max_attempts, run_at,
               _check_key(obj.get("ordering_key")))


def _check_id(job_id: Any, default_id: str | None) -> str:
    """A job's `id` as given, else `default_id`, else a random one."""
    if job_id is None:
        return default_id or uuid.uuid4().hex
    if not isinstance(job_id, str) or not job_id or len(job_id) > MAX_ID_LENGTH:
        raise JobError("id", f"must be a string of 1 to {MAX_ID_LENGTH} characters")
    if not _ID.fullmatch(job_id):
        # The id travels as the Idempotency-Key header: printable ASCII, no space at either end.
        raise JobError("id", "must be printable ASCII without spaces at either end "
                             "(it is sent as the Idempotency-Key header)")
    if job_id in UNREACHABLE_IDS:
        raise JobError("id", f'"{job_id}" is reserved: no URL can name it ({UNREACHABLE_IDS[job_id]})')
    return job_id


def _check_body(obj: dict[str, Any]) -> tuple[str | None, bool]:
    """A job's body from its `json` (encoded) or `body` field, and whether it came from `json`."""
    if "json" in obj and "body" in obj:
        raise JobError("body", "json and body cannot both be given")
    data, is_json = None, False
    if "json" in obj:
        try:
            data, is_json = json.dumps(obj["json"], separators=(",", ":"), ensure_ascii=False,
                                       allow_nan=False), True
        except ValueError:
            raise JobError("json", "numbers must be finite (NaN and Infinity are not JSON)") from None
    elif "body" in obj:
        if not isinstance(obj["body"], str):
            raise JobError("body", "must be a string (use json for structured data)")
        data = obj["body"]
    if data is not None and not encodes(data, "utf-8"):
        raise JobError("json" if is_json else "body", "has text that is not Unicode (a lone surrogate)")
    return data, is_json


def read_lines(text: str) -> list[tuple[int, Any]]:
    """JSON lines → (1-based line number, object), blank lines skipped.

    Raises JobError whose index is the line number of the first invalid line.
    """
    objects = []
    # Only \n ends a line: JSON strings may hold U+2028 and the like, which splitlines() splits on.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            objects.append((number, loads(line)))
        except ValueError as e:
            raise JobError("json", f"invalid JSON: {e}", number) from None
    return objects


class Unreadable(ValueError):
    """A jobs file that is not JSON lines, a JSON array or one JSON object: `str()` says
    where (`line 3`) and why, in words that cannot be mistaken for a job's `json` field."""


def not_json(e: ValueError, line: int) -> Unreadable:
    """The error of a text that failed `loads`, its first line being `line` of a file."""
    if isinstance(e, json.JSONDecodeError):
        return Unreadable(f"line {line + e.lineno - 1}: not valid JSON: {e.msg} (column {e.colno})")
    return Unreadable(f"line {line}: not valid JSON: {e}")


def _line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def read_jobs(text: str) -> list[tuple[int, Any]]:
    """A jobs file → (line where each job starts, its JSON value). The file is JSON lines
    (one job a line, blank lines skipped), a JSON array of jobs, or one JSON object however
    spaced: told by its first non-space character and whether the whole text parses.
    Raises Unreadable naming the line at fault."""
    stripped = text.lstrip()
    if not stripped:
        return []
    first = _line_of(text, len(text) - len(stripped))
    if stripped[0] == "[":
        try:
            whole = loads(text)
        except ValueError as e:
            raise not_json(e, 1) from None
        if not isinstance(whole, list):  # "[1] [2]" fails above: a text that starts with [ parses as a list
            raise Unreadable(f"line {first}: not a JSON array")
        return list(zip(_element_lines(text, len(text) - len(stripped)), whole))
    if stripped[0] == "{":
        try:
            return [(first, loads(text))]
        except ValueError as e:
            whole_error = e
        if "\n" in stripped.rstrip():
            opening = text[len(text) - len(stripped):].split("\n", 1)[0]
            try:
                loads(opening)
            except ValueError:  # its first line is no JSON of its own: meant as one object
                raise not_json(whole_error, 1) from None
    objects = []
    for number, line in enumerate(text.split("\n"), 1):  # only \n ends a line, as in read_lines
        if line.strip():
            try:
                objects.append((number, loads(line)))
            except ValueError as e:
                raise not_json(e, number) from None
    return objects


def _element_lines(text: str, start: int) -> list[int]:
    """The line on which each element of the JSON array at `start` begins (the text is
    known to parse)."""
    decoder = json.JSONDecoder()
    lines: list[int] = []
    position = start + 1
    while True:
        while text[position] in " \t\r\n,":
            position += 1
        if text[position] == "]":
            return lines
        lines.append(_line_of(text, position))
        _, position = decoder.raw_decode(text, position)

