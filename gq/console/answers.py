"""What the console's parts hand each other: a request, once its session is known, and an
answer, before the headers every answer carries are added (gq/console/app.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from gq.console.sessions import Session


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    session: Session
    form: dict[str, str] = field(default_factory=dict)


@dataclass
class Answer:
    status: str
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


class Page(Protocol):
    """A page rendered from gq/console/templates, as the console answers it."""

    def __call__(self, status: str, template: str, session: Session | None, **context: Any) -> Answer: ...


def redirect(location: str, status: str = "303 See Other") -> Answer:
    return Answer(status, headers=[("Location", location)])
