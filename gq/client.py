"""gq.Client: a running daemon's HTTP API from Python — submit jobs, look them up, list,
cancel and replay them, read its status. `gq submit`, `gq status` and `gq jobs --api` use it.

    >>> from gq import Client
    >>> client = Client("127.0.0.1:8765", token="s3cret")
    >>> client.submit({"url": "https://example.com/hook", "json": {"order": 42}})
    ['0b5c...']

It imports `requests`: import it after gevent patches, in a process that patches at all
(`import gq` alone imports neither).
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests

from gq import USER_AGENT
from gq.errors import Refused, Unreachable, UsageError

ENV_API = "GQ_API"
ENV_TOKEN = "GQ_TOKEN"
DEFAULT_API = "http://127.0.0.1:8765"  # api.listen's default
DEFAULT_TIMEOUT = 30.0   # seconds; see Client
PAGE = 1000              # jobs per page of GET /v1/jobs, at most (the API's bound)
REPLAY_IDS = 10000       # ids per POST /v1/jobs/replay, at most (the API's bound)
FILTERS = ("state", "host", "since", "until", "ordering_key", "id_prefix")
BUSY = (429, 503)        # refusals that say "later", with a Retry-After


def address(api: str) -> str:
    """The daemon's base URL from `http://HOST:PORT`, `https://HOST:PORT` or plain
    `HOST:PORT` (`[::1]:8765` for IPv6, as api.listen takes it); raises UsageError.

    >>> address("[::1]:8765")
    'http://[::1]:8765'
    """
    text = api.strip()
    if "://" not in text:
        host, sep, port = text.rpartition(":")
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # a bare IPv6 address
        text = f"http://{host}{sep}{port}"
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise UsageError(f"usage error: the daemon's address {api!r}: give http://HOST:PORT, "
                         f"https://HOST:PORT or HOST:PORT")
    return text.rstrip("/")


class Client:
    """A running gq daemon's API.

    `api`: its address, `http://HOST:PORT`, `https://…` or `HOST:PORT`; default $GQ_API,
    else http://127.0.0.1:8765 (api.listen's default). `token`: api.token, sent as a bearer
    token; default $GQ_TOKEN, else none. `timeout`: seconds each request may take, and how
    long a call keeps retrying a daemon that answers 429 or 503 (waiting as its Retry-After
    says) before it raises Refused.

    Every call blocks until answered. A refusal raises gq.Refused (`.status`, `.error`,
    `.field`); a daemon that cannot be reached raises gq.Unreachable. Both are gq.errors.GqError.
    A Client keeps its connection open: `close()` it, or use it in a `with`.

    >>> with Client() as client:
    ...     [job_id] = client.submit({"url": "http://127.0.0.1:9000/hook"})
    ...     client.get(job_id)["state"]
    'queued'
    """

    def __init__(self, api: str | None = None, token: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 *, note: str = ""):
        """`note`: said after the address when it cannot be reached (what the daemon is)."""
        self.api = address(api or os.environ.get(ENV_API) or DEFAULT_API)
        self.timeout = timeout
        self.note = note
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy from the environment between a client and its daemon
        self.session.headers["User-Agent"] = USER_AGENT
        token = os.environ.get(ENV_TOKEN, "") if token is None else token
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:
        return f"Client({self.api!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    # -- the API

    def submit(self, job_or_jobs: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[str]:
        """Hand the daemon one job (a dict, fields as in the contract) or a list of them, in
        one request: all are accepted or none. Returns their ids in order, those of jobs
        already known (duplicates, not queued again) included. A bad job raises Refused
        400 with `.field` (and `.index`, its place in a list).

        >>> client.submit([{"id": "order-42", "url": "http://127.0.0.1:9000/a"},
        ...                {"url": "http://127.0.0.1:9000/b", "delay": 60}])
        ['order-42', '6f1d...']
        """
        single = isinstance(job_or_jobs, Mapping)
        body = self._answer(self.request("POST", "/v1/jobs", json=job_or_jobs), (200, 202))
        return [body["id"]] if single else list(body["ids"])

    def get(self, job_id: str) -> dict[str, Any]:
        """The job as `GET /v1/jobs/{id}` shows it: `state`, `attempts`, `last_status`,
        `last_error`, its request, its history. An unknown id raises Refused 404.

        >>> client.get("order-42")["state"]
        'succeeded'
        """
        return self._answer(self.request("GET", _job_path(job_id)))

    def jobs(self, *, state: str | None = None, host: str | None = None, since: float | str | None = None,
             until: float | str | None = None, ordering_key: str | None = None, id_prefix: str | None = None,
             limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Every job that matches, newest first, read a page at a time as the iterator goes:
        `state`, the target `host`, accepted at or after `since` and before `until` (Unix
        seconds or RFC 3339), `ordering_key`, `id_prefix`; `limit`: that many jobs at most
        (None: all).

        >>> [job["id"] for job in client.jobs(state="dead", since="2026-12-01T00:00:00Z")]
        ['order-41', 'order-17']
        """
        query: dict[str, Any] = _filter(state=state, host=host, since=since, until=until,
                                        ordering_key=ordering_key, id_prefix=id_prefix)
        left = limit
        while left is None or left > 0:
            query["limit"] = PAGE if left is None else min(left, PAGE)
            # A space as %20, not '+': gq reads a '+' in a query as itself (an ordering key may hold either)
            page = self._answer(self.request("GET", "/v1/jobs", params=urlencode(query, quote_via=quote)))
            yield from page["jobs"]
            if left is not None:
                left -= len(page["jobs"])
            if page["next"] is None:
                return
            query["cursor"] = page["next"]

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued, scheduled or retrying job: it is never attempted again. Returns
        `{"id", "state": "cancelled"}`; a job running or final raises Refused 409, an
        unknown id Refused 404.

        >>> client.cancel("order-43")
        {'id': 'order-43', 'state': 'cancelled'}
        """
        return self._answer(self.request("DELETE", _job_path(job_id)))

    def replay(self, ids: Sequence[str] | None = None, **filter: Any) -> list[str]:
        """Run finished jobs (dead, or succeeded with their payload kept) again, attempts
        reset: those of `ids`, or every one that a filter matches (`state` "dead" or
        "succeeded", `host`, `since`, `until`, `ordering_key`, `id_prefix`, as for jobs()).
        Returns the ids replayed; one that could not be (unknown, not finished) is left out.

        >>> client.replay(["order-41"])
        ['order-41']
        >>> client.replay(state="dead", host="hooks.example.com")
        ['order-17', 'order-12']
        """
        return [job_id for page in self.replay_pages(ids, **filter) for job_id in page["ids"]]

    def replay_pages(self, ids: Sequence[str] | None = None, **filter: Any) -> Iterator[dict[str, Any]]:
        """replay(), as each answer of `POST /v1/jobs/replay` comes: `{"replayed", "ids",
        "skipped": [{"id", "reason"}], "next"}` — the jobs not replayed, with why."""
        if (ids is None) == (not filter):
            raise TypeError("replay: give ids or a filter (state=...), not both")
        unknown = set(filter) - set(FILTERS)
        if unknown:
            raise TypeError(f"replay: no filter named {', '.join(sorted(unknown))} (filters: {', '.join(FILTERS)})")
        if ids is not None:
            ids = list(ids)
            for start in range(0, len(ids), REPLAY_IDS):
                yield self._answer(self.request("POST", "/v1/jobs/replay", json={"ids": ids[start:start + REPLAY_IDS]}))
            return
        request = _filter(**filter)
        while True:
            page = self._answer(self.request("POST", "/v1/jobs/replay", json=request))
            yield page
            if page.get("next") is None:
                return
            request["cursor"] = page["next"]

    def status(self) -> dict[str, Any]:
        """`GET /v1/status`: queue depth, busy workers, pool size, counts, draining.

        >>> client.status()["draining"]
        False
        """
        return self._answer(self.request("GET", "/v1/status"))

    # -- the wire

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request (`requests`' keyword arguments), retried while the daemon answers 429
        or 503, each time after its Retry-After, for `timeout` seconds in all; the last
        answer, whatever it is. Raises Unreachable."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                response = self.session.request(method, self.api + path, timeout=self.timeout, **kwargs)
            except requests.RequestException as e:
                raise Unreachable(self.api, _cause(e, self.timeout), self.note) from None
            if response.status_code not in BUSY:
                return response
            wait = _retry_after(response)
            if wait > deadline - time.monotonic():
                return response
            time.sleep(wait)

    def _answer(self, response: requests.Response, ok: tuple[int, ...] = (200,)) -> dict[str, Any]:
        """The JSON object of an answer in `ok`; any other as Refused."""
        if response.status_code not in ok:
            raise refusal(response)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise Refused(response.status_code, "the daemon answered with no JSON object")
        return body


def refusal(response: requests.Response) -> Refused:
    """A refusal's answer as Refused."""
    body: Any
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    error = body.get("error") if isinstance(body.get("error"), str) else None
    index = body.get("index")
    return Refused(response.status_code, error or response.reason or "refused",
                   body.get("field") if isinstance(body.get("field"), str) else None,
                   index if isinstance(index, int) else None,
                   _retry_after(response) if response.status_code in BUSY else None, body)


def _filter(**given: Any) -> dict[str, Any]:
    return {name: value for name, value in given.items() if value is not None}


def _job_path(job_id: str) -> str:
    return "/v1/jobs/" + quote(job_id, safe="")


def _retry_after(response: requests.Response) -> float:
    """Seconds a 429/503 asks to wait (1 when it does not say, or says it as a date)."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _cause(error: BaseException, timeout: float) -> str:
    """Why a request got no answer, in a few words: what the socket said, not urllib3's story."""
    seen: set[int] = set()
    stack: list[BaseException] = [error]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, socket.gaierror):
            return "cannot resolve its host name"
        if isinstance(e, (TimeoutError, socket.timeout, requests.Timeout)) and not isinstance(e, ConnectionError):
            return f"no answer within {timeout:g} s"
        if isinstance(e, OSError) and e.errno:
            if e.errno == errno.ECONNREFUSED:
                return "connection refused"
            return os.strerror(e.errno).lower()
        stack += [x for x in (e.__cause__, e.__context__, getattr(e, "reason", None)) if isinstance(x, BaseException)]
        stack += [x for x in e.args if isinstance(x, BaseException)]
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]
