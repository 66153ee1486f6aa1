"""Who may ask the console, and who may change anything: the sign-in page, a session for
every request (or the way to sign in), sign-out, and the two guards of every change, the
session's CSRF token and the browser's Origin. The cookie itself is gq/console/sessions.py's."""

from __future__ import annotations

import hmac
import logging
from urllib.parse import quote, urlencode

from gq.console.answers import Answer, Page, Request, redirect
from gq.console.sessions import Session, Sessions
from gq.intake.access import ANONYMOUS

log = logging.getLogger("gq.console")


class SignIn:
    def __init__(self, sessions: Sessions, page: Page):
        self.sessions = sessions
        self.page = page

    def answer(self, method: str, query: dict[str, str], form: dict[str, str], secure: bool) -> Answer:
        """/ui/sign-in: the form, or a token checked and a session begun."""
        # Only a path of the console: never a redirect to another site.
        target = query.get("next") or form.get("next") or "/ui/"
        if not target.startswith("/ui/") or target.startswith("//"):
            target = "/ui/"
        if self.sessions.open:
            return redirect(target)
        if method != "POST":
            return self.page("200 OK", "sign_in.html", None, next=target, failed=False)
        role = self.sessions.role_of(form.get("token", ""))
        if role is None:
            log.warning("console: a sign-in with a wrong token")
            return self.page("401 Unauthorized", "sign_in.html", None, next=target, failed=True)
        _, value = self.sessions.new(role)
        answer = redirect(target)
        answer.headers.append(("Set-Cookie", self.sessions.cookie(value, self.sessions.lifetime, secure)))
        log.info("console: signed in with the %s", role.replace("_", " "))
        return answer

    def session(self, environ: dict, method: str, path: str, secure: bool) -> tuple[Session, str | None] | Answer:
        """The request's session and, for one begun now, its Set-Cookie; or, without one, the
        answer: the sign-in page for a GET, a refusal for a POST (a form cannot be carried over)."""
        session = self.sessions.of(environ.get("HTTP_COOKIE", ""))
        if session is not None:
            return session, None
        if not self.sessions.open:
            if method == "POST":
                return self.page("403 Forbidden", "error.html", None,
                                 message="Your session has ended: sign in again. Nothing was changed.")
            return redirect("/ui/sign-in?" + urlencode({"next": _next(environ, path)}))
        session, value = self.sessions.new(ANONYMOUS)
        return session, self.sessions.cookie(value, self.sessions.lifetime, secure)

    def refusal(self, request: Request, environ: dict) -> Answer | None:
        """Why a change (every POST but the sign-in) is refused, if it is."""
        given = request.form.get("csrf", "")
        if not hmac.compare_digest(given.encode(), request.session.csrf.encode()) or not same_origin(environ):
            log.warning("console: a change refused: no valid CSRF token (%s %s)", request.method, request.path)
            return self.page("403 Forbidden", "error.html", request.session,
                             message="This form is out of date or came from elsewhere: nothing was changed. "
                                     "Reload the page and try again.")
        return None

    def sign_out(self, session: Session) -> Answer:
        self.sessions.sign_out(session)
        answer = redirect("/ui/sign-in" if not self.sessions.open else "/ui/")
        answer.headers.append(("Set-Cookie", self.sessions.cookie("", 0, False)))
        return answer


def same_origin(environ: dict) -> bool:
    """A browser's Origin, when it sends one, names this host (a second guard beside the
    CSRF token and SameSite=Strict)."""
    origin = environ.get("HTTP_ORIGIN")
    if not origin or origin == "null":
        return origin is None
    return origin.split("://", 1)[-1] == environ.get("HTTP_HOST", "")


def _next(environ: dict, path: str) -> str:
    query = environ.get("QUERY_STRING", "")
    return quote(path) + ("?" + query if query else "")
