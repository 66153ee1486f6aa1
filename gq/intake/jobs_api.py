"""The operator's endpoints: look up, find, cancel and replay jobs, and what was done.

    GET    /v1/jobs/{id}     one job
    GET    /v1/jobs?…        jobs newest first, a page at a time (an opaque cursor)
    DELETE /v1/jobs/{id}     cancel
    POST   /v1/jobs/replay   finished jobs again, by ids or by filter
    GET    /v1/audit?…       the operator's actions, newest first, a page at a time

They ask the broker (gq/broker: Operations, AuditLog), which keeps the jobs and the
actions: every broker does all of it, for the jobs it holds. A cancel or a replay done is
recorded (gq/core/audit.py) as done `by` the request's role, `via` where it says it comes from.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl

from gq.broker import REPLAYABLE, Broker, Conflict, Filter, Found, Replayed, State
from gq.config import Config
from gq.core import hosts
from gq.core.audit import Audit
from gq.core.job import MAX_ID_LENGTH, MAX_KEY_LENGTH, encodes, is_number, loads, timestamp
from gq.dispatch.dispatcher import Dispatcher
from gq.errors import BrokerUnavailable, StorageUnavailable
from gq.intake.api_io import Refusal, bad_request, encoded_answer, json_answer, read_body, to_json

PAGE = 100            # jobs per page by default
MAX_PAGE = 1000
# A page's answer holds this many bytes at most, and one job at least: it stops early, its `next`
# right after its last job, rather than hold `limit` jobs of api.max_body_bytes each.
PAGE_BYTES = 1 << 20
ENVELOPE = 256        # bytes of a page's answer around its jobs: {"jobs": [, ], "next": "…"}
REPLAY_PAGE = 1000    # jobs a replay by filter takes by default
MAX_REPLAY_PAGE = 10000
MAX_REPLAY_IDS = 10000
RETRY_AFTER_BROKER = "5"
RETRY_AFTER_STORAGE = "10"   # seconds: an operator, or the disk, has to act
LIST_PARAMETERS = ("state", "host", "since", "until", "ordering_key", "id_prefix", "limit", "cursor")
AUDIT_PARAMETERS = ("limit", "cursor")
# a replay filter as its audit row keeps it
FILTER_FIELDS = ("state", "host", "since", "until", "ordering_key", "id_prefix")
REPLAY_FIELDS = ("ids", *FILTER_FIELDS, "limit", "cursor")


# base64url without padding, as `cursor` writes it; gq's own are 64 characters at most
# ([a float, a 64-bit integer]), so no number in one is too large for a float and nothing nests deep.
CURSOR = re.compile(r"[A-Za-z0-9_-]{1,100}")
ROWIDS = range(-2**63, 2**63)  # the integers SQLite holds


def cursor(position: tuple[float, int]) -> str:
    """An opaque cursor for what comes after `position`."""
    return base64.urlsafe_b64encode(json.dumps(list(position)).encode()).decode().rstrip("=")


def position(field: str, text: Any) -> tuple[float, int]:
    """The position a cursor names: [a finite number, an integer SQLite holds], as `cursor`
    writes it; a 400 naming `field` for anything else."""
    try:
        if not isinstance(text, str) or not CURSOR.fullmatch(text):
            raise ValueError
        accepted_at, number = loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode())
        # an int, not a bool (nor a float: `in` would walk the range)
        if not is_number(accepted_at) or type(number) is not int or number not in ROWIDS:
            raise ValueError
    except (ValueError, TypeError):
        raise bad_request(field, "not a cursor gq gave (use the `next` of a page)", None) from None
    return float(accepted_at), number


def _moment(field: str, value: Any) -> float:
    """Unix seconds or RFC 3339; a query string's digits are Unix seconds."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    try:
        return timestamp(value)
    except ValueError as e:
        raise bad_request(field, str(e), None) from None


def parse_filter(field_value: Callable[[str], Any], states: tuple[State, ...] | None) -> Filter:
    """A Filter from the named values (a query's, a replay body's); None when not given."""
    state = field_value("state")
    if state is not None:
        allowed = states or tuple(State)
        if state not in [s.value for s in allowed]:
            raise bad_request("state", f"must be one of {', '.join(s.value for s in allowed)}", None)
        state = State(state)
    elif states is not None:
        raise bad_request("state", f"required with a filter: one of {', '.join(s.value for s in states)}", None)
    host = field_value("host")
    if host is not None and (not isinstance(host, str) or not host.strip() or not encodes(host, "utf-8")):
        raise bad_request("host", "must be a host name or address", None)
    since, until = field_value("since"), field_value("until")
    after = field_value("cursor")
    return Filter(state, hosts.canonical(host.strip()) if host is not None else None,
                  None if since is None else _moment("since", since),
                  None if until is None else _moment("until", until),
                  None if after is None else position("cursor", after),
                  _text("ordering_key", field_value("ordering_key"), MAX_KEY_LENGTH),
                  _text("id_prefix", field_value("id_prefix"), MAX_ID_LENGTH))


def _text(field: str, value: Any, most: int) -> str | None:
    """A filter's text as given (an ordering key, an id prefix): 1 to `most` characters of
    Unicode; a 400 naming `field` for anything else. None when not given."""
    if value is not None and (not isinstance(value, str) or not 0 < len(value) <= most
                              or not encodes(value, "utf-8")):
        raise bad_request(field, f"must be a string of 1 to {most} characters", None)
    return value


def page_limit(value: Any, default: int, most: int) -> int:
    """A page's `limit` (a query's text, a body's number): 1 to `most`, `default` when None;
    a 400 naming `limit` else."""
    if value is None:
        return default
    try:
        limit = int(value) if isinstance(value, str) else value
    except ValueError:
        limit = None
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= most:
        raise bad_request("limit", f"must be an integer from 1 to {most}", None)
    return limit


def query(environ: dict, allowed: tuple[str, ...]) -> dict[str, str]:
    """A request's query parameters, each once, of `allowed` only (a 400 else)."""
    given: dict[str, str] = {}
    # '+' stands for itself: an RFC 3339 offset, not a space
    for name, value in parse_qsl(environ.get("QUERY_STRING", "").replace("+", "%2B"), keep_blank_values=True):
        if name not in allowed:
            raise bad_request(name, f"unknown parameter (parameters: {', '.join(allowed)})", None)
        if name in given:
            raise bad_request(name, "given twice", None)
        given[name] = value
    return given


class JobsApi:
    def __init__(self, dispatcher: Dispatcher, broker: Broker, audit: Audit):
        self.dispatcher = dispatcher  # cancels (and counts) them
        self.broker = broker          # keeps, finds and replays them, and keeps what was done
        self.audit = audit            # records what was done
        self.hidden_headers: frozenset[str] = frozenset()

    def configure(self, config: Config) -> None:
        self.config = config
        self.hidden_headers = config.target.hidden_headers()

    def answer(self, call: Callable[[], Any]) -> Any:
        """`call()`, with the broker's refusals as answers."""
        try:
            return call()
        except BrokerUnavailable as e:
            raise Refusal("503 Service Unavailable", {"error": str(e)},
                          headers=[("Retry-After", RETRY_AFTER_BROKER)]) from None
        except StorageUnavailable as e:  # the journal cannot write the change (a full disk)
            raise Refusal("503 Service Unavailable", {"error": str(e)},
                          headers=[("Retry-After", RETRY_AFTER_STORAGE)]) from None

    # -- GET /v1/jobs/{id}

    def get(self, job_id: str, start_response: Callable) -> list[bytes]:
        entry = self.answer(lambda: self.broker.get(job_id))
        if entry is None:
            raise Refusal("404 Not Found", {"error": f"id: no job {job_id!r}", "field": "id"})
        return json_answer("200 OK", entry.status(self.hidden_headers), start_response)

    # -- GET /v1/jobs

    def find(self, environ: dict, start_response: Callable) -> list[bytes]:
        given = query(environ, LIST_PARAMETERS)
        where = parse_filter(given.get, None)
        limit = page_limit(given.get("limit"), PAGE, MAX_PAGE)
        jobs, after = self.answer(lambda: self._page(self.broker.find(where, limit + 1), limit))
        data = b'{"jobs": [%s], "next": %s}' % (b", ".join(jobs), to_json(None if after is None else cursor(after)))
        return encoded_answer("200 OK", data, start_response)

    def _page(self, found: Iterator[Found], limit: int) -> tuple[list[bytes], tuple[float, int] | None]:
        """The first of `found` as a list shows them, in JSON: `limit` at most, within
        PAGE_BYTES (one at least); and the position of the last one when more follow (None: no
        more). The jobs are read, and shown, one by one: a page holds its answer, no more."""
        jobs: list[bytes] = []
        room = PAGE_BYTES - ENVELOPE
        last = None
        for entry, at in found:
            if len(jobs) == limit:
                return jobs, last
            shown = to_json(entry.status(self.hidden_headers, listed=True))
            room -= len(shown) + 2  # and ", "
            if jobs and room < 0:
                return jobs, last
            jobs.append(shown)
            last = at
        return jobs, None

    # -- DELETE /v1/jobs/{id}

    def cancel(self, job_id: str, start_response: Callable, by: str, via: str) -> list[bytes]:
        """Cancel, recorded as done `by` (a role of gq.intake.access) `via` ("api", "cli")."""
        try:
            cancelled = self.answer(lambda: self.dispatcher.cancel(job_id))
        except Conflict as e:
            error = f"id: {e}: only a queued, scheduled or retrying job can be cancelled"
            raise Refusal("409 Conflict", {"error": error, "field": "id", "state": e.state.value}) from None
        if not cancelled:
            raise Refusal("404 Not Found", {"error": f"id: no job {job_id!r}", "field": "id"})
        self.audit.record("cancel", by=by, via=via, ids=[job_id], count=1)
        return json_answer("200 OK", {"id": job_id, "state": State.CANCELLED.value}, start_response)

    # -- POST /v1/jobs/replay

    def replay(self, environ: dict, start_response: Callable, by: str, via: str) -> list[bytes]:
        """Replay by ids or by filter (a page of it), recorded as done `by` `via` (see cancel)
        when it replayed some."""
        ctype = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise Refusal("415 Unsupported Media Type",
                          {"error": f"Content-Type: must be application/json, got {ctype or 'none'!r}",
                           "field": "Content-Type"})
        raw = read_body(environ, self.config.api, "ids or a filter")
        try:
            request = loads(raw.decode("utf-8"))
        except ValueError as e:  # UnicodeDecodeError too
            raise bad_request("body", f"invalid JSON: {e}", None) from None
        if not isinstance(request, dict):
            raise bad_request("body", 'must be an object: {"ids": [...]} or a filter', None)
        for name in request:
            if name not in REPLAY_FIELDS:
                raise bad_request(name, f"unknown field (fields: {', '.join(REPLAY_FIELDS)})", None)
        if "ids" in request:
            body = self._replay_ids(request)
            chosen: dict[str, Any] = {"ids": body["ids"]}
        else:
            body = self._replay_matching(request)
            chosen = {"filter": {k: v for k, v in request.items() if k in FILTER_FIELDS}}
        if body["replayed"]:
            self.audit.record("replay", by=by, via=via, count=body["replayed"], **chosen)
        return json_answer("200 OK", body, start_response)

    # -- GET /v1/audit

    def actions(self, environ: dict, start_response: Callable) -> list[bytes]:
        """A page of the operator's actions, newest first."""
        given = query(environ, AUDIT_PARAMETERS)
        limit = page_limit(given.get("limit"), PAGE, MAX_PAGE)
        after = None if given.get("cursor") is None else position("cursor", given["cursor"])
        found = self.answer(lambda: self.broker.actions(limit + 1, after))
        page = found[:limit]
        next_page = cursor(page[-1][1]) if len(found) > limit else None
        return json_answer("200 OK", {"actions": [row for row, _ in page], "next": next_page}, start_response)

    def _replay_ids(self, request: dict[str, Any]) -> dict[str, Any]:
        ids = request["ids"]
        if len(request) > 1:
            raise bad_request("ids", "give ids or a filter, not both", None)
        if (not isinstance(ids, list) or not ids or len(ids) > MAX_REPLAY_IDS
                or not all(isinstance(i, str) and encodes(i, "utf-8") for i in ids)):
            raise bad_request("ids", f"must be a list of 1 to {MAX_REPLAY_IDS} job ids", None)
        return _replayed(self.answer(lambda: self.broker.replay(ids, REPLAYABLE)), None)

    def _replay_matching(self, request: dict[str, Any]) -> dict[str, Any]:
        where = parse_filter(request.get, REPLAYABLE)
        limit = page_limit(request.get("limit"), REPLAY_PAGE, MAX_REPLAY_PAGE)
        done, after = self.answer(lambda: replay_page(self.broker, where, limit))
        return _replayed(done, None if after is None else cursor(after))


def replay_page(broker: Broker, where: Filter, limit: int) -> tuple[Replayed, tuple[float, int] | None]:
    """Replay up to `limit` jobs that match `where` (its state: dead or succeeded), newest
    first; and the position of the last one found when more match (None: no more)."""
    state = where.state or State.DEAD  # a filter for replays always names one
    # Ids only, the jobs read a few at a time: a page of them holds no more than its answer.
    found = [(e.job.id, at) for e, at in broker.find(where, limit + 1)]
    page = found[:limit]
    # Found in `state`; one that has left it since, or cannot be replayed, is skipped.
    done = broker.replay([job_id for job_id, _ in page], (state,))
    return done, page[-1][1] if len(found) > limit else None


def _replayed(done: Replayed, next_page: str | None) -> dict[str, Any]:
    """A replay's answer: the ids replayed, and each skipped one with why (as many as the
    ids named or the page found, at most)."""
    return {"replayed": len(done.ids), "ids": done.ids,
            "skipped": [{"id": job_id, "reason": why} for job_id, why in done.skipped], "next": next_page}
