"""Who is using the console: sign-in, the session cookie, and the CSRF token of each change.

A session is a signed cookie, not a row kept here: `{role, expiry, nonce}` with an HMAC.
With `api.token` the key comes from the tokens, so a session outlives a restart and ends
when either token changes; without a token (an open console, on loopback only) every
browser gets an "anonymous" session at once, under a key of this process. Either way a
change needs the session's CSRF token (an HMAC of its nonce), so that another site open
in the same browser cannot post to the console. Sign-out remembers the nonce until the
session would have expired anyway (at most MAX_SIGNED_OUT of them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie

from gq.config import ApiConfig
from gq.intake import access
from gq.intake.access import Role

COOKIE = "gq_session"
MAX_SIGNED_OUT = 10000


@dataclass(frozen=True, slots=True)
class Session:
    role: Role          # as gq.intake.access names it, and the audit's "by"
    expires: float      # wall-clock seconds
    nonce: str
    csrf: str

    @property
    def may_act(self) -> bool:
        return access.may_change(self.role)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class Sessions:
    def __init__(self, api: ApiConfig, lifetime: float, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._anonymous_key = os.urandom(32)
        self._signed_out: OrderedDict[str, float] = OrderedDict()  # nonce → its session's expiry
        self.configure(api, lifetime)

    def configure(self, api: ApiConfig, lifetime: float) -> None:
        self.api, self.token, self.lifetime = api, api.token, lifetime
        if api.token:
            material = b"gq console\0" + api.token.encode() + b"\0" + api.read_token.encode()
            self._key = hashlib.sha256(material).digest()
        else:
            self._key = self._anonymous_key

    @property
    def open(self) -> bool:
        """No token: everyone who reaches the listen address may act (a loopback one)."""
        return not self.token

    def role_of(self, given: str) -> Role | None:
        """The role a token signs in as (gq.intake.access); None for a wrong one."""
        return access.role_of(given.strip(), self.api)

    def new(self, role: Role) -> tuple[Session, str]:
        """A session for `role`, and its cookie's value."""
        expires = round(self.clock() + self.lifetime)
        nonce = _b64(os.urandom(16))
        payload = _b64(json.dumps([role, expires, nonce]).encode())
        return self._session(role, expires, nonce), f"{payload}.{self._sign(payload)}"

    def of(self, cookie_header: str) -> Session | None:
        """The request's session, if its cookie is one of ours, unexpired and not signed out."""
        try:
            morsel = SimpleCookie(cookie_header).get(COOKIE)
        except CookieError:
            return None
        if morsel is None:
            return None
        payload, _, signature = morsel.value.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        role, expires, nonce = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        if expires <= self.clock() or nonce in self._signed_out or (role == access.ANONYMOUS) != self.open:
            return None
        return self._session(role, expires, nonce)

    def sign_out(self, session: Session) -> None:
        now = self.clock()
        while self._signed_out and (len(self._signed_out) >= MAX_SIGNED_OUT
                                    or next(iter(self._signed_out.values())) <= now):
            self._signed_out.popitem(last=False)
        self._signed_out[session.nonce] = session.expires

    def cookie(self, value: str, max_age: float, secure: bool) -> str:
        """The Set-Cookie header's value: HttpOnly, SameSite=Strict, for the console's paths."""
        flags = "; Secure" if secure else ""
        return f"{COOKIE}={value}; Path=/ui/; Max-Age={int(max_age)}; HttpOnly; SameSite=Strict{flags}"

    def _session(self, role: Role, expires: float, nonce: str) -> Session:
        return Session(role, expires, nonce, self._sign("csrf:" + nonce))

    def _sign(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest())
