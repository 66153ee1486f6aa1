"""The intake HTTP API, health and /metrics: one WSGI app (served by gq/intake/listeners.py).

Requests become jobs here and nowhere else; every refusal is a JSON
`{"error": ...}` that names the field at fault, and is counted by reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources
from typing import Any, Protocol

from gq.broker import Broker
from gq.config import Config
from gq.core import job as jobs_
from gq.core.audit import Audit
from gq.dispatch.dispatcher import Dispatcher
from gq.errors import (
    BacklogFull,
    BrokerUnavailable,
    Draining,
    JobError,
    QueueFull,
    StorageUnavailable,
)
from gq.intake import access
from gq.intake.api_io import Refusal, json_answer, read_body
from gq.intake.http_server import RETRY_AFTER_DRAINING, has_body
from gq.intake.jobs_api import RETRY_AFTER_STORAGE, JobsApi
from gq.observe.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gq.observe.metrics import Metrics

log = logging.getLogger("gq.api")

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines")
RETRY_AFTER_FULL = "1"      # seconds: the queue moves in well under that
RETRY_AFTER_BACKLOG = "10"  # seconds: a backlog that long drains slowly
# Why submit refused a request → (status, gq_intake_rejected_total reason, Retry-After)
SUBMIT_REFUSALS: dict[type[Exception], tuple[str, str | None, str]] = {
    QueueFull: ("429 Too Many Requests", "queue_full", RETRY_AFTER_FULL),
    BacklogFull: ("429 Too Many Requests", "backlog_full", RETRY_AFTER_BACKLOG),
    Draining: ("503 Service Unavailable", "draining", RETRY_AFTER_DRAINING),
    StorageUnavailable: ("503 Service Unavailable", "storage", RETRY_AFTER_STORAGE),
    BrokerUnavailable: ("503 Service Unavailable", None, RETRY_AFTER_DRAINING),
}
OPENAPI = "openapi.json"   # the API's description, shipped in the package


class Pages(Protocol):
    """What answers under /ui/ (the console, gq/console/app.py: built above the intake and
    handed in, so that the intake imports nothing of it)."""

    def configure(self, config: Config) -> None: ...

    def __call__(self, environ: dict, start_response: Callable, path: str) -> list[bytes]: ...


def _job_refusal(error: JobError, where: str | None) -> Refusal:
    prefix = f"{where}." if where else ""
    body: dict[str, str | int] = {"error": f"{prefix}{error}", "field": error.field}
    if error.index is not None:
        body["index"] = error.index
    return Refusal("400 Bad Request", body, "invalid")


def _no_such_endpoint(path: str) -> Refusal:
    return Refusal("404 Not Found", {"error": f"path: no such endpoint {path}"})


class Api:
    def __init__(self, config: Config, dispatcher: Dispatcher, broker: Broker, metrics: Metrics,
                 audit: Audit | None = None, console: Pages | None = None):
        """`audit`: where operator actions are recorded (by default into `broker`, counted in `metrics`)."""
        self.dispatcher = dispatcher  # its admission takes the jobs; its snapshot is the status
        self.broker = broker          # the counts, the broker's health
        self.audit = audit or Audit(broker, metrics.operator_actions.inc)
        self.jobs = JobsApi(dispatcher, broker, self.audit)
        self.metrics = metrics
        self.console = console        # the pages under /ui/ (console.enabled)
        self.ready = False
        self.description = resources.files("gq.intake").joinpath(OPENAPI).read_bytes()
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Take a (re)loaded config: token, limits and target defaults apply to the next request."""
        self.config = config
        self.policy = config.target.policy()
        self.jobs.configure(config)
        if self.console:
            self.console.configure(config)

    # -- WSGI

    def __call__(self, environ: dict, start_response: Callable) -> list[bytes]:
        # WSGI hands the path over decoded as Latin-1; clients send UTF-8.
        path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
        method = environ["REQUEST_METHOD"]
        try:
            if path.startswith("/v1/"):
                return self._v1(environ, start_response, method, path)
            return self._outside_v1(environ, start_response, method, path)
        except Refusal as r:
            if r.reason:
                self.metrics.rejected.inc(r.reason)
            headers = r.headers
            if has_body(environ) and not environ.get("gq.body_read"):
                headers = [*headers, ("Connection", "close")]  # its body is not read: see IntakeHandler
            return json_answer(r.status, r.body, start_response, headers)
        except Exception:
            log.exception("internal error answering %s %s", method, path)
            return json_answer("500 Internal Server Error", {"error": "internal error, see the daemon's log"},
                         start_response)

    def _v1(self, environ: dict, start_response: Callable, method: str, path: str) -> list[bytes]:
        who = self._authorize(environ, method, path)
        if path == "/v1/jobs":
            if self._allow(method, "POST", "GET") == "GET":
                return self.jobs.find(environ, start_response)
            return self._post_jobs(environ, start_response)
        if path == "/v1/jobs/replay":
            self._allow(method, "POST")
            return self.jobs.replay(environ, start_response, who, access.via(environ))
        if path.startswith("/v1/jobs/"):
            job_id = path[len("/v1/jobs/"):]
            if self._allow(method, "GET", "DELETE") == "DELETE":
                return self.jobs.cancel(job_id, start_response, who, access.via(environ))
            return self.jobs.get(job_id, start_response)
        if path == "/v1/status":
            self._allow(method, "GET")
            return json_answer("200 OK", self.status(), start_response)
        if path == "/v1/audit":
            self._allow(method, "GET")
            return self.jobs.actions(environ, start_response)
        raise _no_such_endpoint(path)

    def _outside_v1(self, environ: dict, start_response: Callable, method: str, path: str) -> list[bytes]:
        if path == "/healthz":
            self._allow(method, "GET")
            return json_answer("200 OK", {"status": "ok"}, start_response)
        if path == "/readyz":
            self._allow(method, "GET")
            return self._readiness(start_response)
        if (path == "/ui" or path.startswith("/ui/")) and self.console and self.config.console.enabled:
            return self.console(environ, start_response, path)
        if path == "/openapi.json":
            self._allow(method, "GET")
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(self.description)))])
            return [self.description]
        if path == "/metrics":
            self._allow(method, "GET")
            data = self.metrics.exposition()
            start_response("200 OK", [("Content-Type", METRICS_CONTENT_TYPE),
                                      ("Content-Length", str(len(data)))])
            return [data]
        raise _no_such_endpoint(path)

    def _readiness(self, start_response: Callable) -> list[bytes]:
        problem = self.broker.health()
        if self.ready and not self.dispatcher.draining and problem is None:
            return json_answer("200 OK", {"status": "ready"}, start_response)
        state = ("draining" if self.dispatcher.draining else problem or "starting")
        return json_answer("503 Service Unavailable", {"status": state}, start_response)

    def _authorize(self, environ: dict, method: str, path: str) -> access.Role:
        """The request's role (gq.intake.access); 401 without a token gq knows, 403 for a read
        token that would change something (any method but GET and HEAD)."""
        who = access.role(environ, self.config.api)
        if who is None:
            raise Refusal("401 Unauthorized",
                          {"error": "Authorization: missing or wrong bearer token"
                           if environ.get("HTTP_AUTHORIZATION") else "Authorization: bearer token required",
                           "field": "Authorization"},
                          "unauthorized", [("WWW-Authenticate", 'Bearer realm="gq"')])
        if method not in access.READS and not access.may_change(who):
            log.warning("refused %s %s: the read token cannot change anything (403)", method, path)
            raise Refusal("403 Forbidden", {"error": "Authorization: the read token cannot change anything",
                                            "field": "Authorization"}, "unauthorized")
        return who

    @staticmethod
    def _allow(method: str, *allowed: str) -> str:
        if method not in allowed:
            raise Refusal("405 Method Not Allowed", {"error": f"method: use {' or '.join(allowed)}"},
                          headers=[("Allow", ", ".join(allowed))])
        return method

    # -- POST /v1/jobs

    def _post_jobs(self, environ: dict, start_response: Callable) -> list[bytes]:
        if self.dispatcher.draining:
            raise Refusal("503 Service Unavailable", {"error": "draining: not accepting jobs"},
                          "draining", [("Retry-After", RETRY_AFTER_DRAINING)])
        single, objects = self._read_jobs(environ)
        jobs = self._parse(single, objects)
        try:
            added = self.dispatcher.admission.submit(jobs, self.config.queue.enqueue_timeout)
        except tuple(SUBMIT_REFUSALS) as e:
            status, reason, retry_after = next(v for k, v in SUBMIT_REFUSALS.items() if isinstance(e, k))
            raise Refusal(status, {"error": str(e)}, reason, [("Retry-After", retry_after)]) from None
        body: dict[str, Any] = {"id": jobs[0].id} if single else {"ids": [j.id for j in jobs]}
        if added.duplicates:
            body["duplicates"] = added.duplicates
        status = "202 Accepted" if added.entries or added.stored else "200 OK"
        return json_answer(status, body, start_response)

    def _read_jobs(self, environ: dict) -> tuple[bool, list[tuple[str | None, Any]]]:
        """The request's job objects, each with where it was ("jobs[3]", "line 4")."""
        ctype = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if ctype not in JSON_TYPES + NDJSON_TYPES:
            raise Refusal("415 Unsupported Media Type",
                          {"error": "Content-Type: must be application/json or application/x-ndjson, "
                                    f"got {ctype or 'none'!r}", "field": "Content-Type"}, "invalid")
        raw = read_body(environ, self.config.api)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Refusal("400 Bad Request", {"error": f"body: not UTF-8 ({e.reason} at byte {e.start})",
                                              "field": "body"}, "invalid") from None
        if ctype in NDJSON_TYPES:
            try:
                lines = jobs_.read_lines(text)
            except JobError as e:
                raise Refusal("400 Bad Request", {"error": f"line {e.index}: {e}", "field": e.field,
                                                  "line": e.index}, "invalid") from None
            return False, [(f"line {n}", obj) for n, obj in lines]
        try:
            data = jobs_.loads(text)
        except ValueError as e:
            raise Refusal("400 Bad Request", {"error": f"body: invalid JSON: {e}", "field": "body"},
                          "invalid") from None
        if isinstance(data, list):
            return False, [(f"jobs[{i}]", obj) for i, obj in enumerate(data)]
        return True, [(None, data)]

    def _parse(self, single: bool, objects: list[tuple[str | None, Any]]) -> list[jobs_.Job]:
        if not objects:
            raise Refusal("400 Bad Request", {"error": "body: no jobs", "field": "body"}, "invalid")
        limit = self.config.api.max_jobs_per_request
        if len(objects) > limit:
            raise Refusal("413 Content Too Large", {"error": f"body: {len(objects)} jobs, more than "
                          f"api.max_jobs_per_request ({limit})", "field": "body"}, "too_large")
        target = self.config.target
        jobs = []
        for index, (where, obj) in enumerate(objects):
            try:
                jobs.append(jobs_.parse(obj, default_url=target.url, policy=self.policy))
            except JobError as e:
                raise _job_refusal(e if single else e.at(index), where) from None
        return jobs

    def status(self) -> dict[str, Any]:
        now = self.dispatcher.snapshot()
        return {
            "queue_depth": now.queue_depth, "queue_maxsize": now.queue_maxsize,
            "pool_busy": now.pool_busy, "pool_size": now.pool_size,
            "draining": now.draining, "jobs": self.broker.counts(), "ledger": self.broker.ledger(),
            "finished": {"succeeded": now.succeeded, "dead": now.dead, "cancelled": now.cancelled},
        }
