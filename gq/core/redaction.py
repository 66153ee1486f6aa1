"""The one rule by which gq shows a value that may hold a secret.

Every place that shows a configured value or a job's request goes through it: log lines
(of every level), `gq check-config`, config errors, each command's output and the API's
answers. A secret is shown as REDACTED; what it is:

- a URL's password (`user:password@`, or `token@`) and the value of each query parameter
  whose name says it holds a credential (`?password=`, `?sentinel_password=`, `?api_key=`,
  `?token=`, `?sig=`…);
- the value of a credential header (SECRET_HEADERS, and those the operator names);
- each secret the config holds (`Secrets`): the API token, signing secrets, the passwords
  of its URLs. Every log line is scrubbed of these literally, so that a message that quotes
  a library's error (redis-py's, requests') cannot carry one out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, unquote

REDACTED = "<redacted>"
# Header values that hold credentials, never shown (target.secret_headers adds to them).
SECRET_HEADERS = frozenset(("authorization", "proxy-authorization", "cookie", "set-cookie",
                            "x-api-key", "api-key", "x-auth-token", "x-access-token"))
# A query parameter whose name has one of these in it holds a credential. Broad on purpose:
# a parameter hidden for nothing costs less than a password shown (a misspelt one too).
_SECRET_QUERY_NAME = re.compile(r"pas|pwd|secret|token|key|auth|sig|cred|session|cookie", re.IGNORECASE)
SHORTEST = 4  # a literal secret shorter than this would redact ordinary words


def secret_query_name(name: str) -> bool:
    return bool(_SECRET_QUERY_NAME.search(name))


def _split(text: str) -> tuple[str, str, str, str, str]:
    """scheme, authority, path, query, fragment, cut as URL parsers cut them, never raising:
    a URL too odd to parse is still shown through the rule."""
    scheme, _, rest = text.partition("://")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, rest = rest[:end], rest[end:]
    rest, _, fragment = rest.partition("#")
    path, _, query = rest.partition("?")
    return scheme, authority, path, query, fragment


def url(text: str) -> str:
    """`text` with its password and its credential query values replaced by REDACTED;
    anything that is not a URL comes back as it is."""
    if "://" not in text:
        return text
    scheme, authority, path, query, fragment = _split(text)
    if "@" in authority:
        authority = f"{REDACTED}@{authority.rpartition('@')[2]}"
    shown = f"{scheme}://{authority}{path}"
    if "?" in text.partition("#")[0]:
        shown += "?" + "&".join(_query_item(item) for item in query.split("&"))
    return shown + ("#" + fragment if "#" in text else "")


def _query_item(item: str) -> str:
    name, equals, _ = item.partition("=")
    return f"{name}={REDACTED}" if equals and secret_query_name(unquote(name)) else item


def url_secrets(text: str) -> list[str]:
    """The secrets `url(text)` hides, as written, percent-decoded and percent-encoded."""
    if "://" not in text:
        return []
    _, authority, _, query, _ = _split(text)
    userinfo = authority.rpartition("@")[0]
    found = [userinfo, userinfo.partition(":")[2]] if userinfo else []
    for item in query.split("&"):
        name, equals, value = item.partition("=")
        if equals and secret_query_name(unquote(name)):
            found.append(value.replace("+", " "))
    return _spellings(found)


def _spellings(secrets: Iterable[str]) -> list[str]:
    """Each secret as written, percent-decoded and percent-encoded: a library quotes it either way."""
    out: list[str] = []
    for secret in secrets:
        for spelling in (secret, unquote(secret), quote(secret, safe="")):
            if len(spelling) >= SHORTEST and spelling not in out:
                out.append(spelling)
    return out


def header(name: str, value: str, hidden: frozenset[str] = frozenset()) -> str:
    """A header's value as shown: REDACTED for a credential header (SECRET_HEADERS, and the
    lower-case names in `hidden`)."""
    return REDACTED if name.lower() in SECRET_HEADERS or name.lower() in hidden else value


def header_secrets(values: Mapping[str, str], hidden: frozenset[str] = frozenset()) -> list[str]:
    return _spellings(v for k, v in values.items() if k.lower() in SECRET_HEADERS or k.lower() in hidden)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with each of `secrets` (and its spelling inside a quoted string) replaced by
    REDACTED; the longest first, so that a secret holding another goes whole."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= SHORTEST:
            text = text.replace(secret, REDACTED).replace(repr(secret)[1:-1], REDACTED)
    return text


class Secrets:
    """The secrets this process was configured with: every log line, and every error gq
    prints, is scrubbed of them. Only ever grows: a reload's old values are logged too."""

    def __init__(self) -> None:
        self._known: set[str] = set()

    def add(self, secrets: Iterable[str]) -> None:
        self._known.update(s for s in secrets if len(s) >= SHORTEST)

    def scrub(self, text: str) -> str:
        return scrub(text, self._known) if self._known else text


KNOWN = Secrets()  # the process's own: filled as configs are loaded
