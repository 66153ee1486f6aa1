"""The console's requests: who asks (gq/console/signin.py), which page or action, and the
answer, a page rendered from gq/console/templates with what gq/console/views.py reads.

Every answer carries a Content-Security-Policy that allows the console's own script and
style only, no inline script, no other origin, no framing; and `Cache-Control: no-store`
(pages show jobs' payloads). Pages are GETs that change nothing; every change is a POST
that carries the session's CSRF token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import jinja2

from gq import __version__
from gq.config import Config
from gq.console import present
from gq.console.answers import Answer, Request, redirect
from gq.console.sessions import Session, Sessions
from gq.console.signin import SignIn
from gq.console.views import Views
from gq.errors import BrokerUnavailable
from gq.intake.api_io import Refusal, read_body
from gq.intake.http_server import has_body

log = logging.getLogger("gq.console")

HEADERS = [
    ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),  # "no-referrer" would make a form's Origin "null"
]
STATIC_TYPES = {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8",
                "svg": "image/svg+xml"}
MAX_QUERY = 4096   # characters of a page's query string
# Pages that refresh themselves: those a GET shows again as they are now (not a form's
# answer, a confirmation or a problem).
REFRESHED = {"overview.html", "jobs.html", "job.html", "destinations.html", "audit.html"}


class Console:
    def __init__(self, config: Config, views: Views):
        self.views = views
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("gq.console"), autoescape=True, undefined=jinja2.StrictUndefined,
            trim_blocks=True, lstrip_blocks=True)
        self.templates.filters.update(duration=present.duration, size=present.size, moment=present.moment)
        self.templates.globals.update(version=__version__, chart=present.chart, payload=present.payload,
                                     filtered=present.filtered)
        static = resources.files("gq.console").joinpath("static")
        self.static = {f.name: f.read_bytes() for f in static.iterdir() if f.name.rsplit(".", 1)[-1] in STATIC_TYPES}
        self.sessions = Sessions(config.api, config.console.session_lifetime)
        self.signin = SignIn(self.sessions, self._page)
        self.configure(config)

    def configure(self, config: Config) -> None:
        self.config = config
        self.sessions.configure(config.api, config.console.session_lifetime)
        self.views.configure(config)

    def __call__(self, environ: dict, start_response: Callable, path: str) -> list[bytes]:
        try:
            answer = self._answer(environ, path)
        except Refusal as r:  # a body too large or too slow, a query too long
            answer = self._page(r.status, "error.html", None, message=r.body["error"])
        except BrokerUnavailable as e:
            answer = self._page("503 Service Unavailable", "error.html", None, message=str(e))
        except Exception:
            log.exception("internal error answering %s %s", environ["REQUEST_METHOD"], path)
            answer = self._page("500 Internal Server Error", "error.html", None,
                                message="internal error, see the daemon's log")
        headers = [*HEADERS, *answer.headers, ("Content-Length", str(len(answer.body)))]
        start_response(answer.status, headers)
        return [answer.body]

    # -- who asks, and what for

    def _answer(self, environ: dict, path: str) -> Answer:
        method = environ["REQUEST_METHOD"]
        if path.startswith("/ui/static/"):
            return self._static(path[len("/ui/static/"):])
        if path == "/ui":
            return redirect("/ui/", "308 Permanent Redirect")
        raw_query = environ.get("QUERY_STRING", "")
        if len(raw_query) > MAX_QUERY:
            raise Refusal("414 URI Too Long", {"error": f"query: longer than {MAX_QUERY} characters"})
        query = dict(parse_qsl(raw_query))
        form = self._form(environ) if method == "POST" else {}
        secure = environ.get("wsgi.url_scheme") == "https"
        if path == "/ui/sign-in":
            return self.signin.answer(method, query, form, secure)
        found = self.signin.session(environ, method, path, secure)
        if isinstance(found, Answer):
            return found
        session, cookie = found
        request = Request(method, path, query, session, form)
        if method == "POST":
            answer = self._post(request, environ)
        elif method in ("GET", "HEAD"):
            answer = self._get(request)
        else:
            answer = self._page("405 Method Not Allowed", "error.html", session, message="use GET or POST")
            answer.headers.append(("Allow", "GET, POST"))
        if cookie:
            answer.headers.append(("Set-Cookie", cookie))
        return answer

    def _form(self, environ: dict) -> dict[str, str]:
        if not has_body(environ):
            return {}
        ctype = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise Refusal("415 Unsupported Media Type", {"error": "Content-Type: a form was expected"})
        try:
            return dict(parse_qsl(read_body(environ, self.config.api, "a form").decode("utf-8"),
                                  keep_blank_values=True))
        except UnicodeDecodeError:
            raise Refusal("400 Bad Request", {"error": "body: not UTF-8"}) from None

    # -- pages

    def _get(self, request: Request) -> Answer:
        path, query, session = request.path, request.query, request.session
        views = self.views
        if path == "/ui/":
            return self._page("200 OK", "overview.html", session, **views.overview())
        if path in ("/ui/jobs", "/ui/dead", "/ui/scheduled"):
            preset = {"/ui/dead": "dead", "/ui/scheduled": "scheduled"}.get(path)
            return self._jobs(session, query, preset, path)
        if path.startswith("/ui/jobs/"):
            shown = views.job(path[len("/ui/jobs/"):])
            if shown is None:
                return self._page("404 Not Found", "error.html", session, message="No such job: it was never "
                                  "accepted, or it finished and was forgotten.")
            return self._page("200 OK", "job.html", session, done=query.get("done"), **shown)
        if path == "/ui/destinations":
            return self._page("200 OK", "destinations.html", session, **views.destinations_page())
        if path == "/ui/audit":
            try:
                return self._page("200 OK", "audit.html", session, query=query, **views.actions(query))
            except Refusal as r:
                return self._page("400 Bad Request", "error.html", session, message=r.body["error"])
        if path == "/ui/confirm":
            return self._confirm(session, query)
        return self._page("404 Not Found", "error.html", session, message=f"No such page: {path}")

    def _jobs(self, session: Session, query: dict[str, str], preset: str | None, path: str) -> Answer:
        if preset:
            query = {**query, "state": preset}
        try:
            listed = self.views.jobs(query)
        except Refusal as r:
            return self._page("400 Bad Request", "jobs.html", session, path=path, preset=preset, query=query,
                              error=r.body["error"], jobs=[], next=None, bulk=None)
        return self._page("200 OK", "jobs.html", session, path=path, preset=preset, query=query, error=None,
                          **listed)

    def _confirm(self, session: Session, query: dict[str, str]) -> Answer:
        action = query.get("action", "")
        try:
            count, more = self.views.matching(action, query)
        except Refusal as r:
            return self._page("400 Bad Request", "error.html", session, message=r.body["error"])
        return self._page("200 OK", "confirm.html", session, action=action, query=query, count=count, more=more)

    # -- actions

    def _post(self, request: Request, environ: dict) -> Answer:
        session, form = request.session, request.form
        refused = self.signin.refusal(request, environ)
        if refused:
            return refused
        if request.path == "/ui/sign-out":
            return self.signin.sign_out(session)
        if not session.may_act:
            return self._page("403 Forbidden", "error.html", session,
                              message="Signed in with the read token: you can see everything and change nothing.")
        path = request.path
        if path.startswith("/ui/jobs/") and path.count("/") == 4:
            job_id, action = path[len("/ui/jobs/"):].rsplit("/", 1)
            if action in ("replay", "cancel"):
                done = self.views.act(action, job_id, session.role)
                return redirect(f"/ui/jobs/{quote(job_id, safe='')}?" + urlencode({"done": done}))
        if path == "/ui/bulk":
            action = form.get("action", "")
            try:
                summary = self.views.act_on_matching(action, form, session.role)
            except Refusal as r:
                return self._page("400 Bad Request", "error.html", session, message=r.body["error"])
            return self._page("200 OK", "done.html", session, action=action, **summary)
        return self._page("404 Not Found", "error.html", session, message=f"No such action: {path}")

    # -- answers

    def _page(self, status: str, template: str, session: Session | None, **context: Any) -> Answer:
        body = self.templates.get_template(template).render(
            current=context.get("preset") or template.removesuffix(".html"), session=session,
            refresh=self.config.console.refresh if template in REFRESHED else 0, open=self.sessions.open,
            **context)
        return Answer(status, body.encode(), [("Content-Type", "text/html; charset=utf-8"),
                                              ("Cache-Control", "no-store")])

    def _static(self, name: str) -> Answer:
        data = self.static.get(name)
        if data is None:
            return Answer("404 Not Found", b"not found", [("Content-Type", "text/plain")])
        return Answer("200 OK", data, [("Content-Type", STATIC_TYPES[name.rsplit(".", 1)[-1]]),
                                       ("Cache-Control", "max-age=3600")])
