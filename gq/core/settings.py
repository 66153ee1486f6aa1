"""How a setting is declared: `setting(default, check, help)` on a frozen dataclass field,
the checks that validate a given value, and `Invalid`, which a check raises.

Each part of gq owns its section of the config as one such dataclass; gq/config.py reads
the file into them, and `check-config`, `config.example.toml` and the docs' reference come
from the same declarations. This module imports no other part of gq, so that any part can
declare its settings without importing the config.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Callable
from typing import Any

WHOLE, URL = "whole", "url"  # what of a key's value is secret: all of it, or a URL's credentials


class Invalid(ValueError):
    """Raised by a check; its text completes `section.key: ...`."""


def setting(default: Any, check: Callable[[Any], Any], help: str, secret: str = "", live: bool = True) -> Any:
    """A config key: its default, the check that validates a given value, its help, what
    of its value is secret (WHOLE, URL or ""): shown only through gq.config.shown, and
    whether a reload applies it to a running gq (`live`) or it keeps its value until a
    restart."""
    return dataclasses.field(default=default, metadata={"check": check, "help": help, "secret": secret,
                                                        "live": live})


def quoted(value: Any) -> str:
    """`value` as an error message quotes it."""
    return json.dumps(value) if isinstance(value, (str, int, float, bool, list)) else repr(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(minimum: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if not _is_int(value) or value < minimum:
            raise Invalid(f"must be an integer >= {minimum}, got {quoted(value)}")
        return int(value)
    return check


def seconds(minimum: float = 0.0, above: bool = False) -> Callable[[Any], float]:
    bound = f"> {minimum:g}" if above else f">= {minimum:g}"

    def check(value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and (value > minimum if above else value >= minimum) and value != float("inf"):
            return float(value)
        raise Invalid(f"must be a number of seconds {bound}, got {quoted(value)}")
    return check


def number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise Invalid(f"must be a number >= 0, got {quoted(value)}")
    return float(value)


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false, got {quoted(value)}")
    return value


def choice(*allowed: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in allowed:
            raise Invalid(f"must be one of {', '.join(map(quoted, allowed))}, got {quoted(value)}")
        return str(value)
    return check


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be a string, got {quoted(value)}")
    return value


def string_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise Invalid(f"must be a list of non-empty strings, got {quoted(value)}")
    return tuple(value)


class Table(tuple):
    """A TOML table's (key, value) pairs, immutable like the rest of the config."""

    def as_dict(self) -> dict:
        return {k: v.as_dict() if isinstance(v, Table) else v for k, v in self}


def did_you_mean(name: str, known: list[str], prefix: str = "") -> str:
    """The hint of an unknown key's error: ' (did you mean PREFIX+KEY?)', KEY the known key
    closest to `name`, or "" when none is close."""
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""
