"""What every API endpoint shares: refusing, answering JSON, reading a request's body."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import gevent

from gq.config import ApiConfig
from gq.intake.http_server import SlowClient


class Refusal(Exception):
    """An answer other than success; `reason` is the gq_intake_rejected_total label, if any."""

    def __init__(self, status: str, body: dict[str, Any], reason: str | None = None,
                 headers: Iterable[tuple[str, str]] = ()):
        self.status, self.body, self.reason, self.headers = status, body, reason, list(headers)


def bad_request(field: str, error: str, reason: str | None = "invalid") -> Refusal:
    return Refusal("400 Bad Request", {"error": f"{field}: {error}", "field": field}, reason)


def to_json(body: Any) -> bytes:
    try:
        return json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate quoted from the request (a field's name): escaped
        return json.dumps(body).encode()


def json_answer(status: str, body: Any, start_response: Callable,
                headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    return encoded_answer(status, to_json(body), start_response, headers)


def encoded_answer(status: str, data: bytes, start_response: Callable,
                   headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    """An answer of JSON already encoded (`to_json`)."""
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data))), *headers])
    return [data]


def read_body(environ: dict, api: ApiConfig, expected: str = "jobs") -> bytes:
    """The request's body, at most api.max_body_bytes, within api.client_timeout."""
    limit = api.max_body_bytes
    too_large = Refusal("413 Content Too Large",
                        {"error": f"body: larger than api.max_body_bytes ({limit})", "field": "body"},
                        "too_large")
    length = environ.get("CONTENT_LENGTH") or ""
    if length.isdigit() and int(length) > limit:
        raise too_large
    timeout = api.client_timeout
    try:
        with gevent.Timeout(timeout, SlowClient()):
            raw = environ["wsgi.input"].read(limit + 1)
    except SlowClient:
        raise Refusal("408 Request Timeout",
                      {"error": f"body: not received within api.client_timeout ({timeout:g}s)", "field": "body"},
                      "invalid") from None
    except (OSError, ValueError) as e:  # a malformed chunked body, a connection gone
        raise bad_request("body", f"unreadable: {e}") from None
    if len(raw) > limit:
        raise too_large
    environ["gq.body_read"] = True
    if not raw:
        raise bad_request("body", f"empty, expected {expected}")
    return raw
